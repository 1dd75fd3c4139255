"""The owner's analysis rules and privacy budgets in a node config: read, defaulted, each mistake named."""

from __future__ import annotations

import pytest

from teenet.config import Budget, load_node_config
from teenet.errors import InputError
from teenet.models.rules import AnalysisRule

from config_sandbox import Sandbox
from test_config_loaders import edited, refused


def test_the_example_rule_and_budget_load(sandbox: Sandbox) -> None:
    policy = load_node_config(sandbox.root / "bank" / "node.yaml").policy
    rule = policy.analysis["customers"]
    assert isinstance(rule, AnalysisRule) and rule.table == "customers" and rule.party == "bank"
    assert rule.statistics == frozenset({"count", "sum", "mean", "std"}) and rule.group_by == frozenset({"region"})
    assert rule.min_k == 10 and rule.dp_required is False and rule.max_epsilon_per_job == 1.0
    assert policy.budgets["customers"] == Budget(10.0, 1e-6)
    line = (sandbox.root / "bank" / "node.yaml").read_text().splitlines().index("    customers:", 40) + 1
    assert policy.rule_sources["customers"] == f"node.yaml:{line} policy.analysis.customers"


def test_a_policy_without_rules_keeps_working_under_the_default_rule(sandbox: Sandbox) -> None:
    path = sandbox.root / "bank" / "node.yaml"
    text = path.read_text()
    path.write_text(text[: text.index("  analysis:")] + text[text.index("  # Which compute enclaves"):])
    policy = load_node_config(path).policy
    assert policy.analysis["customers"] == AnalysisRule.default("customers", "bank")
    assert policy.budgets["customers"] == Budget(0.0, 0.0)  # no DP spend until a budget is set
    assert policy.rule_sources["customers"].endswith("policy.tables.customers (the default rule)")


@pytest.mark.parametrize("old, new, field, words", [
    ("      statistics: [count, sum, mean, std]", "      statistics: [count, median]",
     "policy.analysis.customers.statistics[1]", "found 'median'"),
    ("      min_k: 10 ", "      min_k: 0 ", "policy.analysis.customers.min_k", "expected an integer >= 1"),
    ("        random_forest: {n_estimators: [1, 200], max_depth: [1, 10]}",
     "        random_forest: {n_estimators: [200, 1]}",
     "policy.analysis.customers.models.random_forest.n_estimators", "expected low <= high"),
    ("      dp_required: false", "      dp_required: false\n      dp_requried: true",
     "policy.analysis.customers.dp_requried", "unknown parameter(s): dp_requried"),
    ("  analysis:\n    customers:", "  analysis:\n    staff: {}\n    customers:", "policy.analysis.staff",
     "table 'staff' is not shared"),
    ("    customers: {epsilon: 10.0, delta: 1.0e-6}", "    customers: {epsilon: -1}",
     "policy.budget.customers.epsilon", "expected a number from 0"),
    ("    customers: {epsilon: 10.0, delta: 1.0e-6}", "    customers: {epsilon: 1, delta: 1e-6}",
     "policy.budget.customers.delta", "write it with a decimal point, e.g. 1.0e-6"),
    ("    customers: {epsilon: 10.0, delta: 1.0e-6}", "    customers: {delta: 0.1}",
     "policy.budget.customers.epsilon", "missing required field 'epsilon'"),
    ("    customers: [customer_id, age, income, region, defaulted]",
     "    customers: {columns: [customer_id, age], group_by: [age]}",
     "policy.tables.customers", "analysis rule goes under 'policy.analysis.customers'"),
])
def test_a_bad_rule_or_budget_names_file_line_and_field(sandbox: Sandbox, old: str, new: str, field: str,
                                                        words: str) -> None:
    path, line = edited(sandbox, "bank/node.yaml", old, new)
    error = refused(load_node_config, path)
    assert error.field == field and words in str(error), str(error)
    assert error.source == str(path) and error.line is not None
    assert abs(error.line - line) <= 1, str(error)
    assert isinstance(error, InputError)
