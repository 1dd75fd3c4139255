"""psi and aggregate on a real TLS Dask cluster give exactly what a single node gives.

The cluster is in-process (cluster_helpers): a scheduler and 3 workers speaking only
tls:// with a throwaway CA, require_encryption on. Each party's table is split by a keyed
hash of its normalised key and partition i is scattered to worker i; the same job then
runs through run_function (whole tables) and run_function_on_cluster (partitions), and
the releases are compared byte for byte.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from teenet.errors import InputError, ReleaseRefused
from teenet.models import PartyInput, ReleaseRequest, run_function
from teenet.models.cluster import run_function_on_cluster
from teenet.models.tables import KeyNormalisation

from cluster_helpers import scatter_inputs, tls_client
from models_helpers import rule, rules_for

pytestmark = pytest.mark.slow

AGG_RULES = rules_for({"aggregate": {"analyst"}}, {"bank", "telco"}, k=10,
                      analysis=(rule("bank", "customers", statistics=["count", "sum", "mean", "std", "min", "max",
                                                                       "percentiles"]),))
PSI_RULES = rules_for({"size": {"bank", "telco"}, "ids": {"bank", "telco"}, "sums": {"bank"}},
                      {"bank", "telco"}, k=10)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    yield from tls_client(tmp_path_factory.mktemp("cluster-ca"), 3)


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(12)
    n = 3000
    customers = pd.DataFrame({"id": rng.permutation(n) * 3, "region": rng.choice(["n", "s", "e", "tiny"], n,
                                                                                    p=[.4, .3, .297, .003]),
                              "income": rng.integers(1000, 90_000, n).astype(float),
                              "balance": rng.integers(-500, 5000, n)})
    customers.loc[rng.choice(n, 40, replace=False), "income"] = np.nan
    usage = pd.DataFrame({"id": rng.choice(n * 4, 2500, replace=False), "plan": rng.choice(["a", "b"], 2500),
                          "spend": rng.integers(0, 400, 2500).astype(float), "active": rng.random(2500) < .5})
    return customers, usage


def _inputs(tables, *, string_keys: bool = False) -> list[PartyInput]:
    customers, usage = tables
    customers, usage = customers.copy(), usage.copy()
    if string_keys:  # the telco writes ids padded and in upper case: only normalisation matches them
        customers["id"] = [f"c{v}" for v in customers["id"]]
        usage["id"] = [f"  C{v} " for v in usage["id"]]
    return [PartyInput("bank", "customers", ("id",), ("region", "income", "balance"),
                       pa.Table.from_pandas(customers, preserve_index=False)),
            PartyInput("telco", "usage", ("id",), ("plan", "spend", "active"),
                       pa.Table.from_pandas(usage, preserve_index=False))]


def _both(client, function, inputs, params, requests, rules, norm=KeyNormalisation()):
    single = run_function(function, inputs, params, requests, rules)
    cluster = run_function_on_cluster(function, scatter_inputs(client, inputs, norm), params, requests, rules,
                                      client)
    return single, cluster


def test_psi_size_ids_sums_equal_single_node(client, tables):
    params = {"payload": [{"party": "bank", "column": "balance"}, {"party": "telco", "column": "active"}]}
    requests = [ReleaseRequest("size", ("bank", "telco")), ReleaseRequest("ids", ("bank",)),
                ReleaseRequest("sums", ("bank",))]
    single, cluster = _both(client, "psi", _inputs(tables), params, requests, PSI_RULES)
    assert json.loads(single[0].payload)["intersection_size"] > 100
    assert [(r.kind, r.recipients, r.media_type, r.payload, r.summary) for r in cluster] == \
        [(r.kind, r.recipients, r.media_type, r.payload, r.summary) for r in single]


def test_psi_string_keys_normalised_equal_single_node(client, tables):
    norm = {"trim": True, "case": "lower"}
    requests = [ReleaseRequest("size", ("telco",)), ReleaseRequest("ids", ("telco",))]
    single, cluster = _both(client, "psi", _inputs(tables, string_keys=True), {"normalise": norm}, requests,
                            PSI_RULES, KeyNormalisation(trim=True, case="lower"))
    assert json.loads(single[0].payload)["intersection_size"] > 100
    assert [r.payload for r in cluster] == [r.payload for r in single]


def test_psi_below_k_refused_on_merged_result_without_the_size(client, tables):
    customers, usage = tables
    # Seven common ids, spread over the partitions: each partition alone is below k, and so is the sum.
    probe = pd.DataFrame({"id": customers["id"].iloc[:7].to_numpy()})
    inputs = [_inputs(tables)[0], PartyInput("telco", "probe", ("id",), (),
                                             pa.Table.from_pandas(probe, preserve_index=False))]
    with pytest.raises(ReleaseRefused) as caught:
        run_function_on_cluster("psi", scatter_inputs(client, inputs), {}, [ReleaseRequest("size", ("telco",))],
                                PSI_RULES, client)
    assert "min_group_size" in str(caught.value) and "7" not in str(caught.value)
    # k applies to the merged result only: 12 ids, at most a few on each worker, are released.
    probe = pd.DataFrame({"id": customers["id"].iloc[:12].to_numpy()})
    inputs[1] = PartyInput("telco", "probe", ("id",), (), pa.Table.from_pandas(probe, preserve_index=False))
    out = run_function_on_cluster("psi", scatter_inputs(client, inputs), {}, [ReleaseRequest("size", ("telco",))],
                                  PSI_RULES, client)
    assert json.loads(out[0].payload) == {"intersection_size": 12}


def test_release_rules_checked_before_any_task(client, tables):
    # A recipient no owner approved: refused at the leader, so no partition is ever read.
    inputs = scatter_inputs(client, _inputs(tables))
    with pytest.raises(ReleaseRefused, match="may not go to 'analyst'"):
        run_function_on_cluster("psi", inputs, {}, [ReleaseRequest("ids", ("analyst",))], PSI_RULES, client)
    with pytest.raises(InputError, match="does not train on a compute cluster"):
        run_function_on_cluster("train", inputs, {"model": "hist_gradient_boosting",
                                                  "label": {"party": "telco", "column": "active"}},
                                [ReleaseRequest("model", ("bank",))],
                                rules_for({"model": {"bank"}}, {"bank", "telco"}, k=10), client)
    with pytest.raises(InputError, match="random_forest does not run on a compute cluster") as caught:
        run_function_on_cluster("train", inputs, {"model": "random_forest",
                                                  "label": {"party": "telco", "column": "active"}},
                                [ReleaseRequest("model", ("bank",))],
                                rules_for({"model": {"bank"}}, {"bank", "telco"}, k=10), client)
    assert caught.value.field == "params.model"


@pytest.mark.parametrize("combine,group_by", [("join", ["region"]), ("join", []), ("join", ["region", "plan"])])
def test_aggregate_join_equal_single_node(client, tables, combine, group_by):
    params = {"combine": combine, "group_by": group_by,
              "metrics": [{"column": "income", "stats": ["count", "sum", "mean", "std", "min", "max"]},
                          {"column": "spend", "stats": ["count", "sum", "mean", "std"]}]}
    requests = [ReleaseRequest("aggregate", ("analyst",))]
    single, cluster = _both(client, "aggregate", _inputs(tables), params, requests, AGG_RULES)
    one, many = json.loads(single[0].payload), json.loads(cluster[0].payload)
    assert one["rows"], "the test needs released groups"
    if group_by == ["region"]:
        assert one["suppressed_groups"] == 1  # the tiny region: fewer than k customers
    std_at = [i for i, c in enumerate(one["columns"]) if c.endswith(".std")]
    strip = lambda doc: {**doc, "rows": [[v for i, v in enumerate(r) if i not in std_at] for r in doc["rows"]]}
    # Everything but std is exactly equal; std from merged moments agrees to rounding.
    assert strip(many) == strip(one)
    for r1, r2 in zip(one["rows"], many["rows"]):
        for i in std_at:
            assert (r1[i] is None) == (r2[i] is None)
            if r1[i] is not None:
                assert r2[i] == pytest.approx(r1[i], rel=1e-12)
    assert cluster[0].summary == single[0].summary


def test_aggregate_union_counts_people_once(client, tables):
    customers, _ = tables
    a = customers.iloc[:1500]
    b = customers.iloc[1000:]  # 500 customers in both tables: counted once per group
    inputs = [PartyInput("bank", "customers", ("id",), ("region", "income"),
                         pa.Table.from_pandas(a[["id", "region", "income"]], preserve_index=False)),
              PartyInput("telco", "usage", ("id",), ("region", "income"),
                         pa.Table.from_pandas(b[["id", "region", "income"]], preserve_index=False))]
    params = {"combine": "union", "group_by": ["region"],
              "metrics": [{"column": "income", "stats": ["count", "sum", "mean", "min", "max"]}]}
    single, cluster = _both(client, "aggregate", inputs, params, [ReleaseRequest("aggregate", ("analyst",))],
                            AGG_RULES)
    assert cluster[0].payload == single[0].payload


def test_aggregate_dp_noise_once_after_merge(client, tables):
    # A huge budget: the noisy answers sit next to the exact ones, which they could not if
    # each of the 3 partitions had been noised and thresholded on its own (the tiny region
    # is left out by partition selection on the merged count, as on a single node).
    inputs = _inputs(tables)[:1]
    metrics = [{"column": "income", "stats": ["count", "sum", "mean", "std"]}]
    dp = {"epsilon": 400.0, "mechanism": "laplace", "delta": 1e-6, "bounds": {"income": [0, 100_000]}}
    requests = [ReleaseRequest("aggregate", ("analyst",))]
    single, cluster = _both(client, "aggregate", inputs, {"group_by": ["region"], "metrics": metrics, "dp": dp},
                            requests, AGG_RULES)
    exact = json.loads(run_function("aggregate", inputs, {"group_by": ["region"], "metrics": metrics}, requests,
                                    AGG_RULES)[0].payload)
    one, many = json.loads(single[0].payload), json.loads(cluster[0].payload)
    assert {k: v for k, v in many.items() if k != "rows"} == {k: v for k, v in one.items() if k != "rows"}
    assert many["dp"]["rows_per_key"] == 1 and many["suppressed_groups"] is None
    # 'tiny' holds about 4 of its 12 customers per worker: noised and thresholded per partition
    # it would be left out; selected on the merged count it is kept, as on a single node.
    assert [r[0] for r in many["rows"]] == [r[0] for r in one["rows"]] == ["e", "n", "s", "tiny"]
    # Laplace scale of the sum: 100000 / (400 / 4 queries) = 1000; 20 scales is far outside chance.
    for got, want in zip(many["rows"], exact["rows"]):
        assert got[1] == pytest.approx(want[1], abs=3)        # rows
        assert got[2] == pytest.approx(want[2], abs=3)        # count
        assert got[3] == pytest.approx(want[3], abs=2e4)      # sum
        assert got[4] == pytest.approx(want[4], abs=2e4 / want[2])  # mean
        # std: the noisy sum of squares (scale 1e8) moves a group of 12's variance by ~3% per
        # scale, so only the large groups' std is held to 5%; the tiny one's is only present.
        if want[2] >= 100:
            assert got[5] == pytest.approx(want[5], rel=5e-2)
        else:
            assert got[5] is not None and got[5] >= 0


def test_aggregate_percentiles_refused_on_cluster(client, tables):
    inputs = scatter_inputs(client, _inputs(tables))
    with pytest.raises(InputError, match="percentile needs every value"):
        run_function_on_cluster("aggregate", inputs, {"metrics": [{"column": "income", "stats": ["p50"]}]},
                                [ReleaseRequest("aggregate", ("analyst",))], AGG_RULES, client)


def test_predict_scores_equal_single_node_and_go_to_the_ids_owner_only(client, tables):
    customers, usage = tables
    rules = rules_for({"model": {"bank"}, "scores": {"bank"}}, {"bank", "telco"}, k=10)
    inputs = _inputs(tables)
    (model,) = run_function("train", inputs, {"model": "logistic_regression",
                                              "features": ["income", "balance", "spend"],
                                              "label": {"party": "telco", "column": "active"}},
                            [ReleaseRequest("model", ("bank",))], rules)
    params = {"model_onnx": model.payload, "ids_from": "bank"}
    requests = [ReleaseRequest("scores", ("bank",))]
    (single,), (cluster,) = _both(client, "predict", inputs, params, requests, rules)
    from teenet.models.payloads import read_arrow

    one, many = read_arrow(single.payload), read_arrow(cluster.payload)
    assert one.num_rows > 100 and many.column_names == one.column_names == ["id", "score", "label"]
    assert many.column("id").equals(one.column("id")) and many.column("label").equals(one.column("label"))
    # ONNX scores each row on its own: the cluster's release is the single node's, byte for byte.
    assert cluster.payload == single.payload
    assert cluster.summary == single.summary and cluster.recipients == ("bank",)
    # Scores of the bank's ids never go to the telco, on a cluster as on one node.
    with pytest.raises(ReleaseRefused, match="may not go to 'telco'"):
        run_function_on_cluster("predict", scatter_inputs(client, inputs), params,
                                [ReleaseRequest("scores", ("telco",))], rules, client)
