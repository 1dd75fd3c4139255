"""The scikit-learn side of `train`: rows to a design matrix, the Pipeline, metrics, release.

Kept apart from `train` (params) so that loading scikit-learn is paid only by jobs
that train. The Pipeline built here is exactly what `train`'s docstring states, so the
same model can be rebuilt from the pooled plaintext for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from teenet.errors import InputError

from teenet.models import release
from teenet.models.features import FeatureLayout, feature_frame, plan_features
from teenet.models.imputer import as_simple_imputers
from teenet.models.onnx_models import export_pipeline
from teenet.models.payloads import json_output, json_safe
from teenet.models.spec import MEDIA_ONNX, Output, PartyInput, ReleaseRules
from teenet.models.tables import key_names, shipped_table, unique_join_sorted

ROC_POINTS = 200
TREE_MODELS = frozenset({"hist_gradient_boosting", "random_forest"})
# Permutation importances (models without coefficients or impurity importances) are
# estimated on the first held-out rows: enough for a stable ranking, and bounded in cost.
IMPORTANCE_ROWS = 2000
IMPORTANCE_REPEATS = 3


@dataclass(frozen=True)
class TrainingRows:
    """The pooled rows in their deterministic order, features and label."""

    frame: pd.DataFrame
    label: np.ndarray
    layout: FeatureLayout
    dropped_unlabelled: int


def pooled_rows(inputs: Sequence[PartyInput], params: Any) -> TrainingRows:
    """Join (vertical, sorted by key) or stack (horizontal, in input order) the rows."""
    wanted = list(params.features) + [params.label.column]
    if params.layout == "vertical" and inputs[0].keys:
        columns = [[c for c in inp.columns if c in wanted] for inp in inputs]
        table = unique_join_sorted(inputs, params.normalise, columns=columns)
        table = table.drop_columns(key_names(len(inputs[0].keys)))
    else:
        parts = [shipped_table(inp, i).select(wanted) for i, inp in enumerate(inputs)]
        try:
            table = pa.concat_tables(parts, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(f"the inputs' columns have types that cannot be stacked: {exc}",
                             field="inputs.columns") from None
    labelled = pc.is_valid(table.column(params.label.column))
    dropped = table.num_rows - pc.sum(labelled.cast(pa.int64())).as_py() if table.num_rows else 0
    if dropped:
        table = table.filter(labelled)
    if table.num_rows == 0:
        raise InputError("no rows to train on: the inputs' keys do not intersect (or no row has a label)",
                         field="inputs")
    layout = plan_features(table, params.features, params.categorical)
    label_column = table.column(params.label.column)
    return TrainingRows(feature_frame(table, layout), label_column.to_numpy(zero_copy_only=False),
                        layout, int(dropped))


def resolve_task(params: Any, label: np.ndarray) -> str:
    if params.task is not None:
        return params.task
    return "regression" if label.dtype.kind == "f" else "classification"


def build_pipeline(model: str, task: str, layout: FeatureLayout, hyperparameters: Mapping[str, Any],
                   seed: int) -> Any:
    """The stated preprocessing and estimator, unfitted."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                                  RandomForestClassifier, RandomForestRegressor)
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from teenet.models.imputer import ExactMedianImputer

    parts = []
    if layout.numeric:
        # scikit-learn's SimpleImputer(median), fitted column by column (same statistics);
        # train_and_release turns it back into a plain SimpleImputer once fitted.
        steps = [("impute", ExactMedianImputer(strategy="median"))]
        # Scaling never changes a tree, and computing it in ONNX's float32 would move
        # values across split thresholds; trees take the imputed values as they are.
        if model not in TREE_MODELS:
            steps.append(("scale", StandardScaler()))
        parts.append(("numeric", Pipeline(steps), list(layout.numeric)))
    if layout.categorical:
        parts.append(("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                      list(layout.categorical)))
    prepare = ColumnTransformer(parts, sparse_threshold=0.0)
    hyper = dict(hyperparameters)
    classify = task == "classification"
    if model == "logistic_regression":
        estimator = LogisticRegression(**{"max_iter": 1000, **hyper})
    elif model == "linear_regression":
        estimator = LinearRegression()
    elif model == "ridge":
        estimator = Ridge(**hyper)
    elif model == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        estimator = cls(random_state=seed, **hyper)
    else:
        cls = RandomForestClassifier if classify else RandomForestRegressor
        estimator = cls(random_state=seed, **hyper)
    return Pipeline([("prepare", prepare), ("model", estimator)])


def split(rows: TrainingRows, params: Any) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(rows.frame, rows.label, test_size=params.test_fraction,
                                random_state=params.seed, shuffle=True)
    except ValueError:
        raise InputError(f"{len(rows.label)} row(s) cannot be split with test_fraction "
                         f"{params.test_fraction:g} into non-empty training and held-out sets",
                         field="params.test_fraction") from None


def train_and_release(inputs: Sequence[PartyInput], params: Any, kinds: frozenset[str],
                      rules: ReleaseRules) -> dict[str, Output]:
    rows = pooled_rows(inputs, params)
    task = resolve_task(params, rows.label)
    label = rows.label if task == "classification" else _numeric_label(rows.label)
    rows = TrainingRows(rows.frame, label, rows.layout, rows.dropped_unlabelled)
    x_train, x_test, y_train, y_test = split(rows, params)
    release.require_group_size(len(y_train), rules, "the training rows")
    release.require_group_size(len(y_test), rules, "the held-out rows")
    if task == "classification" and len(np.unique(y_train)) < 2:
        raise InputError("the label has a single class in the training rows (expected at least two)",
                         field="params.label.column")
    pipeline = build_pipeline(params.model, task, rows.layout, params.hyperparameters, params.seed)
    try:
        pipeline.fit(x_train, y_train)
    except ValueError as exc:
        raise InputError(f"{params.model} cannot be fitted to these rows: {exc}", field="params.model") from None
    as_simple_imputers(pipeline)
    counts = {"rows": len(label), "train_rows": len(y_train), "test_rows": len(y_test),
              "unlabelled_rows_dropped": rows.dropped_unlabelled}
    outputs: dict[str, Output] = {}
    if "metrics" in kinds:
        scores = classifier_metrics(pipeline, x_test, y_test) if task == "classification" \
            else regressor_metrics(pipeline, x_test, y_test)
        document = {"model": params.model, "task": task, **counts, **scores}
        outputs["metrics"] = json_output(document, {k: v for k, v in document.items() if k != "roc"})
    if "model" in kinds:
        summary = model_summary(pipeline, params, task, rows.layout, x_test, y_test)
        summary.update(counts)
        metadata = {"task": task, "model": params.model, "features": list(rows.layout.features),
                    "categorical": list(rows.layout.categorical), "classes": summary.get("classes")}
        payload = export_pipeline(pipeline, rows.layout, metadata)
        outputs["model"] = Output(MEDIA_ONNX, payload, json_safe(summary))
    return outputs


def _numeric_label(label: np.ndarray) -> np.ndarray:
    try:
        return label.astype(float)
    except (TypeError, ValueError):
        raise InputError("a regression needs a numeric label", field="params.label.column") from None


def classifier_metrics(pipeline: Any, x_test: pd.DataFrame, y_test: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score, roc_curve

    classes = pipeline.classes_
    proba = pipeline.predict_proba(x_test)
    predicted = classes[np.argmax(proba, axis=1)]  # what predict() returns, without scoring twice
    present = set(np.unique(y_test).tolist())
    every_class = present == set(classes.tolist())
    result: dict[str, Any] = {"classes": classes.tolist(), "accuracy": float(accuracy_score(y_test, predicted)),
                              "log_loss": float(log_loss(y_test, proba, labels=classes))}
    if len(classes) == 2:
        positive = classes[1]
        result["positive_class"] = positive
        result["f1"] = float(f1_score(y_test, predicted, pos_label=positive))
        truth = y_test == positive
        result["auc"] = float(roc_auc_score(truth, proba[:, 1])) if every_class else None
        if every_class:
            fpr, tpr, thresholds = roc_curve(truth, proba[:, 1])
            keep = decimate(len(fpr), ROC_POINTS)
            result["roc"] = {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(),
                             "thresholds": thresholds[keep].tolist()}
        else:
            result["roc"] = None
    else:
        result["f1"] = float(f1_score(y_test, predicted, average="macro"))
        result["auc"] = float(roc_auc_score(y_test, proba, multi_class="ovr", labels=classes)) \
            if every_class else None
    return result


def decimate(points: int, limit: int) -> np.ndarray:
    """At most `limit` indices spread evenly over a curve, first and last kept."""
    if points <= limit:
        return np.arange(points)
    return np.unique(np.round(np.linspace(0, points - 1, limit)).astype(int))


def regressor_metrics(pipeline: Any, x_test: pd.DataFrame, y_test: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    predicted = pipeline.predict(x_test)
    return {"r2": float(r2_score(y_test, predicted)) if len(y_test) > 1 else None,
            "rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
            "mae": float(mean_absolute_error(y_test, predicted))}


def model_summary(pipeline: Any, params: Any, task: str, layout: FeatureLayout,
                  x_test: pd.DataFrame, y_test: np.ndarray) -> dict[str, Any]:
    """Features, classes and coefficients or importances, with the names they belong to."""
    estimator = pipeline.named_steps["model"]
    names = [str(n) for n in pipeline.named_steps["prepare"].get_feature_names_out()]
    summary: dict[str, Any] = {"model": params.model, "task": task, "features": list(layout.features),
                               "categorical": list(layout.categorical), "encoded_features": names}
    if task == "classification":
        summary["classes"] = pipeline.classes_.tolist()
    if hasattr(estimator, "coef_"):
        coef = np.atleast_2d(estimator.coef_)
        intercept = np.atleast_1d(estimator.intercept_)
        if coef.shape[0] == 1:
            summary["coefficients"] = dict(zip(names, coef[0].tolist()))
            summary["intercept"] = float(intercept[0])
        else:
            classes = [str(c) for c in pipeline.classes_]
            summary["coefficients"] = {c: dict(zip(names, row.tolist())) for c, row in zip(classes, coef)}
            summary["intercept"] = dict(zip(classes, intercept.tolist()))
    elif hasattr(estimator, "feature_importances_"):
        summary["feature_importances"] = dict(zip(names, estimator.feature_importances_.tolist()))
    else:
        from sklearn.inspection import permutation_importance

        result = permutation_importance(pipeline, x_test.iloc[:IMPORTANCE_ROWS], y_test[:IMPORTANCE_ROWS],
                                        n_repeats=IMPORTANCE_REPEATS, random_state=params.seed)
        summary["feature_importances"] = dict(zip(layout.features, result.importances_mean.tolist()))
        summary["importance_method"] = (f"permutation on the first {min(IMPORTANCE_ROWS, len(y_test))} held-out "
                                        f"rows, {IMPORTANCE_REPEATS} repeats")
    return summary
