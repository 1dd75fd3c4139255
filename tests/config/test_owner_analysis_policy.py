"""The owner's node decides by each table's analysis rule: which rule matched, or which rule and field refused."""

from __future__ import annotations

import pytest

from teenet.config import load_node_config
from teenet.jobspec import parse_job_spec
from teenet.node.policy import decision_for, evaluate

from config_sandbox import make_sandbox
from teenet.identity import MemberKeys  # noqa: E402

COLUMNS = {"customers": ["customer_id", "age", "income", "region", "defaulted"]}

AGGREGATE = """\
name: t
function: aggregate
compute: compute-1
inputs:
  - {{party: bank, table: customers, key: customer_id, columns: [region, age, income]}}
params:
  group_by: [{group_by}]
  metrics:
    - {{column: income, stats: [{stats}]}}
{dp}release:
  - {{kind: aggregate, to: [analyst]}}
"""


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    from config_sandbox import MEMBERS

    root = tmp_path_factory.mktemp("cfg")
    make_sandbox(root, {m: MemberKeys.generate() for m in MEMBERS})
    return load_node_config(root / "bank" / "node.yaml").policy


def _spec(group_by="region", stats="count, mean", dp=""):
    import dataclasses

    spec = parse_job_spec(AGGREGATE.format(group_by=group_by, stats=stats, dp=dp), source="job.yaml")
    return dataclasses.replace(spec, analyst="analyst")  # as signed by the analyst


def test_a_job_inside_the_rule_names_the_rule_that_matched(policy):
    out = evaluate(_spec(), policy, "bank", COLUMNS)
    assert out.outcome == "approve"
    assert len(out.rules) == 1 and out.rules[0].startswith("customers: node.yaml:")
    assert out.rules[0].endswith("policy.analysis.customers")


@pytest.mark.parametrize("kwargs, rule, field", [
    ({"group_by": "age"}, "analysis.group_by", "params.group_by[0]"),
    ({"stats": "mean, max"}, "analysis.statistics", "params.metrics[0].stats[1]"),
    ({"stats": "p50"}, "analysis.statistics", "params.metrics[0].stats[0]"),
    ({"dp": "  dp: {epsilon: 5, delta: 1.0e-8, bounds: {income: [0, 1000]}}\n"}, "analysis.max_epsilon_per_job",
     "params.dp.epsilon"),
])
def test_a_job_outside_the_rule_is_rejected_naming_the_rule_the_field_and_where_it_is_written(policy, kwargs,
                                                                                           rule, field):
    out = evaluate(_spec(**kwargs), policy, "bank", COLUMNS)
    assert out.outcome == "reject"
    assert out.reason.startswith(f"{rule}: field '{field}'"), out.reason
    assert out.reason.endswith("policy.analysis.customers]"), out.reason


def test_a_job_with_an_rng_seed_is_rejected_before_the_rule_is_read(policy):
    out = evaluate(_spec(dp="  dp: {epsilon: 0.5, delta: 1.0e-8, seed: 7, bounds: {income: [0, 1000]}}\n"),
                   policy, "bank", COLUMNS)
    assert out.outcome == "reject" and out.reason.startswith("bank cannot approve an invalid job: ")
    assert "seed" in out.reason


def test_the_approval_carries_the_rule_the_spend_and_the_strictest_k(policy):
    spec = _spec(dp="  dp: {epsilon: 0.5, delta: 1.0e-8, bounds: {income: [0, 1000]}}\n")
    d = decision_for(spec, "ab" * 32, "bank", policy, ["cd" * 48], approve=True, reason="ok", decided_by="policy",
                     spend=(0.5, 1e-8))
    assert d.rule_for("customers") == policy.analysis["customers"].to_json()
    assert (d.epsilon, d.delta) == (0.5, 1e-8) and d.min_group_size == 10
    rejected = decision_for(spec, "ab" * 32, "bank", policy, ["cd" * 48], approve=False, reason="no",
                            decided_by="policy")
    assert rejected.analysis == () and rejected.epsilon == 0.0
