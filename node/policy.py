"""The owner's policy decides on a job: approve by rule, reject with a reason, or wait for an operator.

One place for the owner's rules: which analysts, functions, tables and columns, which
recipients (and who may receive ids or scores), the smallest group, and which compute
measurements. A job outside the rules is rejected; inside them, it is approved when an
auto-approve rule covers it and otherwise waits for `teenet approvals approve`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Sequence

from teenet.approval import Decision

ID_RELEASE_KINDS = frozenset({"ids", "scores"})

Outcome = Literal["approve", "reject", "pending"]


@dataclass(frozen=True)
class PolicyOutcome:
    outcome: Outcome
    reason: str


def evaluate(spec, policy, party: str, table_columns: dict[str, Sequence[str]]) -> PolicyOutcome:
    """Decide on `spec` for `party`. `table_columns` maps each of its tables to its real columns."""
    if spec.analyst not in policy.analysts:
        return PolicyOutcome("reject", f"analyst '{spec.analyst}' is not allowed by {party}'s policy")
    if spec.function not in policy.functions:
        return PolicyOutcome("reject", f"function '{spec.function}' is not allowed by {party}'s policy")
    for inp in spec.inputs:
        if inp.party != party:
            continue
        if inp.table not in table_columns:
            return PolicyOutcome("reject", f"table '{inp.table}' does not exist at {party}")
        needed = list(inp.keys) + list(inp.columns)
        missing = [c for c in needed if c not in table_columns[inp.table]]
        if missing:
            return PolicyOutcome("reject", f"table '{inp.table}' at {party} has no column(s) {', '.join(missing)}")
        granted = set(policy.tables.get(inp.table, ()))
        if inp.table not in policy.tables:
            return PolicyOutcome("reject", f"table '{inp.table}' is not shared by {party}'s policy")
        refused = [c for c in needed if c not in granted]
        if refused:
            return PolicyOutcome("reject", f"column(s) {', '.join(refused)} of '{inp.table}' are not shared "
                                           f"by {party}'s policy")
    for rel in spec.release:
        outside = [r for r in rel.to if r not in policy.recipients]
        if outside:
            return PolicyOutcome("reject", f"release '{rel.kind}' to {', '.join(outside)} is not allowed by "
                                           f"{party}'s policy")
        if rel.kind in ID_RELEASE_KINDS:
            outside = [r for r in rel.to if r not in policy.id_recipients]
            if outside:
                return PolicyOutcome("reject", f"'{rel.kind}' may go only to {', '.join(policy.id_recipients) or 'nobody'} "
                                               f"under {party}'s policy, not to {', '.join(outside)}")
    for rule in policy.auto_approve:
        if (spec.analyst in rule.analysts and spec.function in rule.functions
                and all(r.kind in rule.release_kinds and set(r.to) <= set(rule.recipients) for r in spec.release)):
            return PolicyOutcome("approve", "approved by auto-approve rule")
    return PolicyOutcome("pending", "no auto-approve rule covers this job; waiting for an operator")


def decision_for(spec, job_id: str, party: str, policy, compute_measurements: Sequence[str], *,
                 approve: bool, reason: str, decided_by: str, now: float | None = None) -> Decision:
    """The signed-to-be decision: for an approval, exactly the terms this owner agrees to,
    until `now` + the policy's approval_validity."""
    if not approve:
        return Decision(job_id=job_id, party=party, decision="reject", reason=reason, function=spec.function,
                        compute=spec.compute, decided_by=decided_by)
    tables = tuple((inp.table, tuple(sorted(set(inp.keys) | set(inp.columns))))
                   for inp in spec.inputs if inp.party == party)
    return Decision(
        job_id=job_id, party=party, decision="approve", reason=reason, function=spec.function,
        compute=spec.compute, tables=tables,
        release=tuple((r.kind, tuple(r.to)) for r in spec.release),
        compute_measurements=tuple(m.lower() for m in compute_measurements),
        min_group_size=int(policy.min_group_size), id_recipients=tuple(policy.id_recipients),
        decided_by=decided_by,
        not_after=int(time.time() if now is None else now) + int(policy.approval_validity),
    )
