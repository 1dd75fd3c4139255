"""node/approvals.py: the one path by which the CLI and the console record an operator's decision."""

from __future__ import annotations

import pytest

from teenet.errors import InputError
from teenet.node.approvals import describe_job, record_operator_decision
from teenet.node.store import NodeStore

SPEC = (b'{"analyst":"analyst","compute":"compute-1","function":"train","inputs":['
        b'{"columns":["premium"],"keys":["customer_id"],"party":"insurer","table":"policies"},'
        b'{"columns":["age"],"keys":["customer_id"],"party":"bank","table":"customers"}],'
        b'"name":"claims-model","release":[{"kind":"model","to":["analyst","bank"]}]}')


@pytest.fixture
def store(tmp_path):
    s = NodeStore(tmp_path / "node.db")
    s.remember_job("a" * 64, SPEC, "analyst", b"sig", "claims-model", "train")
    s.set_status("a" * 64, "pending", "no auto-approve rule covers this job")
    yield s
    s.close()


def test_an_approval_is_recorded_once_with_the_operators_name(store):
    done = record_operator_decision(store, "a" * 64, "approve", " Dana ", " fine ")
    assert done.to_json() == {"job_id": "a" * 64, "action": "approve", "operator": "Dana", "reason": "fine"}
    assert store.operator_action("a" * 64) == ("approve", "Dana", "fine")
    with pytest.raises(InputError, match="a node decides once per job"):
        record_operator_decision(store, "a" * 64, "reject", "Eve", "changed my mind")
    assert store.operator_action("a" * 64) == ("approve", "Dana", "fine")


def test_refusals_name_what_is_wrong(store):
    with pytest.raises(InputError, match="a rejection needs a reason"):
        record_operator_decision(store, "a" * 64, "reject", "Dana", "  ")
    with pytest.raises(InputError, match="unknown action"):
        record_operator_decision(store, "a" * 64, "revoke", "Dana", "x")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="operator name"):
        record_operator_decision(store, "a" * 64, "approve", "", "x")
    with pytest.raises(InputError, match="no job bbbbbbbbbbbb at this node"):
        record_operator_decision(store, "b" * 64, "approve", "Dana", "")
    store.set_status("a" * 64, "rejected", "by policy")
    with pytest.raises(InputError, match="already rejected"):
        record_operator_decision(store, "a" * 64, "approve", "Dana", "")
    assert store.operator_action("a" * 64) is None


def test_describe_job_shows_only_this_partys_tables():
    d = describe_job(SPEC, "insurer")
    assert d["tables"] == [{"table": "policies", "columns": ["customer_id", "premium"]}]
    assert d["release"] == [{"kind": "model", "to": ["analyst", "bank"]}]
