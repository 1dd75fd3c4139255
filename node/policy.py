"""The owner's policy decides on a job: approve by rule, reject with a reason, or wait for an operator.

One place for the owner's rules: which analysts, functions, tables and columns, which
recipients (and who may receive ids or scores), the smallest group, and which compute
measurements. Then each of the owner's tables the job reads is checked against that
table's analysis rule (`teenet.models.rules.check_job`: functions, statistics, group-by
columns, join keys, models and hyperparameters, release kinds, k, DP and the epsilon one
job may spend), so the outcome names the rule that matched or the rule and field that
refused. A job outside the rules is rejected; inside them, it is approved when an
auto-approve rule covers it and otherwise waits for `teenet approvals approve`.

It does not decide the privacy budget (teenet.node.budget, which needs the node's ledger),
nor sign anything: `decision_for` only writes down the terms an approval carries, which the
compute enclave enforces again (each table's rule, what the job spends).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Sequence

from teenet.approval import Decision
from teenet.errors import TeenetError

ID_RELEASE_KINDS = frozenset({"ids", "scores"})

Outcome = Literal["approve", "reject", "pending"]


@dataclass(frozen=True)
class PolicyOutcome:
    outcome: Outcome
    reason: str
    # Where each analysis rule that matched is written ("customers: bank.yaml:40 policy.tables.customers.analysis").
    rules: tuple[str, ...] = ()

    @property
    def rules_text(self) -> str:
        return "; ".join(self.rules)


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
    invalid = check_params(spec)
    if invalid is not None:
        return PolicyOutcome("reject", f"{party} cannot approve an invalid job: {invalid}")
    matched = []
    for table in dict.fromkeys(i.table for i in spec.inputs if i.party == party):
        refusal = check_analysis(spec, policy, party, table)
        if refusal is not None:
            return PolicyOutcome("reject", refusal)
        matched.append(f"{table}: {policy.rule_sources.get(table, 'policy.tables.' + table)}")
    rules = tuple(matched)
    for rule in policy.auto_approve:
        if (spec.analyst in rule.analysts and spec.function in rule.functions
                and all(r.kind in rule.release_kinds and set(r.to) <= set(rule.recipients) for r in spec.release)):
            return PolicyOutcome("approve", "approved by auto-approve rule", rules)
    return PolicyOutcome("pending", "no auto-approve rule covers this job; waiting for an operator", rules)


def check_params(spec) -> str | None:
    """The function's own refusal of the job's params and releases (as `teenet job validate`
    gives it: a DP seed, an unknown field), or None. The analyst's CLI checks this too, but a
    hostile analyst signs past it."""
    from teenet.models import InputSpec, ReleaseRequest, validate_job

    try:
        validate_job(spec.function, [InputSpec(i.party, i.table, tuple(i.keys), tuple(i.columns))
                                     for i in spec.inputs],
                     dict(spec.params), [ReleaseRequest(r.kind, tuple(r.to)) for r in spec.release])
    except TeenetError as exc:
        return str(exc)
    return None


def check_analysis(spec, policy, party: str, table: str) -> str | None:
    """The refusal of `table`'s analysis rule for this job (naming the rule and field), or None."""
    from teenet.models import InputSpec, ReleaseRequest
    from teenet.models.rules import check_job

    rule = policy.analysis.get(table)
    if rule is None:  # every shared table has a rule (the default one at least); fail closed
        return f"analysis rule for '{table}' is missing from {party}'s policy"
    try:
        check_job(rule, party=party, function=spec.function, params=dict(spec.params),
                  inputs=[InputSpec(i.party, i.table, tuple(i.keys), tuple(i.columns)) for i in spec.inputs],
                  releases=[ReleaseRequest(r.kind, tuple(r.to)) for r in spec.release])
    except TeenetError as exc:  # RuleRefused names the rule and the job's field
        return f"{exc} [{policy.rule_sources.get(table, 'policy.analysis.' + table)}]"
    return None


def decision_for(spec, job_id: str, party: str, policy, compute_measurements: Sequence[str], *,
                 approve: bool, reason: str, decided_by: str, now: float | None = None,
                 spend: tuple[float, float] = (0.0, 0.0)) -> Decision:
    """The signed-to-be decision: for an approval, exactly the terms this owner agrees to,
    until `now` + the policy's approval_validity, including each of its tables' analysis
    rule and what the job spends of their budgets."""
    if not approve:
        return Decision(job_id=job_id, party=party, decision="reject", reason=reason, function=spec.function,
                        compute=spec.compute, decided_by=decided_by)
    tables = tuple((inp.table, tuple(sorted(set(inp.keys) | set(inp.columns))))
                   for inp in spec.inputs if inp.party == party)
    rules = [policy.analysis[table] for table, _ in tables]
    analysis = tuple((table, rule.to_json()) for (table, _), rule in zip(tables, rules))
    k = max([int(policy.min_group_size)] + [int(rule.min_k) for rule in rules])
    return Decision(
        job_id=job_id, party=party, decision="approve", reason=reason, function=spec.function,
        compute=spec.compute, tables=tables,
        release=tuple((r.kind, tuple(r.to)) for r in spec.release),
        compute_measurements=tuple(m.lower() for m in compute_measurements),
        min_group_size=k, id_recipients=tuple(policy.id_recipients),
        decided_by=decided_by, analysis=analysis, epsilon=float(spend[0]), delta=float(spend[1]),
        not_after=int(time.time() if now is None else now) + int(policy.approval_validity),
    )
