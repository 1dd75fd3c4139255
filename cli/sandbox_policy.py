"""The analysis rules and privacy budgets `teenet sandbox init` writes into each data owner's policy.

Sensible defaults for the synthetic tables (teenet.cli.sandbox_data): aggregates with k = 10,
count/sum/mean/std only (no min, max or percentiles), grouping by region only, customer_id
the only join key, DP optional with at most epsilon 1 per job and a budget of 10 per table,
the tree models with bounded size (every leaf fits at least k rows whatever the rule). A
table the parties bring themselves (`--data`) gets the default rule, which is as strict on
statistics and k but lets any shared column be grouped by (two at once) or joined on.
What each rule stops, and what it does not, is docs/privacy.md.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

# The synthetic tables' columns a job may group by, and the DP value bounds of their metrics.
GROUP_BY = {"customers": ["region"], "usage": [], "policies": ["region"]}
BOUNDS = {"customers": {"income": [0, 1000000], "age": [18, 100]},
          "usage": {"minutes": [0, 10000], "data_gb": [0, 1000], "late_payments": [0, 50]},
          "policies": {"premium": [0, 10000], "claims": [0, 50]}}
MODELS = {"logistic_regression": {"C": [0.01, 100]}, "linear_regression": {}, "ridge": {},
          "random_forest": {"n_estimators": [1, 200], "max_depth": [1, 10]},
          "hist_gradient_boosting": {"max_iter": [1, 300]},
          "xgboost": {"n_estimators": [1, 300], "max_depth": [1, 10]}}
BUDGET = {"epsilon": 10.0, "delta": 1.0e-6}


def sandbox_rules(party: str, tables: Mapping[str, Sequence[str]], own: Sequence[str] = ()) -> dict[str, Any]:
    """`analysis` and `budget` sections of `party`'s policy for its shared `tables`; `own`
    names the tables the party brought itself (`--data`), which get the default rule."""
    analysis = {}
    for table, columns in tables.items():
        if table in own or table not in GROUP_BY:
            continue  # the party's own table: the default rule
        analysis[table] = {
            "functions": ["psi", "aggregate", "train", "predict"],
            "statistics": ["count", "sum", "mean", "std"],
            "group_by": [c for c in GROUP_BY[table] if c in columns], "max_group_by": 1,
            "join_keys": ["customer_id"],
            "models": MODELS, "max_tree_depth": 10,
            "min_k": 10, "dp_required": False, "max_epsilon_per_job": 1.0,
            "bounds": {c: b for c, b in BOUNDS[table].items() if c in columns},
        }
    return {"analysis": analysis, "budget": {table: dict(BUDGET) for table in tables}}
