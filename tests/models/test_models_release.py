"""Each release rule refused with its reason, before any data is touched."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from teenet.errors import InputError, ReleaseRefused
from teenet.models import FUNCTIONS, InputSpec, PartyInput, ReleaseRequest, ReleaseRules, run_function, validate_job

from models_helpers import rule, rules_for

BANK = PartyInput("bank", "customers", ("id",), ("region", "income"),
                  pa.table({"id": list(range(12)), "region": ["north"] * 9 + ["south"] * 3,
                            "income": [10.0 * i for i in range(12)]}))
TELCO = PartyInput("telco", "subscribers", ("id",), ("spend",),
                   pa.table({"id": list(range(12)), "spend": [1.0] * 12}))
# Data the function would choke on: a refusal with this input proves the rules ran first.
BROKEN = PartyInput("telco", "subscribers", ("id",), ("spend",), pa.table({"nothing": [1]}))
RULES = rules_for({"size": {"bank", "telco", "analyst"}, "ids": {"bank"}, "aggregate": {"analyst"},
                   "scores": {"bank", "telco"}, "model": {"analyst"}}, {"bank", "telco"}, k=5)


def test_raw_rows_are_never_released():
    with pytest.raises(ReleaseRefused, match=r"release.raw_rows: release\[0\].kind 'rows' would release raw rows"):
        run_function("psi", [BANK, BROKEN], {}, [ReleaseRequest("rows", ("bank",))], RULES)


@pytest.mark.parametrize("function,kind", [("psi", "model"), ("aggregate", "ids"), ("train", "scores"),
                                           ("predict", "aggregate")])
def test_undeclared_kinds_are_refused(function, kind):
    with pytest.raises(ReleaseRefused, match=f"release.kind: .*'{kind}' is not declared by '{function}'"):
        validate_job(function, [BANK.spec, TELCO.spec], _params(function), [ReleaseRequest(kind, ("bank",))])


def _params(function):
    return {"psi": {}, "aggregate": {"metrics": [{"column": "income", "stats": ["sum"]}]},
            "train": {"model": "ridge", "label": {"party": "bank", "column": "income"}},
            "predict": {"model": "ref", "ids_from": "bank"}}[function]


def test_ids_to_a_party_not_every_owner_approved_are_refused():
    with pytest.raises(ReleaseRefused, match=r"'ids' may not go to 'telco' \(expected recipients every owner "
                                             r"approved for 'ids': bank\)"):
        run_function("psi", [BANK, BROKEN], {}, [ReleaseRequest("ids", ("telco",))], RULES)


def test_ids_to_a_party_whose_ids_are_not_in_the_inputs_are_refused():
    rules = rules_for({"ids": {"bank", "analyst"}}, {"bank", "telco"})
    with pytest.raises(ReleaseRefused, match=r"'ids' may not go to 'analyst' \(expected parties whose ids"):
        run_function("psi", [BANK, BROKEN], {}, [ReleaseRequest("ids", ("analyst",))], rules)
    # even when the job is checked before any approval exists
    with pytest.raises(ReleaseRefused, match="'analyst'"):
        validate_job("psi", [BANK.spec, TELCO.spec], {}, [ReleaseRequest("ids", ("analyst",))])


def test_scores_to_anyone_but_the_owner_of_the_ids_are_refused():
    request = [ReleaseRequest("scores", ("telco",))]
    params = {"model_onnx": b"not even a model", "ids_from": "bank"}
    with pytest.raises(ReleaseRefused, match=r"'scores' may not go to 'telco' \(expected only the owner of the "
                                             r"scored ids \('bank'\)"):
        run_function("predict", [BANK, BROKEN], params, request, RULES)
    with pytest.raises(ReleaseRefused, match="'telco'"):
        validate_job("predict", [BANK.spec, TELCO.spec], {"model": "m1", "ids_from": "bank"}, request)


def test_scores_owner_must_also_be_approved_by_every_owner():
    rules = rules_for({"scores": {"telco"}}, {"bank", "telco"})
    with pytest.raises(ReleaseRefused, match="approved for 'scores': telco"):
        run_function("predict", [BANK, BROKEN], {"model_onnx": b"x", "ids_from": "bank"},
                     [ReleaseRequest("scores", ("bank",))], rules)


def test_a_recipient_not_approved_is_refused():
    params = {"group_by": ["region"], "metrics": [{"column": "income", "stats": ["mean"]}]}
    with pytest.raises(ReleaseRefused, match=r"'aggregate' may not go to 'bank'"):
        run_function("aggregate", [BANK], params, [ReleaseRequest("aggregate", ("analyst", "bank"))], RULES)
    with pytest.raises(ReleaseRefused, match=r"may not go to 'analyst' \(expected .*: nobody\)"):
        run_function("train", [BANK], {"model": "ridge", "label": {"column": "income"}, "layout": "horizontal"},
                     [ReleaseRequest("metrics", ("analyst",))], RULES)


def test_a_group_below_k_is_suppressed_and_not_released():
    params = {"group_by": ["region"], "metrics": [{"column": "income", "stats": ["mean", "max"]}]}
    rules = rules_for({"aggregate": {"analyst"}}, {"bank"}, k=5,
                      analysis=(rule("bank", "customers", min_k=5, statistics=["mean", "max"]),))
    (out,) = run_function("aggregate", [BANK], params, [ReleaseRequest("aggregate", ("analyst",))], rules)
    document = json.loads(out.payload)
    assert document["suppressed_groups"] == 1
    assert [row[0] for row in document["rows"]] == ["north"]
    assert b"south" not in out.payload and b"110" not in out.payload  # the south max (110.0) never leaves
    assert out.summary["suppressed_groups"] == 1


def test_requests_must_name_something_and_someone():
    with pytest.raises(ReleaseRefused, match="asks to release nothing"):
        run_function("psi", [BANK, TELCO], {}, [], RULES)
    with pytest.raises(ReleaseRefused, match="names no recipient"):
        run_function("psi", [BANK, TELCO], {}, [ReleaseRequest("size", ())], RULES)
    with pytest.raises(ReleaseRefused, match="requested twice"):
        run_function("psi", [BANK, TELCO], {}, [ReleaseRequest("size", ("bank",))] * 2, RULES)


def test_released_results_are_addressed_to_the_requested_recipients():
    out = run_function("psi", [BANK, TELCO], {}, [ReleaseRequest("size", ("bank", "analyst"))], RULES)
    assert [(r.kind, r.recipients, r.media_type) for r in out] == [("size", ("bank", "analyst"), "application/json")]


def test_rules_must_have_a_positive_k():
    with pytest.raises(InputError) as err:
        ReleaseRules(min_group_size=0, approved_recipients={}, id_owners=frozenset())
    assert err.value.field == "rules.min_group_size"


def test_every_function_declares_its_kinds_and_never_rows():
    assert {name: sorted(fn.release_kinds) for name, fn in FUNCTIONS.items()} == {
        "psi": ["ids", "size", "sums"], "aggregate": ["aggregate"], "train": ["metrics", "model"],
        "predict": ["scores"]}


def test_unknown_function_is_an_input_error():
    with pytest.raises(InputError) as err:
        validate_job("export_everything", [InputSpec("a", "t", ("id",), ())], {}, [])
    assert err.value.field == "function" and "psi" in str(err.value)


def test_a_group_of_one_customers_many_rows_is_suppressed():
    transactions = PartyInput("telco", "transactions", ("id",), ("plan", "spend"),
                              pa.table({"id": [0] * 6 + list(range(1, 12)),
                                        "plan": ["gold"] * 6 + ["basic"] * 11, "spend": [500.0] * 6 + [1.0] * 11}))
    params = {"group_by": ["plan"], "metrics": [{"column": "spend", "stats": ["sum"]}]}
    (out,) = run_function("aggregate", [BANK, transactions], params,
                          [ReleaseRequest("aggregate", ("analyst",))], RULES)
    document = json.loads(out.payload)
    assert document["suppressed_groups"] == 1  # six rows, but one customer: below k = 5
    assert document["rows"] == [["basic", 11, 11.0]]
    assert b"gold" not in out.payload and b"3000" not in out.payload
