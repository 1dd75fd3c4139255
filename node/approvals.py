"""An operator's decision on a job waiting at this node: the one path for the CLI and the console.

`teenet approvals approve|reject` and the web console both call `record_operator_decision`.
It decides only whether the action may be recorded (the job exists, is still undecided,
a rejection has a reason); it writes the operator's action into the node's store and
nothing else. The daemon then makes the signed decision on its next poll, exactly as for
any operator action: an approval only within what the owner's policy allows at all
(node/data_role.py), signed with the node's key, audited with `decided_by:
operator:<name>`. Who the operator is was established by the caller (a shell on the node,
or a console session).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from teenet.errors import InputError
from teenet.node.store import NodeStore

OperatorAction = Literal["approve", "reject"]
UNDECIDED = ("pending", "new")
MAX_REASON = 1000
MAX_OPERATOR = 64


@dataclass(frozen=True)
class OperatorDecision:
    """What was recorded: the daemon signs it on its next poll."""

    job_id: str
    action: OperatorAction
    operator: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"job_id": self.job_id, "action": self.action, "operator": self.operator, "reason": self.reason}


def record_operator_decision(store: NodeStore, job_id: str, action: OperatorAction, operator: str,
                             reason: str) -> OperatorDecision:
    """Record an operator's approve or reject for `job_id` (a full id; the CLI resolves prefixes)."""
    if action not in ("approve", "reject"):
        raise InputError(f"unknown action '{action}' (approve or reject)")
    operator = operator.strip()
    if not operator or len(operator) > MAX_OPERATOR or any(not c.isprintable() for c in operator):
        raise InputError(f"operator name must be 1..{MAX_OPERATOR} printable characters")
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise InputError(f"reason is {len(reason)} characters; at most {MAX_REASON}")
    if action == "reject" and not reason:
        raise InputError("a rejection needs a reason (the analyst sees it)")
    record = store.job(job_id)
    if record is None:
        raise InputError(f"no job {job_id[:12]} at this node")
    if record.status not in UNDECIDED or store.operator_action(job_id) is not None:
        status = record.status if record.status not in UNDECIDED else "decided by an operator"
        raise InputError(f"job {job_id[:12]} is already {status}; a node decides once per job")
    store.record_operator_action(job_id, action, operator, reason)
    return OperatorDecision(job_id, action, operator, reason)


def _spend(spec: dict) -> dict[str, float | None]:
    """What the job would spend of each of this owner's tables' privacy budgets."""
    from teenet.errors import TeenetError
    from teenet.models.rules import epsilon_cost

    try:
        epsilon, delta = epsilon_cost(str(spec.get("function")), spec.get("params"))
    except TeenetError:
        return {"epsilon": None, "delta": None}  # a malformed dp section: the node rejects the job
    return {"epsilon": epsilon, "delta": delta}


def describe_job(canonical: bytes, party: str) -> dict[str, Any]:
    """What an operator judges: who asks, this party's tables and columns, what leaves, to whom,
    and what it spends of the privacy budget."""
    spec = json.loads(canonical)
    return {
        "spend": _spend(spec),
        "name": spec.get("name"), "analyst": spec.get("analyst"), "function": spec.get("function"),
        "compute": spec.get("compute"),
        "tables": [{"table": i["table"], "columns": list(i.get("keys", [])) + list(i.get("columns", []))}
                   for i in spec.get("inputs", []) if i.get("party") == party],
        "release": [{"kind": r["kind"], "to": r["to"]} for r in spec.get("release", [])],
    }
