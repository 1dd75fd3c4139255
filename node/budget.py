"""Each shared table's privacy budget at its owner's node: what a job spends, what is left.

Decides whether an approval fits a table's budget, and says what remains when it does not.
The accountant is sequential composition, the simplest sound one: every approved job that
reads a table spends its whole (epsilon, delta) on it, and the spends add up
(docs/privacy.md says why, and what it does not capture). A job without differential
privacy spends nothing, because it has no epsilon to spend: what it releases is bounded by
the analysis rule's thresholds only, which do not compose (docs/privacy.md).

What a job spends is read from its params by `teenet.models.rules.epsilon_cost`, the same
reader the compute enclave uses. The ledger itself is `NodeStore` (the spend is written in
the approval's own transaction); the budget configured per table is `policy.budgets`, plus
the operator's raises. This module does not sign, send or audit anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from teenet.config import Budget, OwnerPolicy
from teenet.node.store import BudgetLedger, NodeStore, budget_fits


@dataclass(frozen=True)
class TableBudget:
    """A table's budget as it stands: configured + raised, spent, left."""

    table: str
    configured: Budget
    ledger: BudgetLedger

    @property
    def epsilon(self) -> float:
        return self.configured.epsilon + self.ledger.raised_epsilon

    @property
    def delta(self) -> float:
        return self.configured.delta + self.ledger.raised_delta

    @property
    def remaining_epsilon(self) -> float:
        return max(0.0, self.epsilon - self.ledger.spent_epsilon)

    @property
    def remaining_delta(self) -> float:
        return max(0.0, self.delta - self.ledger.spent_delta)

    def fits(self, epsilon: float, delta: float) -> bool:
        return (budget_fits(self.epsilon - self.ledger.spent_epsilon, epsilon)
                and budget_fits(self.delta - self.ledger.spent_delta, delta))

    def refusal(self, party: str, epsilon: float, delta: float) -> str:
        """Why a spend is refused, naming what remains (budgets are not secret to the analyst)."""
        return (f"budget.{self.table}: this job would spend epsilon {_num(epsilon)}, delta {_num(delta)} on "
                f"'{self.table}', more than {party}'s privacy budget for it has left "
                f"(remaining epsilon {_num(self.remaining_epsilon)} of {_num(self.epsilon)}, "
                f"delta {_num(self.remaining_delta)} of {_num(self.delta)})")

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "epsilon": self.epsilon, "delta": self.delta,
                "configured_epsilon": self.configured.epsilon, "configured_delta": self.configured.delta,
                "raised_epsilon": self.ledger.raised_epsilon, "raised_delta": self.ledger.raised_delta,
                "spent_epsilon": self.ledger.spent_epsilon, "spent_delta": self.ledger.spent_delta,
                "remaining_epsilon": self.remaining_epsilon, "remaining_delta": self.remaining_delta,
                "jobs": self.ledger.jobs}


def _num(value: float) -> str:
    return f"{value:.6g}"


def table_budget(store: NodeStore, policy: OwnerPolicy, table: str) -> TableBudget:
    return TableBudget(table, policy.budgets.get(table, Budget()), store.budget_ledger(table))


def job_cost(spec) -> tuple[float, float]:
    """(epsilon, delta) the job spends on each table it reads: (0, 0) without DP."""
    from teenet.models.rules import epsilon_cost

    epsilon, delta = epsilon_cost(spec.function, dict(spec.params))
    return float(epsilon), float(delta)


def job_spends(spec, party: str) -> list[tuple[str, float, float]]:
    """What approving `spec` spends on each of `party`'s tables (empty when it spends nothing)."""
    epsilon, delta = job_cost(spec)
    if epsilon <= 0 and delta <= 0:
        return []
    tables = list(dict.fromkeys(i.table for i in spec.inputs if i.party == party))
    return [(t, epsilon, delta) for t in tables]


def first_refusal(store: NodeStore, policy: OwnerPolicy, party: str,
                  spends: Sequence[tuple[str, float, float]]) -> str | None:
    """The reason the first table whose budget a spend would pass refuses it, or None."""
    for table, epsilon, delta in spends:
        budget = table_budget(store, policy, table)
        if not budget.fits(epsilon, delta):
            return budget.refusal(party, epsilon, delta)
    return None
