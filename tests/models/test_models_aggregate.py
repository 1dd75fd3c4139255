"""aggregate: exact against pandas, join and union, suppression, and DP through diffprivlib."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from teenet.errors import InputError
from teenet.models import PartyInput, ReleaseRequest, run_function

from models_helpers import rule, rules_for

# The bank's rule names the statistics beyond the defaults that these tests release.
RULES = rules_for({"aggregate": {"analyst"}}, {"bank", "telco"}, k=10,
                  analysis=(rule("bank", "customers", statistics=["count", "sum", "mean", "std", "min", "max",
                                                                   "percentiles"]),))
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


def test_dp_noise_comes_from_diffprivlib_and_two_identical_jobs_differ(tables):
    params = {"group_by": ["region"], "metrics": [{"column": "income", "stats": ["count", "sum", "mean", "std"]}],
              "dp": {"epsilon": 0.5, "mechanism": "laplace", "delta": 1e-6, "bounds": {"income": [0, 100_000]}}}
    inputs = _inputs(tables)[:1]
    first, second = _run(inputs, params), _run(inputs, params)
    exact = _run(inputs, {"group_by": ["region"], "metrics": params["metrics"]})
    assert [r[0] for r in first["rows"]] == [r[0] for r in exact["rows"]] == ["e", "n", "s", "w"]
    noisy_sums = np.array([r[3] for r in first["rows"]])
    exact_sums = np.array([r[3] for r in exact["rows"]])
    assert np.all(noisy_sums != exact_sums)
    # two identical jobs: fresh draws from the enclave's secure randomness, not a replayable seed
    assert [r[1:] for r in first["rows"]] != [r[1:] for r in second["rows"]]
    assert np.all(np.array([r[3] for r in second["rows"]]) != noisy_sums)
    # Laplace scale is sensitivity/(epsilon/queries) = 100000/(0.5/4): well inside 20 scales.
    assert np.all(np.abs(noisy_sums - exact_sums) < 20 * 100_000 / (0.5 / 4))
    # draws differ between groups: equal noise would let differences of groups leak exactly
    assert len(set(np.round(noisy_sums - exact_sums, 6))) == len(noisy_sums)
    assert first["dp"] == {"epsilon": 0.5, "mechanism": "laplace", "delta": 1e-6, "rows_per_key": 1,
                           "bounds": {"income": [0.0, 100_000.0]}, "partition_selection": True}
    assert first["suppressed_groups"] is None  # how many groups exist is exact: not released under DP


@pytest.mark.parametrize("name", ["seed", "random_state", "rng"])
def test_any_rng_control_in_a_dp_spec_is_refused_at_validation(name):
    from teenet.models import InputSpec, validate_job

    spec = InputSpec("bank", "customers", ("id",), ("region", "income"))
    params = {"metrics": [{"column": "income", "stats": ["mean"]}],
              "dp": {"epsilon": 1.0, "bounds": {"income": [0, 1]}, name: 11}}
    with pytest.raises(InputError, match="secure randomness; a job cannot seed or set it") as err:
        validate_job("aggregate", [spec], params, [ReleaseRequest("aggregate", ("analyst",))])
    assert err.value.field == f"params.dp.{name}"
    with pytest.raises(InputError, match="cannot seed") as err:
        validate_job("aggregate", [spec], {"metrics": params["metrics"], "seed": 3},
                     [ReleaseRequest("aggregate", ("analyst",))])
    assert err.value.field == "params.seed"


def test_dp_mechanisms_are_built_without_a_random_state(monkeypatch, tables):
    """Every diffprivlib mechanism gets random_state None, for which diffprivlib uses secrets.SystemRandom."""
    import secrets

    from diffprivlib.mechanisms import Laplace

    seen = []
    original = Laplace.__init__

    def spy(self, **kwargs):
        original(self, **kwargs)
        seen.append((kwargs.get("random_state"), type(self._rng)))

    monkeypatch.setattr(Laplace, "__init__", spy)
    _run(_inputs(tables)[:1], {"metrics": [{"column": "income", "stats": ["mean"]}],
                               "dp": {"epsilon": 1.0, "bounds": {"income": [0, 100_000]}}})
    assert seen and all(state is None and rng is secrets.SystemRandom for state, rng in seen)


@pytest.mark.parametrize("dp,mean_tolerance,std_tolerance", [
    # the Laplace std's relative error was over 1e-2 in 7 of 300 runs (largest 1.3e-2, mean at
    # most 3.1e-4; measured 2026-12-07), so 1e-2 failed about one CI run in 40: 3e-2 holds it
    ({"mechanism": "laplace", "delta": 1e-6}, 1e-3, 3e-2),
    # the analytic Gaussian's scale shrinks only with the square root of a large epsilon: its
    # noisy mean was seen 0.1% off in about one run in six (so 1e-3 was a flaky bound; 5e-3
    # is several of its standard deviations), and its std is held to 10%
    ({"mechanism": "gaussian", "delta": 1e-6}, 5e-3, 1e-1),
])
def test_dp_with_a_huge_budget_is_close_to_exact(tables, dp, mean_tolerance, std_tolerance):
    inputs = _inputs(tables)[:1]
    metrics = [{"column": "income", "stats": ["mean", "std"]}]
    noisy = _run(inputs, {"group_by": ["region"], "metrics": metrics,
                          "dp": {"epsilon": 200.0, "bounds": {"income": [0, 100_000]}, **dp}})
    exact = _run(inputs, {"group_by": ["region"], "metrics": metrics})
    assert len(noisy["rows"]) == len(exact["rows"]) == 4
    for got, want in zip(noisy["rows"], exact["rows"]):
        assert got[0] == pytest.approx(want[0], abs=2)
        assert got[2] == pytest.approx(want[2], rel=mean_tolerance)
        assert got[3] == pytest.approx(want[3], rel=std_tolerance)


@pytest.mark.parametrize("dp,field,message", [
    ({"epsilon": 1.0}, "params.dp.bounds.income", "no bounds for 'income' in the spec or the owners' rules"),
    ({"epsilon": 1.0, "bounds": {}}, "params.dp.bounds.income", "no bounds"),
    ({"epsilon": 1.0, "bounds": {"income": [5, 1]}}, "params.dp.bounds.income", "low < high"),
    ({"epsilon": 1.0, "bounds": {"region": [5, 10]}}, "params.dp.bounds.region", "not a metric column"),
    ({"epsilon": 0, "bounds": {"income": [0, 1]}}, "params.dp.epsilon", "> 0"),
    ({"epsilon": 1.0, "mechanism": "gaussian", "bounds": {"income": [0, 1]}}, "params.dp.delta", "is required"),
    ({"epsilon": 1.0, "mechanism": "exponential", "bounds": {"income": [0, 1]}}, "params.dp.mechanism", "laplace"),
    ({"epsilon": 1.0, "bounds": {"income": [0, 1]}, "max_rows_per_key": 0}, "params.dp.max_rows_per_key", ">= 1"),
])
def test_dp_params_are_checked(tables, dp, field, message):
    with pytest.raises(InputError, match=message) as err:
        _run(_inputs(tables)[:1], {"metrics": [{"column": "income", "stats": ["sum"]}], "dp": dp})
    assert err.value.field == field


def test_grouping_under_dp_needs_a_delta_for_partition_selection(tables):
    with pytest.raises(InputError, match="partition selection") as err:
        _run(_inputs(tables)[:1], {"group_by": ["region"], "metrics": [{"column": "income", "stats": ["sum"]}],
                                   "dp": {"epsilon": 1.0, "bounds": {"income": [0, 1]}}})
    assert err.value.field == "params.dp.delta"


def test_dp_bounds_come_from_the_owners_rule_when_the_spec_gives_none(tables):
    rules = rules_for({"aggregate": {"analyst"}}, {"bank"}, k=10,
                      analysis=(rule("bank", "customers", bounds={"income": [0, 1000]}),))
    (out,) = run_function("aggregate", _inputs(tables)[:1], {"metrics": [{"column": "income", "stats": ["mean"]}],
                                                             "dp": {"epsilon": 5.0}},
                          [ReleaseRequest("aggregate", ("analyst",))], rules)
    document = json.loads(out.payload)
    assert document["dp"]["bounds"] == {"income": [0.0, 1000.0]}
    assert 0 <= document["rows"][0][1] <= 1000  # every income (about 50,000) clamped to the rule's bounds


def test_dp_clips_each_persons_rows_and_scales_the_sensitivity(tables):
    """One customer with 500 transactions: clipped to max_rows_per_key rows before counting."""
    customers, _ = tables
    ids = np.concatenate([np.full(500, 7), np.arange(1000, 1400)])
    transactions = PartyInput("telco", "transactions", ("id",), ("amount",),
                              pa.table({"id": ids, "amount": np.full(len(ids), 10.0)}))
    params = {"metrics": [{"column": "amount", "stats": ["count"]}],
              "dp": {"epsilon": 50.0, "bounds": {"amount": [0, 10]}, "max_rows_per_key": 3}}
    document = _run([transactions], params)
    # 400 customers with one row and one clipped to 3 rows: 403, not 900 (the noise is ~0.1 here)
    assert abs(document["rows"][0][0] - 403) <= 3 and abs(document["rows"][0][1] - 403) <= 3
    assert document["dp"]["rows_per_key"] == 3
    from teenet.models.rules import RuleRefused

    rules = rules_for({"aggregate": {"analyst"}}, {"telco"}, k=10,
                      analysis=(rule("telco", "transactions", max_rows_per_key=2),))
    with pytest.raises(RuleRefused, match="analysis.max_rows_per_key: field 'params.dp.max_rows_per_key'"):
        run_function("aggregate", [transactions], params, [ReleaseRequest("aggregate", ("analyst",))], rules)
    unstated = dict(params, dp={k: v for k, v in params["dp"].items() if k != "max_rows_per_key"})
    (out,) = run_function("aggregate", [transactions], unstated, [ReleaseRequest("aggregate", ("analyst",))], rules)
    assert json.loads(out.payload)["dp"]["rows_per_key"] == 2  # the rule's bound when the spec states none


def test_dp_partition_selection_hides_a_group_of_one_person():
    """A group that only one person makes is released with probability at most delta, not by exact counts."""
    regions = ["big"] * 300 + ["alone"]
    table = pa.table({"id": np.arange(301), "region": regions, "income": np.full(301, 10.0)})
    inp = PartyInput("bank", "customers", ("id",), ("region", "income"), table)
    params = {"group_by": ["region"], "metrics": [{"column": "income", "stats": ["mean"]}],
              "dp": {"epsilon": 1.0, "delta": 1e-6, "bounds": {"income": [0, 20]}}}
    released = [tuple(r[0] for r in _run([inp], params)["rows"]) for _ in range(30)]
    assert all(groups == ("big",) for groups in released)


def test_dp_mean_with_epsilon_1_on_demo_like_data_is_within_the_stated_bound():
    """Utility: demo-like incomes (lognormal 10.4, 0.5; 5 regions of about 4,000 customers),
    epsilon 1, bounds [0, 200000], mean only: the error stays within `laplace_mean_error_bound`
    (beta 0.05) in at least 95% of runs; docs/privacy.md states the bound."""
    from teenet.models.dp import laplace_mean_error_bound, queries_per_group

    rng = np.random.default_rng(7)
    n = 20_000
    frame = pd.DataFrame({"id": np.arange(n), "region": rng.choice(["north", "south", "east", "west", "centre"], n),
                          "income": np.round(rng.lognormal(10.4, 0.5, n), 2)})
    inp = PartyInput("bank", "customers", ("id",), ("region", "income"), pa.Table.from_pandas(frame))
    bounds = [0, 200_000]
    params = {"group_by": ["region"], "metrics": [{"column": "income", "stats": ["mean"]}],
              "dp": {"epsilon": 1.0, "delta": 1e-6, "bounds": {"income": bounds}}}
    exact = frame.assign(income=frame.income.clip(*bounds)).groupby("region")["income"].agg(["mean", "count"])
    queries = queries_per_group([("mean",)])
    errors, within = [], 0
    runs = 40
    for _ in range(runs):
        for row in _run([inp], params)["rows"]:
            bound = laplace_mean_error_bound(exact.loc[row[0], "count"], tuple(bounds), 1.0, queries, beta=0.05)
            error = abs(row[2] - exact.loc[row[0], "mean"])
            errors.append(error / exact.loc[row[0], "mean"])
            within += error <= bound
    assert within >= 0.95 * runs * 5
    assert bound < 0.05 * exact["mean"].min()  # the stated bound itself: under 5% of the mean here
    assert np.median(errors) < 0.01            # and typically well under 1%


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


def test_a_statistic_from_fewer_than_k_non_null_values_is_suppressed_with_its_count():
    """The k-10 group where 9 incomes are null: no income statistic leaves, nor its count of 1."""
    income = [None] * 9 + [123_456.0] + [40_000.0 + i for i in range(20)]
    table = pa.table({"id": np.arange(30), "region": ["small"] * 10 + ["large"] * 20,
                      "income": pa.array(income, pa.float64()), "age": np.arange(30, 60).astype(float)})
    inp = PartyInput("bank", "customers", ("id",), ("region", "income", "age"), table)
    params = {"group_by": ["region"], "metrics": [{"column": "income", "stats": ["count", "sum", "mean", "std"]},
                                                  {"column": "age", "stats": ["mean"]}]}
    (out,) = run_function("aggregate", [inp], params, [ReleaseRequest("aggregate", ("analyst",))], RULES)
    document = json.loads(out.payload)
    rows = {r[0]: r[1:] for r in document["rows"]}
    assert rows["small"][:5] == [10, None, None, None, None]  # group of 10 people, 1 income: suppressed
    assert rows["small"][5] == pytest.approx(34.5)             # the age column has 10 values: released
    assert rows["large"][1] == 20 and rows["large"][3] == pytest.approx(np.mean(income[10:]))
    assert document["suppressed_statistics"] == 4
    assert b"123456" not in out.payload
    assert [r[0] for r in document["rows"]] == ["large", "small"]


def test_the_per_statistic_k_counts_people_not_rows():
    """Ten transactions of one customer with an amount in a group of 12 customers: suppressed."""
    ids = list(range(12)) + [0] * 9
    amount = [None] * 11 + [5.0] + [5.0] * 9  # non-null: customer 11 once, customer 0 nine times
    amount[0] = 5.0
    table = pa.table({"id": ids, "g": ["x"] * 21, "amount": pa.array(amount, pa.float64())})
    inp = PartyInput("telco", "transactions", ("id",), ("g", "amount"), table)
    (out,) = run_function("aggregate", [inp], {"group_by": ["g"], "metrics": [{"column": "amount", "stats": ["sum"]}]},
                          [ReleaseRequest("aggregate", ("analyst",))], RULES)
    assert json.loads(out.payload)["rows"] == [["x", 21, None]]


def test_max_and_percentiles_are_refused_unless_the_rule_names_them(tables):
    from teenet.models.rules import RuleRefused

    default = rules_for({"aggregate": {"analyst"}}, {"bank"}, k=10)
    for stats, position, stat in [(["mean", "max"], 1, "max"), (["min"], 0, "min"), (["count", "p50"], 1, "p50")]:
        with pytest.raises(RuleRefused, match=f"analysis.statistics: field 'params.metrics\\[0\\].stats\\[{position}\\]': "
                                              f"statistic '{stat}' is not allowed") as err:
            run_function("aggregate", _inputs(tables)[:1], {"metrics": [{"column": "income", "stats": stats}]},
                         [ReleaseRequest("aggregate", ("analyst",))], default)
        assert (err.value.rule, err.value.field) == ("analysis.statistics", f"params.metrics[0].stats[{position}]")
    named = rules_for({"aggregate": {"analyst"}}, {"bank"}, k=10,
                      analysis=(rule("bank", "customers", statistics=["count", "sum", "mean", "max"]),))
    (out,) = run_function("aggregate", _inputs(tables)[:1], {"metrics": [{"column": "income", "stats": ["max"]}]},
                          [ReleaseRequest("aggregate", ("analyst",))], named)
    assert json.loads(out.payload)["rows"][0][1] == pytest.approx(tables[0]["income"].max())
    with pytest.raises(RuleRefused, match="'p50' is not allowed"):
        run_function("aggregate", _inputs(tables)[:1], {"metrics": [{"column": "income", "stats": ["p50"]}]},
                     [ReleaseRequest("aggregate", ("analyst",))], named)
