"""The privacy-budget ledger in a node's store: spends land with their approval, never past the budget."""

from __future__ import annotations

import threading

import pytest

from teenet.approval import Decision, sign_decision
from teenet.config import Budget, OwnerPolicy
from teenet.identity import MemberKeys
from teenet.node.budget import first_refusal, table_budget
from teenet.node.store import BudgetExceeded, NodeStore

KEY = MemberKeys.generate().signing
BUDGETS = {"customers": (1.0, 1e-6)}
POLICY = OwnerPolicy(tables={"customers": ("customer_id", "income")}, budgets={"customers": Budget(1.0, 1e-6)})


def _job(store: NodeStore, n: int) -> str:
    job_id = f"{n:064x}"
    store.remember_job(job_id, b"{}", "analyst", b"sig", f"job-{n}", "aggregate")
    return job_id


def _approve(store: NodeStore, job_id: str, epsilon: float, delta: float = 0.0):
    d = Decision(job_id=job_id, party="bank", decision="approve", reason="ok", epsilon=epsilon, delta=delta)
    return store.store_decision(sign_decision(d, KEY), "approved", "ok",
                                spends=[("customers", epsilon, delta)], budgets=BUDGETS)


def test_spends_add_up_and_the_spend_past_the_budget_stores_nothing(tmp_path):
    store = NodeStore(tmp_path / "node.db")
    _approve(store, _job(store, 1), 0.4)
    _approve(store, _job(store, 2), 0.6)  # exactly what was left
    left = table_budget(store, POLICY, "customers")
    assert left.ledger.spent_epsilon == pytest.approx(1.0) and left.remaining_epsilon == pytest.approx(0.0)
    third = _job(store, 3)
    with pytest.raises(BudgetExceeded):
        _approve(store, third, 0.1)
    assert store.decision(third, "bank") is None  # the approval was not kept either
    assert store.job(third).status == "new"
    assert table_budget(store, POLICY, "customers").ledger.jobs == 2


def test_a_refusal_names_what_remains(tmp_path):
    store = NodeStore(tmp_path / "node.db")
    _approve(store, _job(store, 1), 0.75)
    reason = first_refusal(store, POLICY, "bank", [("customers", 0.5, 0.0)])
    assert reason.startswith("budget.customers: ")
    assert "remaining epsilon 0.25 of 1" in reason and "spend epsilon 0.5" in reason
    assert first_refusal(store, POLICY, "bank", [("customers", 0.25, 0.0)]) is None


def test_a_raise_adds_to_the_budget_and_survives_a_reopen(tmp_path):
    store = NodeStore(tmp_path / "node.db")
    _approve(store, _job(store, 1), 1.0)
    store.raise_budget("customers", 2.0, 0.0, "dana", "quarterly review")
    store.close()
    store = NodeStore(tmp_path / "node.db")
    b = table_budget(store, POLICY, "customers")
    assert (b.epsilon, b.ledger.spent_epsilon, b.remaining_epsilon) == pytest.approx((3.0, 1.0, 2.0))
    _approve(store, _job(store, 2), 2.0)
    assert table_budget(store, POLICY, "customers").remaining_epsilon == pytest.approx(0.0)


def test_a_decision_kept_once_spends_once(tmp_path):
    store = NodeStore(tmp_path / "node.db")
    job_id = _job(store, 1)
    _approve(store, job_id, 0.5)
    _approve(store, job_id, 0.5)  # a re-send after a crash keeps the first decision and spends nothing more
    assert table_budget(store, POLICY, "customers").ledger.spent_epsilon == pytest.approx(0.5)


def test_concurrent_decisions_cannot_both_spend_the_last_of_a_budget(tmp_path):
    stores = [NodeStore(tmp_path / "node.db") for _ in range(4)]  # separate connections, as separate threads
    jobs = [_job(stores[0], n) for n in range(8)]
    won, lost = [], []

    def decide(i: int) -> None:
        try:
            _approve(stores[i % 4], jobs[i], 0.3)
            won.append(i)
        except BudgetExceeded:
            lost.append(i)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 3 and len(lost) == 5  # 3 x 0.3 <= 1 < 4 x 0.3
    assert table_budget(stores[0], POLICY, "customers").ledger.spent_epsilon == pytest.approx(0.9)
