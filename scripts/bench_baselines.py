"""The baselines the benchmark runs beside teenet, on the same files, in the same run.

- `openmined_psi_size`: OpenMined's ECDH PSI (PyPI `openmined.psi`, the C++ library with
  Python bindings), both parties in this process one after the other, cardinality only
  (the same release as teenet's `size`). Its time is the two parties' computation only:
  no network, no serialisation, so the baseline is flattered, not teenet.
- `plaintext_training`: what an analyst would do with the pooled plaintext: read the
  three Parquet files with pandas, join them on the key, fit the same scikit-learn
  Pipeline (median imputation, standard scaling for the linear model) with the same split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PSI_PACKAGE = "openmined.psi"


def openmined_psi_available() -> str | None:
    """The installed openmined.psi version, or None."""
    try:
        import private_set_intersection.python as psi
    except ImportError:
        return None
    return getattr(psi, "__version__", "unknown")


def openmined_psi_size(left: list[str], right: list[str]) -> dict[str, Any]:
    """Cardinality of left ∩ right with OpenMined ECDH PSI (client holds left, server right)."""
    import private_set_intersection.python as psi

    start = time.perf_counter()
    client = psi.client.CreateWithNewKey(False)   # reveal_intersection=False: the size only
    server = psi.server.CreateWithNewKey(False)
    setup = server.CreateSetupMessage(0.0, len(left), right, psi.DataStructure.RAW)  # fpr 0: exact
    t_setup = time.perf_counter()
    request = client.CreateRequest(left)
    t_request = time.perf_counter()
    response = server.ProcessRequest(request)
    t_response = time.perf_counter()
    size = client.GetIntersectionSize(setup, response)
    end = time.perf_counter()
    return {"seconds": end - start, "intersection_size": int(size),
            "phases": {"server_setup": t_setup - start, "client_request": t_request - t_setup,
                       "server_response": t_response - t_request, "client_intersect": end - t_response},
            "bytes": {"setup": setup.ByteSize(), "request": request.ByteSize(), "response": response.ByteSize()}}


@dataclass
class PlaintextModel:
    seconds: float
    pipeline: Any
    x_test: Any
    y_test: np.ndarray
    rows: int
    auc: float


def plaintext_training(paths: dict[str, Path], features: list[str], label: str, key: str, model: str,
                       test_fraction: float, seed: int, hyperparameters: dict[str, Any] | None = None,
                       *, column_median: bool = False) -> PlaintextModel:
    """Read, join with pandas, order by key, split, fit, score AUC on the held-out rows.

    `column_median` swaps scikit-learn's SimpleImputer for teenet's ExactMedianImputer (the
    same statistics, computed column by column, as the enclave does): the baseline then does
    the enclave's arithmetic, and the ratio shows only what the network and enclave add."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    frames = [pd.read_parquet(path) for path in paths.values()]
    joined = frames[0]
    for frame in frames[1:]:
        joined = joined.merge(frame, on=key, how="inner")
    joined = joined.sort_values(key, kind="stable").reset_index(drop=True)
    x = joined[features].astype("float64")
    y = joined[label].to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed,
                                                        shuffle=True)
    if column_median:
        from teenet.models.imputer import ExactMedianImputer

        steps = [("impute", ExactMedianImputer(strategy="median"))]
    else:
        steps = [("impute", SimpleImputer(strategy="median"))]
    hyper = dict(hyperparameters or {})
    if model == "logistic_regression":
        steps.append(("scale", StandardScaler()))
        estimator = LogisticRegression(**{"max_iter": 1000, **hyper})
    elif model == "hist_gradient_boosting":
        estimator = HistGradientBoostingClassifier(random_state=seed, **hyper)
    else:
        raise ValueError(f"no plaintext baseline for {model}")
    pipeline = Pipeline([("prepare", ColumnTransformer([("numeric", Pipeline(steps), features)])),
                         ("model", estimator)])
    pipeline.fit(x_train, y_train)
    auc = float(roc_auc_score(y_test, pipeline.predict_proba(x_test)[:, 1]))
    return PlaintextModel(time.perf_counter() - start, pipeline, x_test, y_test, len(y), auc)


def user_script_training(paths: dict[str, Path], features: list[str], label: str, key: str,
                         model: str) -> float:
    """The plain script a user writes with the files on one machine: read, join, fit on every
    row with scikit-learn's defaults (mean imputation where the model needs it), no split,
    no metrics, no export. Returns its seconds."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    start = time.perf_counter()
    frames = [pd.read_parquet(path) for path in paths.values()]
    joined = frames[0]
    for frame in frames[1:]:
        joined = joined.merge(frame, on=key, how="inner")
    x, y = joined[features], joined[label]
    if model == "logistic_regression":
        estimator = make_pipeline(SimpleImputer(), LogisticRegression())
    elif model == "hist_gradient_boosting":
        estimator = HistGradientBoostingClassifier()
    else:
        raise ValueError(f"no plaintext baseline for {model}")
    estimator.fit(x, y)
    return time.perf_counter() - start


def compare_released_model(onnx_bytes: bytes, baseline: PlaintextModel, rows: int = 20_000) -> dict[str, Any]:
    """Score the baseline's held-out rows with teenet's released ONNX model and with the
    plaintext pipeline; the largest difference in probability says whether they are the
    same model (a float32 model: about 1e-6 for a linear model; the float64 gradient
    boosting model: about 1e-15)."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    x = baseline.x_test.iloc[:rows]
    # Each input in the precision the model takes: float32 (skl2onnx's linear models), or
    # float64 (gradient boosting, exported as a float64 TreeEnsemble).
    feeds = {node.name: x[column].to_numpy(dtype=np.float64 if node.type == "tensor(double)" else np.float32)
             .reshape(-1, 1) for node, column in zip(session.get_inputs(), x.columns)}
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    released = outputs["probabilities"][:, 1]
    plaintext = baseline.pipeline.predict_proba(x)[:, 1]
    return {"rows_compared": int(len(x)), "max_abs_probability_difference": float(np.max(np.abs(released - plaintext))),
            "same_predicted_class_fraction": float(np.mean((released >= 0.5) == (plaintext >= 0.5)))}
