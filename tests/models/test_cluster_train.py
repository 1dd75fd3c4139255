"""train on a real TLS Dask cluster (2 workers) equals a single node's train on the same rows.

Each party's table is split by a keyed hash of its normalised key and partition i is
scattered to worker i (cluster_helpers). The same job then runs through run_function
(whole tables) and run_function_on_cluster (partitions); the released coefficients,
intercepts and metrics must agree to 1e-6, with missing values (median imputation) and a
categorical feature (one-hot) in the data, and the same rows held out.
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

from cluster_helpers import scatter_inputs, tls_client
from models_helpers import rules_for

pytestmark = pytest.mark.slow

RULES = rules_for({"model": {"analyst"}, "metrics": {"analyst"}}, {"bank", "telco"}, k=10)
BOTH = [ReleaseRequest("model", ("analyst",)), ReleaseRequest("metrics", ("analyst",))]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    yield from tls_client(tmp_path_factory.mktemp("cluster-ca"), 2)


def _tables(n: int = 1500, seed: int = 7, classes: int = 2) -> list[PartyInput]:
    """Two parties, ids partly overlapping, shuffled; missing values in numeric columns of
    both parties; a string column (one-hot, with missing values as their own category)."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n) * 5 + 11
    x1, x2, x3 = rng.normal(size=n), rng.normal(2.0, 3.0, size=n), rng.exponential(2.0, size=n)
    region = rng.choice(["north", "south", "east", "west"], n, p=[.4, .3, .2, .1]).astype(object)
    margin = 1.2 * x1 - 0.4 * x2 + 0.3 * x3 + np.where(region == "south", 0.8, 0.0) + rng.normal(0, 1.0, n)
    if classes == 2:
        label = np.where(margin > 0.0, "yes", "no").astype(object)
    else:
        label = np.digitize(margin, np.quantile(margin, [1 / 3, 2 / 3])).astype(np.int64)
    amount = 3.0 * x1 + 2.0 * x3 - 1.5 * (region == "east") + rng.normal(0, 0.5, n)
    bank = pd.DataFrame({"id": ids, "x1": x1, "region": region, "label": label, "amount": amount})
    telco = pd.DataFrame({"id": ids, "x2": x2, "x3": x3})
    bank.loc[rng.choice(n, 60, replace=False), "x1"] = np.nan
    bank.loc[rng.choice(n, 30, replace=False), "region"] = None
    telco.loc[rng.choice(n, 80, replace=False), "x3"] = np.nan
    bank = bank.iloc[rng.permutation(n)[: int(n * 0.93)]]
    telco = telco.iloc[rng.permutation(n)[: int(n * 0.9)]]
    return [PartyInput("bank", "customers", ("id",), ("x1", "region", "label", "amount"),
                       pa.Table.from_pandas(bank, preserve_index=False)),
            PartyInput("telco", "usage", ("id",), ("x2", "x3"), pa.Table.from_pandas(telco, preserve_index=False))]


def _both(client, inputs, params, requests=BOTH, rules=RULES):
    single = run_function("train", inputs, params, requests, rules)
    cluster = run_function_on_cluster("train", scatter_inputs(client, inputs), params, requests, rules, client)
    return single, cluster


def _numbers(entries):
    return np.array([e["value"] for e in entries])


def _assert_same_linear_model(single, cluster, tol=1e-6):
    (s_model, s_metrics), (c_model, c_metrics) = single, cluster
    a, b = s_model.summary, c_model.summary
    assert [e["feature"] for e in a["coefficients"]] == [e["feature"] for e in b["coefficients"]]
    np.testing.assert_allclose(_numbers(b["coefficients"]), _numbers(a["coefficients"]), rtol=tol, atol=tol)
    assert b["intercept"] == pytest.approx(a["intercept"], rel=tol, abs=tol)
    same_keys = {k for k in a if k not in ("coefficients", "intercept")}
    assert {k: a[k] for k in same_keys} == {k: b[k] for k in same_keys}
    m1, m2 = json.loads(s_metrics.payload), json.loads(c_metrics.payload)
    assert m1.keys() == m2.keys()
    for key, value in m1.items():
        if isinstance(value, float):
            assert m2[key] == pytest.approx(value, rel=tol, abs=tol), key
        elif key == "roc" and value is not None:
            for curve in ("fpr", "tpr", "thresholds"):
                # the first threshold is +inf, released as null
                np.testing.assert_allclose(np.array(m2[key][curve], dtype=float),
                                           np.array(value[curve], dtype=float), rtol=tol, atol=tol)
            assert m2[key]["min_rows_per_step"] == value["min_rows_per_step"]
        else:
            assert m2[key] == value, key
    assert c_model.media_type == s_model.media_type == "application/onnx"


def test_logistic_regression_equals_single_node(client):
    inputs = _tables()
    params = {"model": "logistic_regression", "label": {"party": "bank", "column": "label"}, "seed": 3,
              "features": ["x1", "region", "x2", "x3"], "hyperparameters": {"C": 0.5}}
    single, cluster = _both(client, inputs, params)
    summary = cluster[0].summary
    assert summary["classes"] == ["no", "yes"] and "categorical__region_" in summary["encoded_features"]
    assert json.loads(cluster[1].payload)["test_rows"] > 100
    _assert_same_linear_model(single, cluster)


def test_multiclass_logistic_regression_equals_single_node(client):
    inputs = _tables(classes=3, seed=8)
    params = {"model": "logistic_regression", "label": {"party": "bank", "column": "label"}, "seed": 1,
              "features": ["x1", "region", "x2", "x3"]}
    single, cluster = _both(client, inputs, params)
    a, b = single[0].summary, cluster[0].summary
    assert b["classes"] == [0, 1, 2]
    for row_a, row_b in zip(a["coefficients"], b["coefficients"]):
        np.testing.assert_allclose(_numbers(row_b["values"]), _numbers(row_a["values"]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose([e["value"] for e in b["intercept"]], [e["value"] for e in a["intercept"]],
                               rtol=1e-6, atol=1e-6)
    m1, m2 = json.loads(single[1].payload), json.loads(cluster[1].payload)
    for key in ("accuracy", "log_loss", "f1", "auc"):
        assert m2[key] == pytest.approx(m1[key], rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("model", ["linear_regression", "ridge"])
def test_least_squares_equal_single_node(client, model):
    inputs = _tables(seed=9)
    params = {"model": model, "label": {"party": "bank", "column": "amount"}, "seed": 5, "test_fraction": 0.3,
              "features": ["x1", "region", "x2", "x3"]}
    if model == "ridge":
        params["hyperparameters"] = {"alpha": 3.0}
    single, cluster = _both(client, inputs, params)
    _assert_same_linear_model(single, cluster)
    assert json.loads(cluster[1].payload)["r2"] > 0.5


def test_released_onnx_scores_as_the_single_nodes(client):
    """The ONNX models score the same rows alike (float32 in ONNX)."""
    from teenet.models.payloads import read_arrow

    inputs = _tables(seed=4)
    params = {"model": "logistic_regression", "label": {"party": "bank", "column": "label"},
              "features": ["x1", "region", "x2", "x3"]}
    single, cluster = _both(client, inputs, params, requests=BOTH[:1])
    rules = rules_for({"scores": {"bank"}}, {"bank", "telco"}, k=10)
    scored = []
    for (model,) in (single, cluster):
        (out,) = run_function("predict", inputs, {"model_onnx": model.payload, "ids_from": "bank"},
                              [ReleaseRequest("scores", ("bank",))], rules)
        scored.append(read_arrow(out.payload).to_pandas())
    assert len(scored[0]) > 1000
    np.testing.assert_allclose(scored[1]["score"], scored[0]["score"], atol=1e-5)


def test_refusals_name_the_reason_and_read_no_partition(client):
    inputs = _tables(n=200)
    base = {"label": {"party": "bank", "column": "label"}, "features": ["x1", "x2"]}
    spread = scatter_inputs(client, inputs)
    with pytest.raises(InputError) as caught:
        run_function_on_cluster("train", spread, {**base, "model": "random_forest"}, BOTH, RULES, client)
    assert caught.value.field == "params.model" and "forest fitted over partitions" in str(caught.value)
    with pytest.raises(InputError) as caught:
        run_function_on_cluster("train", spread, {**base, "model": "hist_gradient_boosting"}, BOTH, RULES, client)
    assert caught.value.field == "params.model" and "xgboost" in str(caught.value)
    with pytest.raises(InputError) as caught:
        run_function_on_cluster("train", spread, {**base, "model": "logistic_regression",
                                                  "dp": {"epsilon": 1.0}}, BOTH[:1], RULES, client)
    assert caught.value.field == "params.dp"
    # k applies to the merged training rows, once: 200 * ~0.84 joined rows, k = 500
    big_k = rules_for({"model": {"analyst"}, "metrics": {"analyst"}}, {"bank", "telco"}, k=500)
    with pytest.raises(ReleaseRefused) as refused:
        run_function_on_cluster("train", spread, {**base, "model": "logistic_regression"}, BOTH, big_k, client)
    assert "min_group_size" in str(refused.value)
    assert not any(ch.isdigit() for ch in str(refused.value).replace("500", ""))


def test_horizontal_layout_trains_on_every_row_only(client):
    """Stacked rows: with test_fraction 0 the order of rows changes no number (to rounding);
    a hold-out follows the shipped order, which partitioning loses, so it is refused."""
    bank, telco = _tables(n=1200, seed=11)
    columns = ("x1", "label")
    inputs = [PartyInput("bank", "customers", ("id",), columns, bank.data.select(["id", *columns])),
              PartyInput("telco", "usage", ("id",), columns,
                         bank.data.select(["id", *columns]).slice(0, 400)
                         .set_column(0, "id", pa.array(np.arange(400) * 5 + 1_000_003)))]
    params = {"layout": "horizontal", "model": "logistic_regression", "label": {"column": "label"},
              "features": ["x1"], "test_fraction": 0.0}
    single, cluster = _both(client, inputs, params)
    _assert_same_linear_model(single, cluster)
    assert json.loads(cluster[1].payload)["evaluated_on"] == "training_rows"
    with pytest.raises(InputError) as caught:
        run_function_on_cluster("train", scatter_inputs(client, inputs), {**params, "test_fraction": 0.25}, BOTH,
                                RULES, client)
    assert caught.value.field == "params.test_fraction" and "shipped" in str(caught.value)
