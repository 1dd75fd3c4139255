"""Gradient boosting is released as a float64 ONNX model (ai.onnx.ml opset 5 TreeEnsemble):
it must give scikit-learn's own probabilities and predictions, also for rows that sit
exactly on a split threshold or one float64 step beside it, where a float32 model takes
the other branch."""

from __future__ import annotations

import numpy as np
import onnx
import pandas as pd
import pyarrow as pa
import pytest

from teenet.models.features import FeatureLayout
from teenet.models.imputer import as_simple_imputers
from teenet.models.learning import build_pipeline
from teenet.models.onnx_models import export_pipeline, load_model
from teenet.models.predict import score_rows

LAYOUT = FeatureLayout(("income", "balance", "segment"), ("income", "balance"), ("segment",))


def _data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"income": np.round(rng.normal(30_000, 6_000, n), 2),   # cents: rarely exact in float32
                          "balance": np.round(rng.normal(0, 1, n), 6),
                          "segment": rng.choice(["retail", "private", ""], n)})
    frame.loc[rng.random(n) < 0.1, "balance"] = np.nan
    return frame


def _at_thresholds(pipeline, base: pd.DataFrame) -> pd.DataFrame:
    """Rows on every numeric split threshold of the fitted trees, and one float64 step either side."""
    features, values = [], []
    for iteration in pipeline.named_steps["model"]._predictors:
        for predictor in iteration:
            for node in predictor.nodes[predictor.nodes["is_leaf"] == 0]:
                if int(node["feature_idx"]) >= len(LAYOUT.numeric):
                    continue  # a split on a one-hot column (0 or 1, exact in any precision)
                t = float(node["num_threshold"])
                for value in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)):
                    features.append(LAYOUT.numeric[int(node["feature_idx"])])
                    values.append(value)
    rows = base.iloc[np.arange(len(values)) % len(base)].reset_index(drop=True)
    for name in LAYOUT.numeric:
        at = np.asarray(features) == name
        column = rows[name].to_numpy(copy=True)
        column[at] = np.asarray(values)[at]
        rows[name] = column
    return rows


def _score(payload: bytes, frame: pd.DataFrame) -> dict:
    model = load_model(payload)
    table = pa.table({"income": frame["income"].to_numpy(float), "balance": frame["balance"].to_numpy(float),
                      "segment": frame["segment"].astype(str).tolist()})
    return {name: column.to_numpy(zero_copy_only=False) for name, column in score_rows(model, table).items()}


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_released_gradient_boosting_scores_rows_on_split_thresholds_as_scikit_learn_does(task):
    frame = _data(2000, 4)
    if task == "classification":
        label = ((frame["income"] > 31_000) ^ (frame["balance"].fillna(0) > 0.2)
                 ^ (frame["segment"] == "private")).astype(int).to_numpy()
    else:
        label = frame["income"].to_numpy() / 1000 + np.nan_to_num(frame["balance"].to_numpy())
    pipeline = build_pipeline("hist_gradient_boosting", task, LAYOUT, {"max_iter": 12, "min_samples_leaf": 10}, 3)
    pipeline.fit(frame, label)
    as_simple_imputers(pipeline)
    payload = export_pipeline(pipeline, LAYOUT, {"features": list(LAYOUT.features)})
    (trees,) = [n for n in onnx.load_model_from_string(payload).graph.node if n.op_type.startswith("TreeEnsemble")]
    assert (trees.op_type, trees.domain) == ("TreeEnsemble", "ai.onnx.ml")  # the opset-5, float64 operator
    probe = _at_thresholds(pipeline, frame)
    assert len(probe) > 150
    scored = _score(payload, probe)
    if task == "classification":
        expected = pipeline.predict_proba(probe)[:, 1]
        np.testing.assert_allclose(scored["score"], expected, rtol=0, atol=1e-12)
        assert (scored["label"] == pipeline.predict(probe)).all()
    else:
        np.testing.assert_allclose(scored["score"], pipeline.predict(probe), rtol=1e-12, atol=0)
    # and on ordinary rows, missing values and the missing category included
    ordinary = _data(500, 9)
    got = _score(payload, ordinary)["score"]
    want = pipeline.predict_proba(ordinary)[:, 1] if task == "classification" else pipeline.predict(ordinary)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
