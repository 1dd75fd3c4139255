"""aggregate: exact against pandas, join and union, suppression, and DP through diffprivlib."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from teenet.errors import InputError
from teenet.models import PartyInput, ReleaseRequest, run_function

from models_helpers import rules_for

RULES = rules_for({"aggregate": {"analyst"}}, {"bank", "telco"}, k=10)
STATS = ["count", "sum", "mean", "std", "min", "max", "p50", "p90"]


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(5)
    n = 4000
    customers = pd.DataFrame({"id": rng.permutation(n), "region": rng.choice(["n", "s", "e", "w", "tiny"], n,
                                                                                  p=[.3, .3, .2, .198, .002]),
                              "income": rng.normal(50_000, 9_000, n).round(2)})
    customers.loc[rng.choice(n, 40, replace=False), "income"] = np.nan
    usage = pd.DataFrame({"id": rng.choice(n * 2, 3000, replace=False), "plan": rng.choice(["a", "b"], 3000),
                          "spend": rng.gamma(2.0, 30.0, 3000)})
    return customers, usage


def _inputs(tables):
    customers, usage = tables
    return [PartyInput("bank", "customers", ("id",), ("region", "income"),
                       pa.Table.from_pandas(customers, preserve_index=False)),
            PartyInput("telco", "usage", ("id",), ("plan", "spend"), pa.Table.from_pandas(usage, preserve_index=False))]


def _run(inputs, params):
    (out,) = run_function("aggregate", inputs, params, [ReleaseRequest("aggregate", ("analyst",))], RULES)
    return json.loads(out.payload)


def _reference(frame, group_by, column):
    grouped = frame.groupby(group_by, dropna=False)[column]
    ref = pd.DataFrame({"rows": frame.groupby(group_by, dropna=False).size(), "count": grouped.count(),
                        "sum": grouped.sum(), "mean": grouped.mean(), "std": grouped.std(), "min": grouped.min(),
                        "max": grouped.max(), "p50": grouped.quantile(.5), "p90": grouped.quantile(.9)})
    return ref[ref["rows"] >= RULES.min_group_size]


def test_joined_aggregate_matches_pandas_and_suppresses_small_groups(tables):
    customers, usage = tables
    params = {"combine": "join", "group_by": ["region", "plan"],
              "metrics": [{"column": "spend", "stats": STATS}, {"column": "income", "stats": ["mean"]}]}
    document = _run(_inputs(tables), params)
    joined = customers.merge(usage, on="id")
    reference = _reference(joined, ["region", "plan"], "spend")
    assert document["columns"][:3] == ["region", "plan", "rows"]
    got = {(r[0], r[1]): r[2:] for r in document["rows"]}
    assert set(got) == set(reference.index)
    for key, row in reference.iterrows():
        values = got[key]
        assert values[0] == row["rows"]
        np.testing.assert_allclose(values[1:9], row[["count", "sum", "mean", "std", "min", "max", "p50", "p90"]]
                                   .to_numpy(float), rtol=1e-12)
        assert values[9] == pytest.approx(joined[(joined.region == key[0]) & (joined.plan == key[1])]["income"].mean())
    all_groups = joined.groupby(["region", "plan"]).size()
    assert document["suppressed_groups"] == int((all_groups < RULES.min_group_size).sum()) > 0
    assert "tiny" not in {r[0] for r in document["rows"]}


def test_union_stacks_rows_from_every_party(tables):
    customers, _ = tables
    halves = [customers.iloc[:2000], customers.iloc[2000:]]
    inputs = [PartyInput(p, "customers", ("id",), ("region", "income"), pa.Table.from_pandas(h, preserve_index=False))
              for p, h in zip(["bank", "telco"], halves)]
    document = _run(inputs, {"combine": "union", "group_by": ["region"],
                             "metrics": [{"column": "income", "stats": ["count", "sum", "p50"]}]})
    reference = _reference(customers, ["region"], "income")
    assert [r[0] for r in document["rows"]] == sorted(reference.index)
    for row in document["rows"]:
        ref = reference.loc[row[0]]
        assert row[1:] == [ref["rows"], ref["count"], pytest.approx(ref["sum"]), pytest.approx(ref["p50"])]


def test_no_group_by_is_one_group(tables):
    document = _run(_inputs(tables)[:1], {"metrics": [{"column": "income", "stats": ["count"]}]})
    assert document["columns"] == ["rows", "income.count"]
    assert document["rows"] == [[4000, 3960]]


def test_dp_noise_comes_from_diffprivlib_and_is_reproducible_only_when_seeded(tables):
    params = {"group_by": ["region"], "metrics": [{"column": "income", "stats": ["count", "sum", "mean", "std"]}],
              "dp": {"epsilon": 0.5, "mechanism": "laplace", "bounds": {"income": [0, 100_000]}, "seed": 11}}
    inputs = _inputs(tables)[:1]
    first, second = _run(inputs, params), _run(inputs, params)
    assert first == second
    exact = _run(inputs, {"group_by": ["region"], "metrics": params["metrics"]})
    noisy_sums = np.array([r[3] for r in first["rows"]])
    exact_sums = np.array([r[3] for r in exact["rows"]])
    assert np.all(noisy_sums != exact_sums)
    # Laplace scale is sensitivity/(epsilon/queries) = 100000/(0.5/4): well inside 20 scales.
    assert np.all(np.abs(noisy_sums - exact_sums) < 20 * 100_000 / (0.5 / 4))
    # draws differ between groups: equal noise would let differences of groups leak exactly
    assert len(set(np.round(noisy_sums - exact_sums, 6))) == len(noisy_sums)
    unseeded = dict(params, dp={k: v for k, v in params["dp"].items() if k != "seed"})
    assert _run(inputs, unseeded)["rows"] != _run(inputs, unseeded)["rows"]
    assert first["dp"] == {"epsilon": 0.5, "mechanism": "laplace", "delta": 0.0}


@pytest.mark.parametrize("dp,std_tolerance", [
    ({"mechanism": "laplace"}, 1e-2),
    # the analytic Gaussian's scale shrinks only with the square root of a large epsilon
    ({"mechanism": "gaussian", "delta": 1e-6}, 5e-2),
])
def test_dp_with_a_huge_budget_is_close_to_exact(tables, dp, std_tolerance):
    inputs = _inputs(tables)[:1]
    metrics = [{"column": "income", "stats": ["mean", "std"]}]
    noisy = _run(inputs, {"group_by": ["region"], "metrics": metrics,
                          "dp": {"epsilon": 200.0, "bounds": {"income": [0, 100_000]}, "seed": 1, **dp}})
    exact = _run(inputs, {"group_by": ["region"], "metrics": metrics})
    for got, want in zip(noisy["rows"], exact["rows"]):
        assert got[0] == want[0]
        assert got[2] == pytest.approx(want[2], rel=1e-3)
        assert got[3] == pytest.approx(want[3], rel=std_tolerance)


@pytest.mark.parametrize("dp,field,message", [
    ({"epsilon": 1.0}, "params.dp.bounds", "is required"),
    ({"epsilon": 1.0, "bounds": {}}, "params.dp.bounds.income", "is required"),
    ({"epsilon": 1.0, "bounds": {"income": [5, 1]}}, "params.dp.bounds.income", "low < high"),
    ({"epsilon": 0, "bounds": {"income": [0, 1]}}, "params.dp.epsilon", "> 0"),
    ({"epsilon": 1.0, "mechanism": "gaussian", "bounds": {"income": [0, 1]}}, "params.dp.delta", "is required"),
    ({"epsilon": 1.0, "mechanism": "exponential", "bounds": {"income": [0, 1]}}, "params.dp.mechanism", "laplace"),
])
def test_dp_params_are_checked(tables, dp, field, message):
    with pytest.raises(InputError, match=message) as err:
        _run(_inputs(tables)[:1], {"metrics": [{"column": "income", "stats": ["sum"]}], "dp": dp})
    assert err.value.field == field


def test_dp_refuses_statistics_without_a_mechanism(tables):
    with pytest.raises(InputError, match="'p50' has no differentially private mechanism") as err:
        _run(_inputs(tables)[:1], {"metrics": [{"column": "income", "stats": ["p50"]}],
                                   "dp": {"epsilon": 1.0, "bounds": {"income": [0, 1]}}})
    assert err.value.field == "params.metrics[0].stats"


@pytest.mark.parametrize("params,field,message", [
    ({"metrics": [{"column": "income", "stats": ["median"]}]}, "params.metrics[0].stats[0]", "unknown statistic"),
    ({"metrics": [{"column": "salary", "stats": ["sum"]}]}, "params.metrics", "not among the columns"),
    ({"metrics": [{"column": "region", "stats": ["sum"]}]}, "params.metrics", "expected a number"),
    ({"metrics": []}, "params.metrics", "at least one"),
    ({"metrics": [{"column": "income", "stats": ["sum"]}], "group_by": ["ssn"]}, "params.group_by", "not among"),
    ({"metrics": [{"column": "income", "stats": ["sum"]}], "combine": "union"}, "params.metrics", "missing from"),
    ({"metrics": [{"column": "income", "stats": ["sum"]}], "grup_by": ["region"]}, "params", "grup_by"),
])
def test_bad_params_name_the_field(tables, params, field, message):
    with pytest.raises(InputError, match=message) as err:
        _run(_inputs(tables), params)
    assert err.value.field == field
