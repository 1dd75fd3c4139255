"""The scikit-learn side of `train`: rows to a design matrix, the Pipeline, metrics, release.

Kept apart from `train` (params) so that loading scikit-learn is paid only by jobs
that train. The Pipeline built here is exactly what `train`'s docstring states, so the
same model can be rebuilt from the pooled plaintext for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from teenet.errors import InputError, ReleaseRefused

from teenet.models.features import FeatureLayout, feature_frame, plan_features
from teenet.models.imputer import as_simple_imputers
from teenet.models.onnx_models import export_pipeline
from teenet.models.payloads import json_output, json_safe
from teenet.models.rules import RuleRefused, tree_settings
from teenet.models.spec import MEDIA_ONNX, Output, PartyInput, ReleaseRules
from teenet.models.tables import key_names, shipped_table, unique_join_sorted

ROC_POINTS = 200
TREE_MODELS = frozenset({"hist_gradient_boosting", "random_forest", "xgboost"})
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
    table, dropped = labelled_table(inputs, params)
    require_rows(table.num_rows)
    return rows_of(table, params, dropped)


def require_rows(n: int) -> None:
    if n == 0:
        raise InputError("no rows to train on: the inputs' keys do not intersect (or no row has a label)",
                         field="inputs")


def labelled_table(inputs: Sequence[PartyInput], params: Any, *, keep_keys: bool = False) -> tuple[pa.Table, int]:
    """The joined (vertical, sorted by key) or stacked (horizontal) rows that have a label,
    and how many rows were left out for having none. With `keep_keys`, a vertical join keeps
    its aligned key columns (a cluster worker orders its partition's rows by them)."""
    wanted = list(params.features) + [params.label.column]
    if params.layout == "vertical" and inputs[0].keys:
        columns = [[c for c in inp.columns if c in wanted] for inp in inputs]
        table = unique_join_sorted(inputs, params.normalise, columns=columns)
        if not keep_keys:
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
    return table, int(dropped)


def rows_of(table: pa.Table, params: Any, dropped: int) -> TrainingRows:
    """A labelled table's features (as `feature_frame` encodes them) and label."""
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
    elif model == "xgboost":
        from teenet.models import boosting

        estimator = boosting.estimator(task, hyper, seed)
    elif model == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        estimator = cls(random_state=seed, **hyper)
    else:
        cls = RandomForestClassifier if classify else RandomForestRegressor
        estimator = cls(random_state=seed, **hyper)
    return Pipeline([("prepare", prepare), ("model", estimator)])


def split(rows: TrainingRows, params: Any, k: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """The seeded hold-out split, or every row for training when test_fraction is 0."""
    train, test = split_positions(len(rows.label), params, k)
    if test is None:
        return rows.frame, rows.frame.iloc[:0], rows.label, rows.label[:0]
    return rows.frame.iloc[train], rows.frame.iloc[test], rows.label[train], rows.label[test]


def split_positions(n: int, params: Any, k: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The row positions (in the pooled rows' order) train_test_split(shuffle=True,
    random_state=seed, test_size=test_fraction) puts in training and in the hold-out, in
    the order it returns them; (None, None) when test_fraction is 0 (every row trains).

    Both parts must hold at least k rows; a refusal names the test_fraction range that
    would meet k, never how many rows there are when that is below k. The positions depend
    on n and the params only, so a cluster computes them from the merged row count.
    """
    from sklearn.model_selection import train_test_split

    if n < k:
        raise ReleaseRefused(f"release.min_group_size: the training rows are fewer than the owners' minimum "
                             f"group size (expected >= {k})")
    if params.test_fraction == 0.0:
        return None, None
    held = math.ceil(params.test_fraction * n)
    if held < k or n - held < k:
        if n < 2 * k:
            raise InputError(f"too few joined rows to hold out k ({k}) and train on k: use test_fraction 0 "
                             "(metrics are then computed on the training rows)", field="params.test_fraction")
        low = math.ceil(k / n * 10_000) / 10_000
        high = math.floor((n - k) / n * 10_000) / 10_000
        side = "held-out" if held < k else "training"
        raise InputError(f"test_fraction {params.test_fraction:g} leaves fewer {side} rows than k ({k}) "
                         f"(expected between {low:g} and {high:g}, or 0 to train on every row)",
                         field="params.test_fraction")
    try:
        train, test = train_test_split(np.arange(n), test_size=params.test_fraction, random_state=params.seed,
                                       shuffle=True)
    except ValueError:
        raise InputError(f"the rows cannot be split with test_fraction {params.test_fraction:g} into non-empty "
                         "training and held-out sets", field="params.test_fraction") from None
    return train, test


def require_two_classes(classes: np.ndarray) -> None:
    if len(classes) < 2:
        raise InputError("the label has a single class in the training rows (expected at least two)",
                         field="params.label.column")


def train_and_release(inputs: Sequence[PartyInput], params: Any, kinds: frozenset[str],
                      rules: ReleaseRules) -> dict[str, Output]:
    rows = pooled_rows(inputs, params)
    task = resolve_task(params, rows.label)
    label = rows.label if task == "classification" else _numeric_label(rows.label)
    rows = TrainingRows(rows.frame, label, rows.layout, rows.dropped_unlabelled)
    k = rules.k
    x_train, x_test, y_train, y_test = split(rows, params, k)
    held_out = len(y_test) > 0
    if task == "classification":
        require_two_classes(np.unique(y_train))
    hyperparameters = dict(params.hyperparameters)
    if params.model in TREE_MODELS:
        hyperparameters = _tree_hyperparameters(params, hyperparameters, rules, len(y_train),
                                                len(np.unique(y_train)) if task == "classification" else 1)
    dp = getattr(params, "dp", None)
    if dp is not None:
        pipeline = build_dp_pipeline(params.model, rows.layout, hyperparameters, dp,
                                     _dp_feature_bounds(inputs, rows.layout, dp, rules))
    else:
        pipeline = build_pipeline(params.model, task, rows.layout, hyperparameters, params.seed)
    try:
        pipeline.fit(x_train, y_train)
    except ValueError as exc:
        raise InputError(f"{params.model} cannot be fitted to these rows: {exc}", field="params.model") from None
    as_simple_imputers(pipeline)
    if dp is not None:
        as_plain_estimators(pipeline)
    # Evaluated on the held-out rows, or (test_fraction 0) on the training rows, labelled so.
    x_eval, y_eval = (x_test, y_test) if held_out else (x_train, y_train)
    counts = training_counts(len(label), len(y_train), len(y_test), rows.dropped_unlabelled, k, dp)

    def scores() -> dict[str, Any]:
        return classifier_metrics(pipeline, x_eval, y_eval, k=k, roc=rules.roc_allowed) \
            if task == "classification" else regressor_metrics(pipeline, x_eval, y_eval)

    return release_trained(pipeline, params, task, rows.layout, counts, kinds, scores, hyperparameters,
                           x_eval, y_eval)


def training_counts(rows: int, train_rows: int, test_rows: int, dropped: int, k: int, dp: Any = None) -> dict[str, Any]:
    """The row counts a trained model and its metrics carry (merged counts, on a cluster)."""
    counts = {"rows": rows, "train_rows": train_rows, "test_rows": test_rows,
              "evaluated_on": "held_out_rows" if test_rows > 0 else "training_rows",
              # a count below k never leaves: 0, at least k, or null ("some, fewer than k")
              "unlabelled_rows_dropped": dropped if dropped == 0 or dropped >= k else None}
    if dp is not None:
        # exact counts are not differentially private: a DP model leaves without them
        counts = {"evaluated_on": counts["evaluated_on"],
                  "dp": {"epsilon": dp.epsilon, "library": "diffprivlib", "feature_bounds": "declared"}}
    return counts


def release_trained(pipeline: Any, params: Any, task: str, layout: FeatureLayout, counts: Mapping[str, Any],
                    kinds: frozenset[str], scores: Any, hyperparameters: Mapping[str, Any],
                    x_eval: pd.DataFrame | None = None, y_eval: np.ndarray | None = None) -> dict[str, Output]:
    """The released kinds of a fitted pipeline: metrics (`scores()` gives the evaluation
    numbers) and the ONNX model with its summary. One place for a single node and a cluster."""
    outputs: dict[str, Output] = {}
    if "metrics" in kinds:
        document = {"model": params.model, "task": task, **counts, **scores()}
        outputs["metrics"] = json_output(document, {k_: v for k_, v in document.items() if k_ != "roc"})
    if "model" in kinds:
        summary = model_summary(pipeline, params, task, layout, x_eval, y_eval)
        summary.update(counts)
        if params.model in TREE_MODELS:
            summary["enforced_hyperparameters"] = {n: hyperparameters[n] for n in sorted(hyperparameters)}
        metadata = {"task": task, "model": params.model, "features": list(layout.features),
                    "categorical": list(layout.categorical), "classes": summary.get("classes")}
        payload = export_pipeline(pipeline, layout, metadata)
        outputs["model"] = Output(MEDIA_ONNX, payload, json_safe(summary))
    return outputs


class DeclaredScaler:
    """Marker base; see `declared_scaler`."""


def declared_scaler(bounds: Sequence[tuple[float, float]]) -> Any:
    """A StandardScaler whose centre and scale come from declared bounds, never the data:
    each feature's [low, high] maps to [-1, 1]. Turned back into a plain StandardScaler
    after the fit (`as_plain_estimators`) so the ONNX export sees scikit-learn's class."""
    from sklearn.preprocessing import StandardScaler

    class _Declared(StandardScaler, DeclaredScaler):
        def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
            low = np.array([b[0] for b in bounds], dtype=float)
            high = np.array([b[1] for b in bounds], dtype=float)
            self.mean_ = (low + high) / 2.0
            self.scale_ = (high - low) / 2.0
            self.var_ = self.scale_ ** 2
            self.n_features_in_ = len(bounds)
            self.n_samples_seen_ = 0
            if hasattr(X, "columns"):
                self.feature_names_in_ = np.asarray(X.columns, dtype=object)
            return self

    return _Declared()


def build_dp_pipeline(model: str, layout: FeatureLayout, hyperparameters: Mapping[str, Any], dp: Any,
                      bounds: Sequence[tuple[float, float]]) -> Any:
    """Declared scaling, a constant fill for missing values, and diffprivlib's trainer.

    diffprivlib's models are given no random_state: they then draw their noise from
    `secrets.SystemRandom`, as the aggregates' mechanisms do.
    """
    from diffprivlib.accountant import BudgetAccountant
    from diffprivlib.models import LinearRegression as DpLinearRegression
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    width = len(layout.numeric)
    numeric = Pipeline([("scale", declared_scaler(bounds)),
                        ("impute", SimpleImputer(strategy="constant", fill_value=0.0))])
    prepare = ColumnTransformer([("numeric", numeric, list(layout.numeric))], sparse_threshold=0.0)
    hyper = dict(hyperparameters)
    if model == "logistic_regression":
        # every scaled feature is in [-1, 1] when inside its bounds; rows are clipped to this norm
        estimator = dp_logistic_regression(epsilon=dp.epsilon, data_norm=float(np.sqrt(width)),
                                           accountant=BudgetAccountant(), **{"max_iter": 1000, **hyper})
    else:
        estimator = DpLinearRegression(epsilon=dp.epsilon, bounds_X=([-1.0] * width, [1.0] * width),
                                       bounds_y=dp.label_bounds, accountant=BudgetAccountant())
    return Pipeline([("prepare", prepare), ("model", estimator)])


def dp_logistic_regression(**kwargs: Any) -> Any:
    """diffprivlib's LogisticRegression (its fit: rows clipped to data_norm, objective
    perturbation), constructed for scikit-learn >= 1.8.

    diffprivlib 0.6.6 passes `multi_class="ovr"` to scikit-learn's constructor, which 1.8
    removed; its fit never reads it (it fits one-vs-rest itself). Only the constructor is
    replaced here, with the same settings otherwise; the training is diffprivlib's own.
    """
    from diffprivlib.accountant import BudgetAccountant
    from diffprivlib.models import LogisticRegression as DpLogisticRegression
    from sklearn.linear_model import LogisticRegression

    class _DpLogisticRegression(DpLogisticRegression):
        def __init__(self, *, epsilon: float = 1.0, data_norm: float | None = None, tol: float = 1e-4,
                     C: float = 1.0, fit_intercept: bool = True, max_iter: int = 100, verbose: int = 0,
                     warm_start: bool = False, n_jobs: Any = None, random_state: Any = None,
                     accountant: Any = None) -> None:
            LogisticRegression.__init__(self, C=C, tol=tol, fit_intercept=fit_intercept, intercept_scaling=1.0,
                                        class_weight=None, random_state=random_state, solver="lbfgs",
                                        max_iter=max_iter, verbose=verbose, warm_start=warm_start, n_jobs=n_jobs)
            self.epsilon = epsilon
            self.data_norm = data_norm
            self.classes_ = None
            self.accountant = BudgetAccountant.load_default(accountant)

    return _DpLogisticRegression(**kwargs)


def as_plain_estimators(pipeline: Any) -> Any:
    """Swap the fitted DP pieces for scikit-learn's own classes with the same fitted state
    (skl2onnx converts by exact class): the declared scaler and diffprivlib's estimator."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.preprocessing import StandardScaler

    prepare = pipeline.named_steps["prepare"]
    for _, transformer, _ in prepare.transformers_:
        for _, step in getattr(transformer, "steps", ()):
            if isinstance(step, DeclaredScaler):
                step.__class__ = StandardScaler
    fitted = pipeline.named_steps["model"]
    plain = LogisticRegression() if hasattr(fitted, "classes_") else LinearRegression()
    for name in ("coef_", "intercept_", "classes_", "n_features_in_", "n_iter_"):
        if hasattr(fitted, name):
            setattr(plain, name, getattr(fitted, name))
    pipeline.steps[-1] = ("model", plain)
    return pipeline


def _dp_feature_bounds(inputs: Sequence[PartyInput], layout: FeatureLayout, dp: Any,
                       rules: ReleaseRules) -> list[tuple[float, float]]:
    bounds = []
    for name in layout.numeric:
        found = dp.bounds.get(name) or rules.value_bounds(name, inputs)
        if found is None or not found[0] < found[1]:
            raise InputError(f"no bounds for feature '{name}' in the spec or the owners' rules (DP training scales "
                             "and clips to declared bounds, never to the data's)", field=f"params.dp.bounds.{name}")
        bounds.append(found)
    return bounds


def _tree_hyperparameters(params: Any, given: dict[str, Any], rules: ReleaseRules, training_rows: int,
                          classes: int) -> dict[str, Any]:
    """Leaves of at least k rows, the rules' caps, and the size refused before the fit."""
    settings = tree_settings(params.model, given, max_depth=rules.max_tree_depth, max_trees=rules.max_trees,
                             k=rules.k)
    nodes = settings.nodes_bound(training_rows, classes)
    limit = rules.max_tree_nodes
    if nodes is not None and nodes > limit:
        raise RuleRefused("analysis.max_tree_nodes", "params.hyperparameters", "the model could grow larger than "
                          "a release may be (trees x nodes per tree)",
                          expected=f"at most {limit} nodes; {settings.fitting_hint(limit)}",
                          found=f"up to {nodes} nodes")
    if params.model == "xgboost":
        from teenet.models import boosting

        return boosting.enforce_leaf_rows(settings.hyperparameters(given), "classification" if classes > 1
                                          else "regression", classes)
    return settings.hyperparameters(given)


def _numeric_label(label: np.ndarray) -> np.ndarray:
    try:
        return label.astype(float)
    except (TypeError, ValueError):
        raise InputError("a regression needs a numeric label", field="params.label.column") from None


def classifier_metrics(pipeline: Any, x_test: pd.DataFrame, y_test: np.ndarray, *, k: int = 1,
                       roc: bool = True) -> dict[str, Any]:
    return classifier_metrics_of(pipeline.classes_, pipeline.predict_proba(x_test), y_test, k=k, roc=roc)


def classifier_metrics_of(classes: np.ndarray, proba: np.ndarray, y_test: np.ndarray, *, k: int = 1,
                          roc: bool = True) -> dict[str, Any]:
    """`classifier_metrics` from the evaluation rows' probabilities (columns in `classes` order)."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score, roc_curve

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
        if every_class and roc:
            fpr, tpr, thresholds = roc_curve(truth, proba[:, 1], drop_intermediate=False)
            covered = np.rint(fpr * (~truth).sum() + tpr * truth.sum()).astype(np.int64)
            steps = thresholds_covering(covered, k)
            keep = steps[decimate(len(steps), ROC_POINTS)]
            result["roc"] = {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(),
                             "thresholds": thresholds[keep].tolist(), "min_rows_per_step": k}
        else:
            result["roc"] = None
            if every_class and not roc:
                result["roc_withheld"] = "an owner's analysis rule releases no ROC curve (roc: false)"
    else:
        result["f1"] = float(f1_score(y_test, predicted, average="macro"))
        result["auc"] = float(roc_auc_score(y_test, proba, multi_class="ovr", labels=classes)) \
            if every_class else None
    return result


def thresholds_covering(covered: np.ndarray, k: int) -> np.ndarray:
    """Indices of ROC points such that each step from one kept point to the next adds at
    least k rows (`covered[i]` is how many rows score at or above threshold i, ascending).

    The first point (nothing covered) and the last (every row) are kept; two adjacent
    points then never differ by fewer than k rows, so no row's label can be read off a
    step. A last step that would be short is merged into the one before it.
    """
    keep = [0]
    for i in range(1, len(covered)):
        if covered[i] - covered[keep[-1]] >= k:
            keep.append(i)
    last = len(covered) - 1
    if keep[-1] != last:
        if len(keep) > 1:
            keep[-1] = last
        else:
            keep.append(last)
    return np.asarray(keep, dtype=np.int64)


def decimate(points: int, limit: int) -> np.ndarray:
    """At most `limit` indices spread evenly over a curve, first and last kept."""
    if points <= limit:
        return np.arange(points)
    return np.unique(np.round(np.linspace(0, points - 1, limit)).astype(int))


def regressor_metrics(pipeline: Any, x_test: pd.DataFrame, y_test: np.ndarray) -> dict[str, Any]:
    return regressor_metrics_of(pipeline.predict(x_test), y_test)


def regressor_metrics_of(predicted: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """`regressor_metrics` from the evaluation rows' predictions."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {"r2": float(r2_score(y_test, predicted)) if len(y_test) > 1 else None,
            "rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
            "mae": float(mean_absolute_error(y_test, predicted))}


def model_summary(pipeline: Any, params: Any, task: str, layout: FeatureLayout,
                  x_test: pd.DataFrame, y_test: np.ndarray) -> dict[str, Any]:
    """Features, classes and coefficients or importances, with the names they belong to, in
    the encoded features' order (lists of {feature, value})."""
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
            summary["coefficients"] = _in_order(names, coef[0])
            summary["intercept"] = float(intercept[0])
        else:
            classes = [str(c) for c in pipeline.classes_]
            summary["coefficients"] = [{"class": c, "values": _in_order(names, row)} for c, row in zip(classes, coef)]
            summary["intercept"] = [{"class": c, "value": float(v)} for c, v in zip(classes, intercept)]
    elif hasattr(estimator, "feature_importances_"):
        summary["feature_importances"] = _in_order(names, estimator.feature_importances_)
    else:
        from sklearn.inspection import permutation_importance

        result = permutation_importance(pipeline, x_test.iloc[:IMPORTANCE_ROWS], y_test[:IMPORTANCE_ROWS],
                                        n_repeats=IMPORTANCE_REPEATS, random_state=params.seed)
        summary["feature_importances"] = _in_order(list(layout.features), result.importances_mean)
        summary["importance_method"] = (f"permutation on the first {min(IMPORTANCE_ROWS, len(y_test))} evaluation "
                                        f"rows, {IMPORTANCE_REPEATS} repeats")
    return summary


def _in_order(names: Sequence[str], values: Any) -> list[dict[str, Any]]:
    """[{feature, value}, ...] in the model's feature order: a JSON object's keys are sorted
    when it is signed, which would list coefficients alphabetically."""
    return [{"feature": str(n), "value": float(v)} for n, v in zip(names, np.asarray(values).tolist())]
