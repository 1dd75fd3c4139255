"""`train` on a compute cluster: the single node's model from partitions, by exact merges.

A single node joins the owners' rows, sorts them by key, splits them with
train_test_split, fits SimpleImputer(median) -> StandardScaler / OneHotEncoder and the
estimator, and releases the Pipeline as ONNX with hold-out metrics (models/learning.py).
Here every step is either reproduced from merged partials or runs once at the leader on
numbers no larger than the model:

- rows: each worker joins its partitions (models/learning.labelled_table, the same code),
  so a worker's rows are exactly the single node's rows whose key hashes to it.
- the split: the leader first gathers each worker's row counts only (fixed-size int64s)
  and applies learning.split_positions(n) (train_test_split over positions), whose k and
  row-count refusals need nothing else. Only then, and only for a hold-out
  (test_fraction > 0), it gathers the joined keys (one value per labelled row, the aligned
  key columns), orders them as the single node sorts them and sends each worker the
  hold-out mask of its own rows. The leader holds the keys once: 8 bytes per joined row for
  an int64 key. A refused job moves no key.
- medians: an exact selection over merged histograms. Each value is mapped to an unsigned
  64-bit key with the same order; eight rounds of 256-bucket counts (one byte of the key per
  round, summed over workers) find the exact value of each middle rank. No column moves.
- scaler moments: per-worker count, sum and sum of squared deviations of the imputed
  values, merged exactly (Chan et al.); one-hot categories: the union of each worker's
  sorted categories. The fitted objects are scikit-learn's own classes: the ColumnTransformer
  is fitted once on one synthetic row per category whose numeric values are the merged
  medians, and then every statistic is set from the merged ones.
- logistic_regression: scipy's L-BFGS-B driven at the leader with exactly the options,
  start point and objective scikit-learn's lbfgs solver uses (LinearModelLoss: mean
  half-binomial or half-multinomial loss + 1/(2 C n) ||w||^2); each evaluation sums the
  workers' loss and gradient partials. The iterations are the single node's up to the
  order of floating-point sums.
- linear_regression: scikit-learn's lstsq on centred data, by a tall-skinny QR: each worker
  QR-factors its centred rows, the leader factors the stacked R factors, and solves with
  the SVD of R using scikit-learn's cut-off (max(n, d) x eps of the largest singular value).
- ridge: scikit-learn's cholesky solver from the merged centred Gram matrix X^T X + alpha I
  and X^T y; its svd fallback from the same R factors.
- xgboost: models/boosting.py (XGBoost's federated communicator over mutual TLS).

k and every release rule apply once, to merged counts, through the same functions as on a
single node. The metrics are computed at the leader from the evaluation rows' scores and
labels (16 bytes per held-out row for a binary classifier), with the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from teenet.errors import InputError

from teenet.models.cluster import worker_task
from teenet.models.features import FeatureLayout
from teenet.models.spec import InputSpec, Output, ReleaseRules
from teenet.models.tables import key_names

if TYPE_CHECKING:  # pragma: no cover
    import distributed

    from teenet.models.cluster import ClusterPartyInput, FederatedTLS

CLUSTER_TRAIN_MODELS = ("logistic_regression", "linear_regression", "ridge", "xgboost")
_PART, _ROW = "__teenet_partition", "__teenet_row"
_SIGN = np.uint64(1 << 63)


def refuse_before_data(params: Any) -> None:
    """What cannot run on a cluster as it runs on one node, refused before any task reads data."""
    if params.model not in CLUSTER_TRAIN_MODELS:
        raise InputError(f"model '{params.model}' does not train on a compute cluster (expected one of "
                         f"{', '.join(CLUSTER_TRAIN_MODELS)}); run it on a single compute node", field="params.model")
    if getattr(params, "dp", None) is not None:
        raise InputError("differentially private training does not run on a compute cluster (its noise is drawn "
                         "inside diffprivlib's single-process fit); run it on a single compute node",
                         field="params.dp")
    if params.layout == "horizontal" and params.test_fraction != 0.0:
        raise InputError("a horizontal layout trains on a cluster only with test_fraction 0: the hold-out follows "
                         "the order the rows were shipped in, which partitioning does not keep",
                         field="params.test_fraction")


# ---- on a worker -------------------------------------------------------------------------


@dataclass
class _Part:
    """One worker's labelled rows (features as feature_frame encodes them), and its split."""

    frame: pd.DataFrame
    label: np.ndarray
    layout: FeatureLayout
    dropped: int
    keys: pa.Table | None
    train: np.ndarray | None = None  # boolean per row: a training row

    def rows(self, which: str) -> tuple[pd.DataFrame, np.ndarray]:
        mask = self.train if which == "train" else ~self.train
        if mask.all():
            return self.frame, self.label
        return self.frame[mask], self.label[mask]


@worker_task
def _load(specs: Sequence[InputSpec], params: Any, keyed: bool, *tables: pa.Table) -> _Part:
    from teenet.models import learning
    from teenet.models.cluster import _party_inputs

    inputs = _party_inputs(specs, tables)
    table, dropped = learning.labelled_table(inputs, params, keep_keys=keyed)
    keys = table.select(key_names(len(specs[0].keys))) if keyed else None
    rows = learning.rows_of(table, params, dropped)
    return _Part(rows.frame, rows.label, rows.layout, rows.dropped_unlabelled, keys)


@worker_task
def _summary(part: _Part) -> dict[str, Any]:
    """What the leader learns before its k check: fixed-size counts (int64, 8 bytes whatever
    the number) and the partition's column types; never a key or a row."""
    return {"rows": np.int64(len(part.label)), "dropped": np.int64(part.dropped), "layout": part.layout,
            "label_kind": part.label.dtype}


@worker_task
def _keys(part: _Part) -> pa.Table:
    """The partition's joined keys, in its row order (only for a hold-out, once k is met)."""
    return part.keys


@worker_task
def _as_regression(part: _Part) -> _Part:
    from teenet.models.learning import _numeric_label

    return replace(part, label=_numeric_label(part.label))


@worker_task
def _with_split(part: _Part, test: np.ndarray | None) -> _Part:
    return replace(part, keys=None, train=np.ones(len(part.label), bool) if test is None else ~test)


@worker_task
def _train_classes(part: _Part) -> np.ndarray:
    return np.unique(part.rows("train")[1])


def _order_keys(values: np.ndarray) -> np.ndarray:
    """float64 values as uint64 keys in the same order (sign-magnitude flipped)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    return np.where(bits >= _SIGN, ~bits, bits | _SIGN)


def _from_order_key(key: int) -> float:
    u = np.uint64(key)
    bits = u & ~_SIGN if u >= _SIGN else ~u
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


@worker_task
def _sorted_keys(part: _Part, columns: Sequence[str]) -> list[np.ndarray]:
    """Per column, the order keys of the training rows' present values, sorted (kept on the
    worker for the selection rounds)."""
    frame, _ = part.rows("train")
    out = []
    for c in columns:
        values = frame[c].to_numpy(dtype=np.float64)
        out.append(np.sort(_order_keys(values[~np.isnan(values)])))
    return out


@worker_task
def _histograms(keys: Sequence[np.ndarray], queries: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """Per query (column index, known key prefix, bytes known): how many of the worker's
    sorted keys have that prefix, by their next byte (bucket edges found by binary search)."""
    out = np.zeros((len(queries), 256), dtype=np.int64)
    for q, (j, prefix, depth) in enumerate(queries):
        width = 1 << (56 - 8 * depth)
        low = prefix << (64 - 8 * depth) if depth else 0
        edges = [low + b * width for b in range(257)]
        top = 1 << 64
        cut = np.searchsorted(keys[j], np.array([min(e, top - 1) for e in edges], dtype=np.uint64), side="left")
        if edges[-1] >= top:  # the last bucket runs to the end of the key space
            cut[-1] = len(keys[j])
        out[q] = np.diff(cut)
    return out


def _imputed(frame: pd.DataFrame, columns: Sequence[str], medians: Mapping[str, float]) -> np.ndarray:
    x = frame[list(columns)].to_numpy(dtype=np.float64, copy=True)
    for j, c in enumerate(columns):
        x[np.isnan(x[:, j]), j] = medians[c]
    return x


@worker_task
def _moments(part: _Part, columns: Sequence[str], medians: Mapping[str, float]) -> tuple[int, np.ndarray, np.ndarray]:
    """Count, sums and sums of squared deviations (about this worker's mean) of the imputed values."""
    x = _imputed(part.rows("train")[0], columns, medians)
    if x.shape[0] == 0:
        return 0, np.zeros(len(columns)), np.zeros(len(columns))
    mean = x.mean(axis=0)
    return x.shape[0], x.sum(axis=0), ((x - mean) ** 2).sum(axis=0)


@worker_task
def _categories(part: _Part, columns: Sequence[str]) -> dict[str, list[str]]:
    frame, _ = part.rows("train")
    return {c: np.unique(frame[c].to_numpy()).tolist() for c in columns}


@dataclass
class _Design:
    """A worker's training rows through the fitted preprocessing, and the encoded target."""

    x: np.ndarray
    y: np.ndarray


@worker_task
def _design(part: _Part, prepare: Any, classes: np.ndarray | None) -> _Design:
    frame, label = part.rows("train")
    x = np.ascontiguousarray(prepare.transform(frame), dtype=np.float64) if len(label) else \
        np.zeros((0, len(prepare.get_feature_names_out())))
    if classes is None:
        return _Design(x, np.asarray(label, dtype=np.float64))
    if len(classes) == 2:
        return _Design(x, (label == classes[1]).astype(np.float64))
    return _Design(x, np.searchsorted(classes, label).astype(np.float64))


@worker_task
def _logistic_partial(design: _Design, coef: np.ndarray, classes: int) -> tuple[float, np.ndarray]:
    """Sum over this worker's rows of scikit-learn's pointwise logistic loss and its gradient."""
    loss = _linear_loss(classes)
    x, d = design.x, design.x.shape[1]
    if x.shape[0] == 0:
        return 0.0, np.zeros_like(coef)
    _, _, raw = loss.weight_intercept_raw(coef, x)
    pointwise, gp = loss.base_loss.loss_gradient(y_true=design.y, raw_prediction=raw, sample_weight=None,
                                                 n_threads=1)
    if classes == 2:
        grad = np.empty_like(coef)
        grad[:d] = x.T @ gp
        grad[-1] = gp.sum()
        return float(pointwise.sum()), grad
    grad2 = np.empty((classes, d + 1), order="F")
    grad2[:, :d] = gp.T @ x
    grad2[:, -1] = gp.sum(axis=0)
    return float(pointwise.sum()), grad2.ravel(order="F")


@worker_task
def _design_sums(design: _Design) -> tuple[np.ndarray, float]:
    return design.x.sum(axis=0), float(design.y.sum())


@worker_task
def _centred_products(design: _Design, x_offset: np.ndarray, y_offset: float) -> dict[str, np.ndarray]:
    """The centred Gram matrix and X^T y, and the R factor and Q^T y of this worker's centred rows."""
    x = design.x - x_offset
    y = design.y - y_offset
    q, r = np.linalg.qr(x, mode="reduced")
    return {"gram": x.T @ x, "xy": x.T @ y, "r": r, "qty": q.T @ y}


@worker_task
def _evaluate(part: _Part, pipeline: Any, task: str, which: str) -> tuple[np.ndarray, np.ndarray]:
    frame, label = part.rows(which)
    if len(label) == 0:
        return np.zeros((0, len(pipeline.classes_)) if task == "classification" else 0), label
    if task == "classification":
        return pipeline.predict_proba(frame), label
    return pipeline.predict(frame), label


# ---- at the leader -----------------------------------------------------------------------


def _linear_loss(classes: int) -> Any:
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss
    from sklearn.linear_model._linear_loss import LinearModelLoss

    base = HalfBinomialLoss() if classes == 2 else HalfMultinomialLoss(n_classes=classes)
    return LinearModelLoss(base_loss=base, fit_intercept=True)


class _Cluster:
    """Per-worker futures of one job, each task pinned to the worker that holds its partition."""

    def __init__(self, client: "distributed.Client", workers: Sequence[str | None]) -> None:
        self.client = client
        self.workers = list(workers)

    def map(self, task: Any, futures: Sequence[Any], *args: Any, per_worker: Sequence[Any] | None = None) -> list[Any]:
        out = []
        for i, future in enumerate(futures):
            extra = () if per_worker is None else (per_worker[i],)
            out.append(self.client.submit(task, future, *extra, *args, pure=False, **self.where(i)))
        return out

    def where(self, i: int) -> dict[str, Any]:
        """submit() options keeping a task on the worker that holds partition i."""
        return {} if self.workers[i] is None else {"workers": [self.workers[i]], "allow_other_workers": False}

    def gather(self, task: Any, futures: Sequence[Any], *args: Any, per_worker: Sequence[Any] | None = None) -> list[Any]:
        return self.client.gather(self.map(task, futures, *args, per_worker=per_worker))


def _holders(client: "distributed.Client", inputs: Sequence["ClusterPartyInput"]) -> list[str | None]:
    """The worker holding partition i of the first input (every input's partition i is there)."""
    who = client.who_has(list(inputs[0].partitions))
    out = []
    for future in inputs[0].partitions:
        holders = sorted(who.get(future.key, ()))
        out.append(holders[0] if holders else None)
    return out


def train_on_cluster(inputs: Sequence["ClusterPartyInput"], params: Any, kinds: frozenset[str], rules: ReleaseRules,
                     client: "distributed.Client", federated_tls: "FederatedTLS | None" = None) -> dict[str, Output]:
    from teenet.models import learning

    refuse_before_data(params)
    if params.model == "xgboost":
        from teenet.models import boosting

        boosting.require_federated_tls(federated_tls)
    specs = [inp.spec for inp in inputs]
    # The join keys are needed (and kept on the workers) only for a hold-out split.
    keyed = params.layout == "vertical" and bool(specs[0].keys) and params.test_fraction > 0.0
    workers = _holders(client, inputs)
    cluster = _Cluster(client, workers)
    loads = []
    for i in range(len(inputs[0].partitions)):
        loads.append(client.submit(_load, specs, params, keyed, *[inp.partitions[i] for inp in inputs],
                                   pure=False, **cluster.where(i)))
    summaries = cluster.gather(_summary, loads)
    n = sum(int(s["rows"]) for s in summaries)
    dropped = sum(int(s["dropped"]) for s in summaries)
    if n == 0:
        learning.require_rows(0)
    layouts = {s["layout"] for s in summaries}
    if len(layouts) != 1:
        raise InputError("the partitions' column types differ (expected every worker's rows to have the types "
                         "the owners declared)", field="inputs.columns")
    layout = layouts.pop()
    kind = next(s["label_kind"] for s in summaries if s["rows"]) if n else summaries[0]["label_kind"]
    task = learning.resolve_task(params, np.empty(0, dtype=kind))
    parts = cluster.map(_as_regression, loads) if task == "regression" else loads
    k = rules.k
    train_positions, test_positions = learning.split_positions(n, params, k)
    # Only now, with every count check passed and a hold-out to place, do the keys move.
    keys = cluster.gather(_keys, loads) if test_positions is not None else None
    tests = _test_masks(summaries, keys, test_positions, n)
    parts = cluster.map(_with_split, parts, per_worker=tests)
    n_test = 0 if test_positions is None else len(test_positions)
    n_train = n - n_test
    classes = None
    if task == "classification":
        classes = np.unique(np.concatenate(cluster.gather(_train_classes, parts)))
        learning.require_two_classes(classes)
    hyperparameters = dict(params.hyperparameters)
    if params.model in learning.TREE_MODELS:
        hyperparameters = learning._tree_hyperparameters(params, hyperparameters, rules, n_train,
                                                         len(classes) if classes is not None else 1)
    pipeline = learning.build_pipeline(params.model, task, layout, hyperparameters, params.seed)
    medians = _exact_medians(cluster, parts, layout.numeric)
    _fit_prepare(cluster, parts, pipeline, layout, medians, n_train)
    prepare = pipeline.named_steps["prepare"]
    estimator = pipeline.named_steps["model"]
    if params.model == "xgboost":
        from teenet.models import boosting

        boosting.fit_on_cluster(cluster, parts, pipeline, task, classes, hyperparameters, params.seed,
                                federated_tls)
    else:
        designs = cluster.map(_design, parts, prepare, classes if task == "classification" else None)
        if params.model == "logistic_regression":
            _fit_logistic(cluster, designs, estimator, classes, n_train)
        else:
            _fit_least_squares(cluster, designs, estimator, params.model, n_train)
    learning.as_simple_imputers(pipeline)
    counts = learning.training_counts(n, n_train, n_test, dropped, k)

    def scores() -> dict[str, Any]:
        which = "test" if n_test else "train"
        results = cluster.gather(_evaluate, parts, pipeline, task, which)
        predicted = np.concatenate([r[0] for r in results])
        truth = np.concatenate([r[1] for r in results])
        if task == "classification":
            return learning.classifier_metrics_of(pipeline.classes_, predicted, truth, k=k, roc=rules.roc_allowed)
        return learning.regressor_metrics_of(predicted, truth)

    return learning.release_trained(pipeline, params, task, layout, counts, kinds, scores, hyperparameters)


def _test_masks(summaries: Sequence[Mapping[str, Any]], keys: Sequence[pa.Table] | None,
                test_positions: np.ndarray | None, n: int) -> list[np.ndarray | None]:
    """Per worker, which of its rows (in its own key order) the single node's split holds out.

    The workers' keys are ordered as a single node sorts the joined rows (ascending key,
    Arrow's sort; numpy's for one int64 key, the same order for distinct keys)."""
    if test_positions is None or keys is None:
        return [None] * len(summaries)
    tables = []
    for p, part_keys in enumerate(keys):
        tables.append(part_keys.append_column(_PART, pa.array(np.full(part_keys.num_rows, p, np.int32)))
                      .append_column(_ROW, pa.array(np.arange(part_keys.num_rows, dtype=np.int64))))
    try:
        merged = pa.concat_tables(tables)
    except pa.ArrowInvalid:
        raise InputError("the partitions' key types differ; set params.normalise.type to str or int",
                         field="params.normalise.type") from None
    names = [c for c in merged.column_names if c not in (_PART, _ROW)]
    if len(names) == 1 and pa.types.is_int64(merged.schema.field(names[0]).type):
        order = np.argsort(merged.column(0).to_numpy(), kind="stable")
        owner = merged.column(_PART).to_numpy()[order]
        row = merged.column(_ROW).to_numpy()[order]
    else:
        ordered = merged.sort_by([(c, "ascending") for c in names])
        owner = ordered.column(_PART).to_numpy()
        row = ordered.column(_ROW).to_numpy()
    held = np.zeros(n, dtype=bool)
    held[test_positions] = True
    masks = []
    for p, s in enumerate(summaries):
        mask = np.zeros(int(s["rows"]), dtype=bool)
        mine = owner == p
        mask[row[mine]] = held[mine]
        masks.append(mask)
    return masks


def _exact_medians(cluster: _Cluster, parts: Sequence[Any], columns: Sequence[str]) -> dict[str, float]:
    """Each column's median over the training rows' present values, as numpy.ma computes it,
    by exact selection: the middle rank(s) found one key byte per round from merged counts."""
    if not columns:
        return {}
    columns = list(columns)

    keys = cluster.map(_sorted_keys, parts, columns)

    def counts(queries: list[tuple[int, int, int]]) -> np.ndarray:
        return np.sum(cluster.gather(_histograms, keys, queries), axis=0)

    first = counts([(j, 0, 0) for j in range(len(columns))])
    totals = first.sum(axis=1)
    targets: list[list[int]] = []  # [column, rank, prefix]
    for j, total in enumerate(totals):
        half, odd = divmod(int(total), 2)
        ranks = [] if total == 0 else ([half] if odd else [half - 1, half])
        targets += [[j, r, 0] for r in ranks]
    histograms = first[[t[0] for t in targets]] if targets else first[:0]
    for depth in range(1, 9):
        for t, hist in zip(targets, histograms):
            cumulative = np.cumsum(hist)
            bucket = int(np.searchsorted(cumulative, t[1], side="right"))
            t[1] -= int(cumulative[bucket - 1]) if bucket else 0
            t[2] = (t[2] << 8) | bucket
        if depth < 8 and targets:
            histograms = counts([(t[0], t[2], depth) for t in targets])
    values: dict[int, list[float]] = {}
    for t in targets:
        values.setdefault(t[0], []).append(_from_order_key(t[2]))
    medians = {}
    for j, c in enumerate(columns):
        found = values.get(j)
        if not found:
            medians[c] = float("nan")
        elif len(found) == 1:
            medians[c] = found[0]
        else:  # numpy.ma: the two middle values added, then divided by two
            medians[c] = float(np.true_divide(np.float64(found[0]) + np.float64(found[1]), np.float64(2)))
    return medians


def _fit_prepare(cluster: _Cluster, parts: Sequence[Any], pipeline: Any, layout: FeatureLayout,
                 medians: Mapping[str, float], n_train: int) -> None:
    """The pipeline's ColumnTransformer fitted to the merged statistics of the training rows."""
    categories: dict[str, list[str]] = {c: [] for c in layout.categorical}
    if layout.categorical:
        for found in cluster.gather(_categories, parts, list(layout.categorical)):
            for c in layout.categorical:
                categories[c] = sorted(set(categories[c]) | set(found[c]))
    height = max([1] + [len(v) for v in categories.values()])
    data = {}
    for name in layout.features:
        if name in layout.categorical:
            values = categories[name]
            data[name] = np.array([values[i % len(values)] for i in range(height)], dtype=object)
        else:
            data[name] = np.full(height, medians[name], dtype=np.float64)
    prepare = pipeline.named_steps["prepare"]
    prepare.fit(pd.DataFrame(data, columns=list(layout.features)))
    if not layout.numeric:
        return
    numeric = prepare.named_transformers_["numeric"]
    numeric.named_steps["impute"].statistics_ = np.array([medians[c] for c in layout.numeric], dtype=np.float64)
    if "scale" not in numeric.named_steps:
        return
    from sklearn.preprocessing._data import _handle_zeros_in_scale, _is_constant_feature

    from teenet.models.cluster import _merge_moments

    kept = [c for c in layout.numeric if not np.isnan(medians[c])]  # SimpleImputer drops empty columns
    partials = cluster.gather(_moments, parts, kept, dict(medians))
    mean = np.empty(len(kept))
    var = np.empty(len(kept))
    for j in range(len(kept)):
        total, m2 = _merge_moments(np.array([p[0] for p in partials]), np.array([p[1][j] for p in partials]),
                                   np.array([p[2][j] for p in partials]))
        mean[j] = total / n_train
        var[j] = m2 / n_train
    scaler = numeric.named_steps["scale"]
    scaler.mean_ = mean
    scaler.var_ = var
    scaler.n_samples_seen_ = np.int64(n_train)
    constant = _is_constant_feature(var, mean, n_train)
    scaler.scale_ = _handle_zeros_in_scale(np.sqrt(var), copy=False, constant_mask=constant)


def _fit_logistic(cluster: _Cluster, designs: Sequence[Any], estimator: Any, classes: np.ndarray,
                  n: int) -> None:
    """scikit-learn's lbfgs fit of LogisticRegression, its objective summed over workers."""
    from scipy import optimize
    from sklearn.linear_model._logistic import _LOGISTIC_SOLVER_CONVERGENCE_MSG
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
    from sklearn.utils.optimize import _check_optimize_result

    width = cluster.client.gather(cluster.map(_width, designs[:1]))[0]
    count = len(classes)
    loss = _linear_loss(count)
    l2 = 1.0 / (estimator.C * n)
    if count == 2:
        w0 = np.zeros(width + 1)
    else:
        w0 = np.zeros((count, width + 1), order="F").ravel(order="F")

    def objective(coef: np.ndarray) -> tuple[float, np.ndarray]:
        partials = cluster.gather(_logistic_partial, designs, coef, count)
        value = sum(p[0] for p in partials) / n
        grad = np.sum([p[1] for p in partials], axis=0) / n
        weights, _ = loss.weight_intercept(coef)
        value += loss.l2_penalty(weights, l2)
        if count == 2:
            grad[:width] += l2 * weights
            return value, grad
        grad2 = grad.reshape((count, width + 1), order="F")
        grad2[:, :width] += l2 * weights
        return value, grad2.ravel(order="F")

    result = optimize.minimize(objective, w0, method="L-BFGS-B", jac=True,
                               options={"maxiter": estimator.max_iter, "maxls": 50, "gtol": estimator.tol,
                                        "ftol": 64 * np.finfo(float).eps,
                                        **_get_additional_lbfgs_options_dict("iprint", -1)})
    n_iter = _check_optimize_result("lbfgs", result, estimator.max_iter,
                                    extra_warning_msg=_LOGISTIC_SOLVER_CONVERGENCE_MSG)
    coef = np.array([result.x])[0]
    estimator.classes_ = classes
    estimator.n_iter_ = np.asarray([n_iter], dtype=np.int32)
    estimator.n_features_in_ = width
    if count == 2:
        estimator.intercept_ = coef[-1:]
        estimator.coef_ = coef[:-1][None, :]
    else:
        full = np.reshape(coef, (count, -1), order="F")
        estimator.intercept_ = full[:, -1]
        estimator.coef_ = full[:, :-1]


@worker_task
def _width(design: _Design) -> int:
    return int(design.x.shape[1])


def _fit_least_squares(cluster: _Cluster, designs: Sequence[Any], estimator: Any, model: str, n: int) -> None:
    """LinearRegression (lstsq) or Ridge (cholesky, else svd) on centred data, from merged factors."""
    from scipy import linalg

    sums = cluster.gather(_design_sums, designs)
    x_offset = np.sum([s[0] for s in sums], axis=0) / n
    y_offset = sum(s[1] for s in sums) / n
    products = cluster.gather(_centred_products, designs, x_offset, y_offset)
    width = len(x_offset)
    q, r = np.linalg.qr(np.vstack([p["r"] for p in products]), mode="reduced")
    qty = q.T @ np.concatenate([p["qty"] for p in products])
    u, s, vt = np.linalg.svd(r, full_matrices=False)
    uty = u.T @ qty
    if model == "linear_regression":
        cond = max(n, width) * np.finfo(np.float64).eps
        rank = int(np.sum(s > cond * s[0])) if s.size else 0
        coef = vt[:rank].T @ (uty[:rank] / s[:rank])
        estimator.rank_ = rank
        estimator.singular_ = s
    else:
        alpha = float(estimator.alpha)
        gram = np.sum([p["gram"] for p in products], axis=0)
        xy = np.sum([p["xy"] for p in products], axis=0)
        gram.flat[:: width + 1] += alpha
        try:
            coef = linalg.solve(gram, xy, assume_a="pos", overwrite_a=True)
            estimator.solver_ = "cholesky"
        except linalg.LinAlgError:
            keep = s > 1e-15  # scikit-learn's _solve_svd
            d = np.zeros_like(s)
            d[keep] = s[keep] / (s[keep] ** 2 + alpha)
            coef = vt.T @ (d * uty)
            estimator.solver_ = "svd"
        estimator.n_iter_ = None
    estimator.coef_ = np.asarray(coef, dtype=np.float64)
    estimator.intercept_ = y_offset - x_offset @ estimator.coef_
    estimator.n_features_in_ = width
