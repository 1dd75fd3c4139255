"""Owners' analysis rules: read from YAML, carried in approvals, checked by the node and again by the enclave."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from teenet.errors import InputError, ReleaseRefused
from teenet.models import InputSpec, PartyInput, ReleaseRequest, ReleaseRules, run_function
from teenet.models.rules import AnalysisRule, RuleRefused, check_job, epsilon_cost

from models_helpers import rule, rules_for

BANK = InputSpec("bank", "customers", ("customer_id",), ("region", "segment", "income", "defaulted"))
INSURER = InputSpec("insurer", "policies", ("customer_id",), ("premium", "county"))
TO_ANALYST = [ReleaseRequest("aggregate", ("analyst",))]


def _check(r, function="aggregate", params=None, inputs=(BANK, INSURER), releases=TO_ANALYST, party="bank"):
    check_job(r, party=party, function=function, params=params or {}, inputs=list(inputs), releases=releases)


def _refused(r, rule_name, field, **kwargs):
    with pytest.raises(RuleRefused) as err:
        _check(r, **kwargs)
    assert (err.value.rule, err.value.field) == (rule_name, field)
    assert str(err.value).startswith(f"{rule_name}: field '{field}': ")
    assert isinstance(err.value, ReleaseRefused)
    return err.value


def test_defaults_are_strict_where_a_row_could_leak():
    r = AnalysisRule.from_config("customers", {}, "policy.analysis.customers")
    assert r.statistics == {"count", "sum", "mean", "std"} and r.min_k == 10 and not r.dp_required
    assert r.group_by is None and r.join_keys is None and r.releases is None and r.roc
    assert set(r.models) == {"logistic_regression", "linear_regression", "ridge", "hist_gradient_boosting",
                             "random_forest", "xgboost"}
    assert r == AnalysisRule.default("customers")


@pytest.mark.parametrize("mapping,field,message", [
    ({"statistics": ["mean", "median"]}, "policy.analysis.customers.statistics[1]", "found 'median'"),
    ({"functions": ["export"]}, "policy.analysis.customers.functions[0]", "expected one of aggregate"),
    ({"models": {"svm": {}}}, "policy.analysis.customers.models.svm", "expected one of logistic_regression"),
    ({"models": {"ridge": {"C": [0, 1]}}}, "policy.analysis.customers.models.ridge.C", "not a hyperparameter of ridge"),
    ({"models": {"ridge": {"alpha": [5, 1]}}}, "policy.analysis.customers.models.ridge.alpha", "low <= high"),
    ({"releases": {"rows": ["analyst"]}}, "policy.analysis.customers.releases.rows", "expected one of aggregate"),
    ({"releases": {"size": "analyst"}}, "policy.analysis.customers.releases.size", "list of names"),
    ({"min_k": 0}, "policy.analysis.customers.min_k", ">= 1"),
    ({"max_epsilon_per_job": -1}, "policy.analysis.customers.max_epsilon_per_job", "> 0"),
    ({"bounds": {"income": [0]}}, "policy.analysis.customers.bounds.income", "[low, high]"),
    ({"dp_required": "yes"}, "policy.analysis.customers.dp_required", "true or false"),
    ({"group_bys": ["region"]}, "policy.analysis.customers", "unknown parameter(s): group_bys"),
])
def test_a_bad_rule_names_its_field(mapping, field, message):
    with pytest.raises(InputError) as err:
        AnalysisRule.from_config("customers", mapping, "policy.analysis.customers")
    assert err.value.field == field and message in str(err.value)


def test_a_rule_travels_in_an_approval_as_canonical_json():
    r = rule("bank", "customers", statistics=["p50", "count"], group_by=["segment", "region"],
             join_keys=["customer_id"], models={"random_forest": {"n_estimators": [1, 50]}}, max_tree_depth=6,
             releases={"size": ["bank", "analyst"]}, min_k=25, dp_required=True, max_epsilon_per_job=0.5,
             max_rows_per_key=3, bounds={"income": [0, 10**6]}, roc=False)
    data = r.to_json()
    assert data["statistics"] == ["count", "p50"] and data["group_by"] == ["region", "segment"]
    assert data["releases"] == {"size": ["analyst", "bank"]} and data["party"] == "bank"
    assert json.loads(json.dumps(data, sort_keys=True)) == data  # JSON-safe as it is
    assert AnalysisRule.from_json(json.loads(json.dumps(data))) == r
    assert AnalysisRule.from_json(AnalysisRule.default("t").to_json()) == AnalysisRule.default("t")
    with pytest.raises(InputError) as err:
        AnalysisRule.from_json({**data, "version": 2})
    assert err.value.field == "approval.analysis"
    with pytest.raises(InputError) as err:
        AnalysisRule.from_json({**data, "min_k": "ten"})
    assert err.value.field == "approval.analysis.customers.min_k"


def test_functions_and_release_kinds_and_recipients():
    r = rule("bank", "customers", functions=["psi"], releases={"size": ["analyst"], "aggregate": ["bank"]})
    e = _refused(r, "analysis.functions", "function")
    assert e.expected == "psi" and e.found == "aggregate"
    r = rule("bank", "customers", releases={"size": ["analyst"], "aggregate": ["bank"]})
    _refused(r, "analysis.releases", "release[0].to")
    _refused(r, "analysis.releases", "release[1].kind",
             releases=[ReleaseRequest("aggregate", ("bank",)), ReleaseRequest("ids", ("bank",))])


def test_join_keys_and_group_by_are_checked_on_the_owners_own_columns_only():
    r = rule("bank", "customers", join_keys=["account"], group_by=["region"])
    _refused(r, "analysis.join_keys", "inputs[0].keys[0]")
    r = rule("bank", "customers", group_by=["region"])
    _check(r, params={"group_by": ["region", "county"]})  # county is the insurer's: the insurer's rule decides
    e = _refused(r, "analysis.group_by", "params.group_by[0]", params={"group_by": ["segment"]})
    assert (e.expected, e.found) == ("region", "segment")
    _refused(rule("bank", "customers", max_group_by=1), "analysis.max_group_by", "params.group_by",
             params={"group_by": ["region", "segment"]})


def test_statistics_and_dp_apply_to_the_whole_job():
    r = rule("bank", "customers", statistics=["count", "mean", "p90"])
    _check(r, params={"metrics": [{"column": "premium", "stats": ["mean", "p90"]}]})
    e = _refused(r, "analysis.statistics", "params.metrics[0].stats[1]",
                 params={"metrics": [{"column": "premium", "stats": ["mean", "p50"]}]})
    assert e.found == "p50"
    _check(rule("bank", "customers", statistics=["percentiles"]), params={"metrics": [{"column": "x", "stats": ["p7"]}]})
    dp = rule("bank", "customers", dp_required=True, max_epsilon_per_job=1.0, max_rows_per_key=2)
    _refused(dp, "analysis.dp_required", "params.dp", params={"metrics": [{"column": "income", "stats": ["mean"]}]})
    _refused(dp, "analysis.max_epsilon_per_job", "params.dp.epsilon", params={"dp": {"epsilon": 2.0}})
    _refused(dp, "analysis.max_rows_per_key", "params.dp.max_rows_per_key",
             params={"dp": {"epsilon": 0.5, "max_rows_per_key": 5}})
    _check(dp, params={"dp": {"epsilon": 0.5, "max_rows_per_key": 2}})
    _refused(dp, "analysis.dp_required", "release", function="psi", releases=[ReleaseRequest("size", ("bank",))])
    _refused(rule("bank", "customers", statistics=["count"]), "analysis.statistics", "params.payload", function="psi",
             releases=[ReleaseRequest("sums", ("bank",))])


def test_models_and_their_hyperparameter_bounds():
    r = rule("bank", "customers", models={"logistic_regression": {"C": [0.1, 10]},
                                          "random_forest": {"n_estimators": [1, 50]}})
    train = {"label": {"party": "bank", "column": "defaulted"}}
    releases = [ReleaseRequest("model", ("analyst",))]
    _refused(r, "analysis.models", "params.model", function="train", params={**train, "model": "ridge"},
             releases=releases)
    _refused(r, "analysis.models", "params.hyperparameters.C", function="train", releases=releases,
             params={**train, "model": "logistic_regression", "hyperparameters": {"C": 100}})
    e = _refused(r, "analysis.models", "params.hyperparameters.n_estimators", function="train", releases=releases,
                 params={**train, "model": "random_forest"})
    assert e.found == "100 (the default)"
    _check(r, function="train", releases=releases,
           params={**train, "model": "random_forest", "hyperparameters": {"n_estimators": 50, "max_depth": 5}})
    _refused(rule("bank", "customers", dp_required=True), "analysis.dp_required", "params.model", function="train",
             releases=releases, params={**train, "model": "random_forest"})


def test_release_rules_combine_every_owners_rules_strictly():
    rules = ReleaseRules(min_group_size=5, approved_recipients={}, id_owners=frozenset(), analysis=(
        rule("bank", "customers", min_k=20, max_epsilon_per_job=2.0, max_tree_depth=8, max_rows_per_key=3),
        rule("insurer", "policies", min_k=10, max_epsilon_per_job=0.5, dp_required=True, roc=False,
             bounds={"premium": [0, 5000]}, max_trees=40, max_tree_nodes=1000)))
    assert (rules.k, rules.max_epsilon_per_job, rules.max_tree_depth, rules.max_rows_per_key) == (20, 0.5, 8, 3)
    assert rules.dp_required and not rules.roc_allowed and (rules.max_trees, rules.max_tree_nodes) == (40, 1000)
    assert rules.value_bounds("premium", [BANK, INSURER]) == (0.0, 5000.0)
    assert rules.value_bounds("income", [BANK, INSURER]) is None
    # an approval made before analysis rules existed: its k, the default rule's limits
    old = ReleaseRules(min_group_size=7, approved_recipients={}, id_owners=frozenset())
    assert old.k == 7 and not old.dp_required and old.roc_allowed and old.max_tree_nodes == 500_000
    assert old.effective_analysis[0].statistics == {"count", "sum", "mean", "std"}
    with pytest.raises(InputError) as err:
        ReleaseRules(min_group_size=5, approved_recipients={}, id_owners=frozenset(),
                     analysis=(AnalysisRule("customers"),))
    assert err.value.field == "rules.analysis[0]"


def test_the_enclave_checks_every_rule_again_before_touching_data():
    """A forged or stale approval cannot widen the rule: run_function refuses before reading the table."""
    broken = PartyInput("bank", "customers", ("customer_id",), ("region", "segment", "income"),
                        pa.table({"nothing": [1]}))
    rules = rules_for({"aggregate": {"analyst"}}, {"bank"}, k=10, analysis=(rule("bank", "customers",
                                                                                 group_by=["region"]),))
    with pytest.raises(RuleRefused, match=r"analysis.group_by: field 'params.group_by\[0\]'"):
        run_function("aggregate", [broken], {"group_by": ["segment"], "metrics": [{"column": "income",
                                                                                   "stats": ["mean"]}]},
                     TO_ANALYST, rules)
    with pytest.raises(RuleRefused, match="analysis.statistics"):
        run_function("aggregate", [broken], {"metrics": [{"column": "income", "stats": ["max"]}]}, TO_ANALYST, rules)


def test_epsilon_cost_is_what_the_spec_spends():
    assert epsilon_cost("aggregate", {"metrics": []}) == (0.0, 0.0)
    assert epsilon_cost("aggregate", {"dp": {"epsilon": 0.5, "delta": 1e-6}}) == (0.5, 1e-6)
    assert epsilon_cost("psi", {"dp": {"epsilon": 3}}) == (0.0, 0.0)
    with pytest.raises(InputError) as err:
        epsilon_cost("aggregate", {"dp": {"epsilon": "lots"}})
    assert err.value.field == "params.dp.epsilon"


def test_a_hyperparameter_left_out_is_checked_at_the_value_the_enclave_will_use():
    r = rule("bank", "customers", max_tree_depth=6, max_trees=40,
             models={"random_forest": {"max_depth": [1, 8], "n_estimators": [1, 50]}})
    releases = [ReleaseRequest("model", ("analyst",))]
    _check(r, function="train", releases=releases, params={"model": "random_forest"})  # depth 6, 40 trees
    e = _refused(rule("bank", "customers", models={"random_forest": {"max_depth": [1, 8]}}), "analysis.models",
                 "params.hyperparameters.max_depth", function="train", releases=releases,
                 params={"model": "random_forest"})
    assert e.found == "unbounded (not set)"
