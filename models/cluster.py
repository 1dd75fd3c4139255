"""The in-enclave functions on a compute cluster: a leader and N attested Dask workers.

The runtime (teenet's cluster admission, RA-TLS certificates and partitioned ingress)
places partition i of every party's granted rows on worker i, split by a keyed hash of
the *normalised* join key, so equal keys of every party meet on one worker and joins and
intersections are partition-local. This module runs a job over those partitions and
returns exactly the `Release` objects `teenet.models.api.run_function` would return for
the same rows on one node:

- psi: each worker intersects its partitions; the leader adds the sizes, concatenates
  and sorts the ids (ascending, as a single node releases them) and adds the payload
  sums, counts and per-column numbers of people. The k threshold and every release rule
  apply to the merged result only. Integer and decimal sums are exact; a floating-point
  sum is the sum of per-partition sums (equal up to the order of rounding).
- aggregate: each worker computes per-group partial statistics (rows, people, and per
  metric count, sum, min, max, mean and sum of squared deviations); the leader merges
  them (means from merged sums, std by the exact pairwise merge of Chan et al., never a
  mean of means) and then suppresses groups and statistics below k once, as
  models/aggregate.py does. Percentiles are refused on a cluster (they need every value
  in one place). With dp, rows are clipped per key on the worker holding that key, the
  exact partials (rows, non-null counts, clamped sums and sums of squares) are merged,
  and the noise and partition selection are drawn once per group at the leader, in the
  same order and with the same sensitivities as a single node.
- predict: each worker joins its partitions and scores them with the released ONNX model;
  the leader concatenates the scored rows in ascending key order, refuses fewer than k
  of them in all, and releases the scores to the ids' owner only, as a single node does.
- train: models/cluster_train.py. logistic_regression, linear_regression and ridge release
  the model and metrics a single node releases for the same rows (to 1e-6; the same split,
  exact medians, merged moments and categories, scikit-learn's own solver over merged
  partials); xgboost trains over XGBoost's federated communicator with mutual TLS
  (`federated_tls`, required) in models/boosting.py. random_forest has its own reason (a
  forest fitted over partitions is not the single node's model); hist_gradient_boosting, dp
  and a horizontal layout with a hold-out are refused with theirs.

Parsing params, checking release requests and every owner's analysis rule happen at the
leader before any task touches data, exactly as on a single node. What the leader gathers
is visible to the cluster's network as sizes (docs/threat-model.md): it gathers the
per-partition row counts first (one int64 each), applies k to their sum, and only then the
ids, sums or scored rows; aggregate partials are padded to one size for all partitions; and
every task runs in `worker_task`, so a task's error leaves its worker as its type and fixed
reason code only. Dask and distributed
are imported lazily: nothing here is imported when the CLI starts.

Dask serialises task arguments and results with pickle; that is acceptable only because
every peer of the cluster is an attested worker admitted by the leader over mutual TLS
(see docs/threat-model.md). Nothing this module sends leaves the cluster except the
returned releases.
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from teenet.errors import InputError, ReleaseRefused, TeenetError

from teenet.models import aggregate, psi, release
from teenet.models.api import _function, check_before_data
from teenet.models.dp import clamp, clip_rows_per_key
from teenet.models.payloads import arrow_output, json_output
from teenet.models.spec import InputSpec, Output, PartyInput, Release, ReleaseRequest, ReleaseRules
from teenet.models.tables import key_names, sort_by_keys, with_key_names

if TYPE_CHECKING:  # pragma: no cover - typing only; distributed is imported lazily
    import distributed

CLUSTER_FUNCTIONS = frozenset({"psi", "aggregate", "predict", "train"})


# ---- what leaves a worker: clean errors, fixed-size counts -------------------------------


class WorkerTaskError(TeenetError):
    """A teenet error raised inside a cluster task, carried to the leader as its type name and
    fixed check code only (`check`, one of teenet.reasons.CHECKS)."""

    def __init__(self, error_type: str, check: str) -> None:
        self.error_type = error_type
        self.check = check
        super().__init__(f"{check}: refused by a task on a cluster worker ({error_type})")

    def __reduce__(self) -> Any:
        return WorkerTaskError, (self.error_type, self.check)


class WorkerTaskFailed(Exception):
    """Any other exception inside a cluster task (a bug, a library's error): its type name only."""

    def __init__(self, error_type: str) -> None:
        self.error_type = error_type
        super().__init__(f"a task failed on a cluster worker ({error_type})")

    def __reduce__(self) -> Any:
        return WorkerTaskFailed, (self.error_type,)


def _clean_error(exc: Exception) -> Exception:
    """`exc` as an error that says its type and teenet's fixed reason code, never its text."""
    from teenet.reasons import MAX_NAME_CHARS, check_of

    name = type(exc).__name__
    check = check_of(exc) or "unlisted"
    field = getattr(exc, "field", None)
    field = field if isinstance(field, str) and field.isprintable() and len(field) <= MAX_NAME_CHARS else None
    if isinstance(exc, InputError):
        return InputError(f"refused by a task on a cluster worker ({name}, {check})", field=field)
    if isinstance(exc, ReleaseRefused):
        clean = ReleaseRefused(f"{check}: refused by a task on a cluster worker ({name})")
        if field is not None:
            clean.field = field  # type: ignore[attr-defined]  # a spec path, as Reason.of reads it
        return clean
    if isinstance(exc, TeenetError):
        return WorkerTaskError(name, check)
    return WorkerTaskFailed(name)


def worker_task(fn: Any) -> Any:
    """Every task the leader submits runs inside this: an exception leaves the worker (Dask
    logs it, keeps it at the scheduler and pickles it, with its traceback, to the leader) as
    `_clean_error` of it, raised outside the handler and `from None`, so neither the
    original's message, nor its traceback and locals, nor a chained __context__ goes with it.
    The function's own words may quote its inputs (a cell value, a count below k), as on a
    single node (node/compute_role.py keeps only an error's type)."""
    @functools.wraps(fn)
    def task(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every error leaves as its type and code only
            clean = _clean_error(exc)
            del exc
        raise clean from None
    return task


@worker_task
def _count(value: Any) -> np.ndarray:
    """On a worker: how many rows a result kept there holds (a table's rows, a dict's "rows",
    a partial's bytes), as one int64: 8 bytes whatever the number, so the size of what the
    leader gathers before its k check says nothing."""
    if isinstance(value, pa.Table):
        rows = value.num_rows
    elif isinstance(value, Mapping):
        rows = int(value["rows"])
    else:
        rows = len(value)
    return np.array([rows], dtype=np.int64)


def _gather(client: "distributed.Client", futures: Sequence[Any]) -> list[Any]:
    return client.gather(list(futures))


def _counts(client: "distributed.Client", futures: Sequence[Any]) -> list[int]:
    """Phase one of every gather of rows: the per-partition row counts (fixed-size integers)."""
    return [int(c[0]) for c in _gather(client, [client.submit(_count, f, pure=False) for f in futures])]


@dataclass(frozen=True)
class ClusterPartyInput:
    """One owner's table spread over the cluster: one future per worker, in worker order.

    Each future resolves on its worker to a pyarrow.Table with the same columns and types
    a single node's PartyInput.data has, holding the rows whose keyed hash of the join key
    falls in that partition.
    """

    party: str
    table: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    partitions: tuple["distributed.Future", ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(str(k) for k in self.keys))
        object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))
        object.__setattr__(self, "partitions", tuple(self.partitions))

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.party, self.table, self.keys, self.columns)

    @property
    def name(self) -> str:
        return f"{self.party}.{self.table}"


@dataclass(frozen=True)
class FederatedTLS:
    """Where XGBoost's federated communicator (gRPC over mutual TLS) listens, and its certificates.

    On each worker, its own client certificate and key are the ones its Dask Security
    object holds (distributed.get_worker().security).
    """

    server_host: str
    ca_file: str
    server_cert_file: str
    server_key_file: str
    # The certificate (PEM) each worker presents to the federated server, and the cluster
    # CA's, sent to the workers with the task (inside the cluster's TLS). Empty: each worker
    # uses its Dask certificate and the CA file path above (one machine). A compute cluster
    # passes them: an admitted worker's Dask certificate carries its RA-TLS evidence, which
    # makes it too large for the federated communicator's gRPC handshake (measured: a 5 KB
    # extension connects, an 11 KB one never completes), and a leader's file path means
    # nothing on another VM.
    client_cert_pem: bytes = b""
    client_key_pem: bytes = b""
    ca_pem: bytes = b""


def run_function_on_cluster(function: str, inputs: Sequence[ClusterPartyInput], params: Mapping[str, Any],
                            requests: Sequence[ReleaseRequest], rules: ReleaseRules, client: "distributed.Client",
                            *, federated_tls: FederatedTLS | None = None) -> list[Release]:
    """Run one approved job over the cluster's partitions; return what may leave the enclave."""
    if not isinstance(rules, ReleaseRules):
        raise InputError("expected ReleaseRules built from the owners' approvals", field="rules")
    fn = _function(function)
    for i, inp in enumerate(inputs):
        if not isinstance(inp, ClusterPartyInput):
            raise InputError("expected a ClusterPartyInput", field=f"inputs[{i}]")
    widths = {len(inp.partitions) for inp in inputs}
    if len(widths) != 1 or 0 in widths:
        found = ", ".join(f"{inp.name}: {len(inp.partitions)}" for inp in inputs)
        raise InputError(f"every input needs one partition per worker, the same number for all (found {found})",
                         field="inputs.partitions")
    specs = [inp.spec for inp in inputs]
    # Everything a single node checks before touching data: the same function.
    parsed, kinds = check_before_data(fn, specs, params, requests, rules)
    if fn.name == "train" and getattr(parsed, "model", None) == "random_forest":
        # Its bootstrap samples and random split search run over row positions: a forest fitted
        # over partitions is a different model from the one a single node fits on the same rows.
        raise InputError("random_forest does not run on a compute cluster (a forest fitted over partitions is "
                         "not the model a single node fits on the same rows); run it on a single compute node",
                         field="params.model")
    if fn.name not in CLUSTER_FUNCTIONS:
        raise InputError(f"function '{fn.name}' does not run on a compute cluster yet (expected one of "
                         f"{', '.join(sorted(CLUSTER_FUNCTIONS))}); run it on a single compute node",
                         field="function")
    if fn.name == "train":
        from teenet.models import cluster_train

        cluster_train.refuse_before_data(parsed)
        outputs = cluster_train.train_on_cluster(inputs, parsed, kinds, rules, client, federated_tls)
    elif fn.name == "psi":
        outputs = _psi(inputs, parsed, kinds, rules, client)
    elif fn.name == "predict":
        outputs = _predict(inputs, parsed, rules, client)
    else:
        outputs = _aggregate(inputs, parsed, kinds, rules, client)
    return [Release(kind=r.kind, recipients=r.recipients, media_type=outputs[r.kind].media_type,
                    payload=outputs[r.kind].payload, summary=outputs[r.kind].summary)
            for r in requests]


def _party_inputs(specs: Sequence[InputSpec], tables: Sequence[pa.Table]) -> list[PartyInput]:
    return [PartyInput(s.party, s.table, s.keys, s.columns, t) for s, t in zip(specs, tables)]


def _per_partition(client: "distributed.Client", task: Any, inputs: Sequence[ClusterPartyInput],
                   *args: Any) -> list[Any]:
    """Run `task(specs, tables..., *args)` once per partition, where its partitions live; the
    futures (their results stay on the workers until the leader gathers them)."""
    specs = [inp.spec for inp in inputs]
    futures = []
    for i in range(len(inputs[0].partitions)):
        parts = [inp.partitions[i] for inp in inputs]
        futures.append(client.submit(task, specs, *args, *parts, pure=False, key=None))
    return futures


@worker_task
def _padded(blob: bytes, size: int) -> bytes:
    """On a worker: its partial's bytes, length-prefixed and zero-padded to `size` bytes."""
    if len(blob) + 8 > size:  # the leader sized it from every worker's length: never
        raise ValueError("a partial is larger than the size the leader asked for")
    return struct.pack(">Q", len(blob)) + blob + bytes(size - 8 - len(blob))


def _gather_padded(client: "distributed.Client", futures: Sequence[Any]) -> list[Any]:
    """Each worker's partial (an Arrow IPC stream, _frame_bytes), gathered at one size for
    all: the smallest power of two that holds the largest (its length is learnt first as a
    fixed-size integer). The wire then shows the same size for every partition, whatever its
    number of groups or label bytes. teenet itself unpickles nothing here: the partial is
    read back as Arrow, not with pickle."""
    largest = max(_counts(client, futures)) + 8
    size = 1 << (largest - 1).bit_length()
    out = []
    for padded in _gather(client, [client.submit(_padded, f, size, pure=False) for f in futures]):
        (length,) = struct.unpack(">Q", padded[:8])
        out.append(pa.ipc.open_stream(pa.py_buffer(padded[8:8 + length])).read_all().to_pandas())
    return out


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    """A partial frame as an Arrow IPC stream (pandas metadata keeps its dtypes and index)."""
    table = pa.Table.from_pandas(frame)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# ---- psi ---------------------------------------------------------------------------------


@worker_task
def _psi_partition(specs: Sequence[InputSpec], params: psi.PsiParams, want_ids: bool,
                   *tables: pa.Table) -> dict[str, Any]:
    """On a worker: this partition's intersection, and partial sums of the payload columns
    (kept there: the leader reads its size first, and the rest only once k is met)."""
    inputs = _party_inputs(specs, tables)
    common = psi.intersect(inputs, params.normalise, ordered=False)
    partials = [psi.payload_partial(inputs, item, common, params.normalise) for item in params.payload]
    return {"rows": common.num_rows, "ids": common if want_ids else None, "sums": partials}


@worker_task
def _item(value: Mapping[str, Any], name: str) -> Any:
    """On a worker: one entry of a result kept there."""
    return value[name]


def _psi(inputs: Sequence[ClusterPartyInput], params: psi.PsiParams, kinds: frozenset[str],
         rules: ReleaseRules, client: "distributed.Client") -> dict[str, Output]:
    futures = _per_partition(client, _psi_partition, inputs, params, "ids" in kinds)
    # Two phases: the per-partition sizes (8 bytes each) first; the merged intersection is what
    # the owners' k applies to, and no id or sum crosses the cluster's network below it.
    size = sum(_counts(client, futures))
    release.require_group_size(size, rules, "the intersection", unit="ids")
    wanted = [name for name in ("ids", "sums") if name in kinds]
    gathered = _gather(client, [client.submit(_item, f, name, pure=False) for name in wanted for f in futures])
    width = len(futures)
    parts = [{name: gathered[j * width + i] for j, name in enumerate(wanted)} for i in range(width)]
    outputs: dict[str, Output] = {}
    if "size" in kinds:
        outputs["size"] = json_output({"intersection_size": size}, {"intersection_size": size})
    if "ids" in kinds:
        arity = len(inputs[0].keys)
        tables = [p["ids"] for p in parts]
        try:
            merged = pa.concat_tables(tables)
        except pa.ArrowInvalid:
            raise InputError("the partitions' key types differ; set params.normalise.type to str or int",
                             field="params.normalise.type") from None
        if arity == 1 and pa.types.is_int64(merged.schema.types[0]):
            column = merged.column(0).to_numpy()
            merged = pa.table({merged.column_names[0]: pa.array(np.sort(column), pa.int64())})
        else:
            merged = sort_by_keys(merged, arity)
        ids = with_key_names(merged, inputs[0].keys)
        outputs["ids"] = arrow_output(ids, {"rows": size, "columns": list(ids.column_names)})
    if "sums" in kinds:
        sums = []
        for j, item in enumerate(params.payload):
            inp = inputs[item.input_index]
            entry = {"party": item.party, "table": inp.table, "column": item.column}
            people = sum(int(p["sums"][j]["people"]) for p in parts)
            if people < rules.k:
                sums.append({**entry, "sum": None, "count": None, "suppressed": True})
                continue
            totals = [p["sums"][j]["sum"] for p in parts if p["sums"][j]["sum"] is not None]
            total = _add(totals)
            count = sum(int(p["sums"][j]["count"]) for p in parts)
            sums.append({**entry, "sum": total if total is not None else 0, "count": count, "suppressed": False})
        outputs["sums"] = json_output({"intersection_size": size, "sums": sums},
                                      {"intersection_size": size, "columns": len(sums)})
    return outputs


def _add(values: Sequence[Any]) -> Any:
    """Partial sums added: exact for ints and decimals; floats in partition order."""
    if not values:
        return None
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


# ---- aggregate ---------------------------------------------------------------------------

_GROUP = "__teenet_group"


@worker_task
def _aggregate_partition(specs: Sequence[InputSpec], params: aggregate.AggregateParams,
                         *tables: pa.Table) -> bytes:
    """On a worker: per group of this partition, rows, people and per metric the partials
    (Arrow IPC bytes, for _gather_padded)."""
    inputs = _party_inputs(specs, tables)
    frame, entities = aggregate.combined_frame(inputs, params)
    group_by = list(params.group_by)
    if group_by:
        grouped = frame.groupby(group_by, dropna=False, sort=True)
        codes = grouped.ngroup().to_numpy()
        sizes = grouped.size()
        labels = [key if isinstance(key, tuple) else (key,) for key in sizes.index]
    else:
        codes = np.zeros(len(frame), dtype=np.int64)
        labels = [()]
    groups = len(labels)
    out: dict[str, Any] = {c: [lab[j] for lab in labels] for j, c in enumerate(group_by)}
    out["rows"] = np.bincount(codes, minlength=groups).astype(np.int64)
    out["people"] = aggregate._support(codes, entities, None, groups)
    for column in dict.fromkeys(m.column for m in params.metrics):
        values = frame[column].to_numpy(dtype=float)
        valid = ~np.isnan(values)
        g = codes[valid]
        v = values[valid]
        count = np.bincount(g, minlength=groups)
        total = np.bincount(g, weights=v, minlength=groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        m2 = np.bincount(g, weights=(v - mean[g]) ** 2, minlength=groups)
        low = np.full(groups, np.inf)
        high = np.full(groups, -np.inf)
        np.minimum.at(low, g, v)
        np.maximum.at(high, g, v)
        out[f"{column}|count"] = count.astype(np.int64)
        out[f"{column}|sum"] = total
        out[f"{column}|m2"] = m2
        out[f"{column}|min"] = low
        out[f"{column}|max"] = high
        out[f"{column}|people"] = aggregate._support(codes, entities, valid, groups)
    return _frame_bytes(pd.DataFrame(out))


def _merge_groups(parts: Sequence[pd.DataFrame], params: aggregate.AggregateParams) -> pd.DataFrame:
    """The partition partials merged per group label, in the order a single node's groupby yields."""
    frame = pd.concat(list(parts), ignore_index=True)
    group_by = list(params.group_by)
    if not group_by:
        frame[_GROUP] = 0
        group_by = [_GROUP]
    columns = list(dict.fromkeys(m.column for m in params.metrics))
    grouped = frame.groupby(group_by, dropna=False, sort=True)
    merged = grouped[["rows", "people"] + [f"{c}|{s}" for c in columns for s in ("count", "people")]].sum()
    for c in columns:
        merged[f"{c}|min"] = grouped[f"{c}|min"].min()
        merged[f"{c}|max"] = grouped[f"{c}|max"].max()
        sums, m2s = [], []
        for _, part in grouped:
            s, m2 = _merge_moments(part[f"{c}|count"].to_numpy(), part[f"{c}|sum"].to_numpy(),
                                   part[f"{c}|m2"].to_numpy())
            sums.append(s)
            m2s.append(m2)
        merged[f"{c}|sum"] = sums
        merged[f"{c}|m2"] = m2s
    return merged


def _merge_moments(counts: np.ndarray, sums: np.ndarray, m2s: np.ndarray) -> tuple[float, float]:
    """Count-weighted sum and sum of squared deviations of several partitions (Chan et al.)."""
    n, total, m2 = 0, 0.0, 0.0
    for cn, cs, cm in zip(counts, sums, m2s):
        cn = int(cn)
        if cn == 0:
            continue
        if n == 0:
            n, total, m2 = cn, float(cs), float(cm)
            continue
        delta = cs / cn - total / n
        m2 = m2 + float(cm) + delta * delta * n * cn / (n + cn)
        total = total + float(cs)
        n += cn
    return total, m2


def _aggregate(inputs: Sequence[ClusterPartyInput], params: aggregate.AggregateParams, kinds: frozenset[str],
               rules: ReleaseRules, client: "distributed.Client") -> dict[str, Output]:
    for i, metric in enumerate(params.metrics):
        for stat in metric.stats:
            if stat not in ("count", "sum", "mean", "std", "min", "max"):
                raise InputError(f"statistic '{stat}' does not run on a compute cluster (a percentile needs "
                                 "every value in one place; expected count, sum, mean, std, min or max)",
                                 field=f"params.metrics[{i}].stats")
    if params.dp is not None:
        return _aggregate_dp(inputs, params, rules, client)
    parts = _gather_padded(client, _per_partition(client, _aggregate_partition, inputs, params))
    merged = _merge_groups(parts, params)
    labels = [key if isinstance(key, tuple) else (key,) for key in merged.index] if params.group_by \
        else [()] * len(merged)
    if not params.group_by and len(merged) == 0:
        labels = [()]
    k = rules.k
    keep = release.releasable_groups(merged["people"].to_numpy(), rules)
    table_rows = []
    for g in range(len(merged)):
        if not keep[g]:
            continue
        row: list[Any] = [aggregate._plain(v) for v in labels[g]] + [int(merged["rows"].iloc[g])]
        for metric in params.metrics:
            c = metric.column
            enough = int(merged[f"{c}|people"].iloc[g]) >= k
            count = int(merged[f"{c}|count"].iloc[g])
            for stat in metric.stats:
                row.append(_stat(stat, merged, c, g, count) if enough else None)
        table_rows.append(row)
    width = sum(len(m.stats) for m in params.metrics)
    columns = list(params.group_by) + ["rows"] + [f"{m.column}.{s}" for m in params.metrics for s in m.stats]
    suppressed = int((~keep).sum())
    suppressed_statistics = sum(1 for row in table_rows for v in row[len(params.group_by) + 1:] if v is None) \
        if width else 0
    document = {"columns": columns, "rows": table_rows, "suppressed_groups": suppressed,
                "suppressed_statistics": suppressed_statistics, "min_group_size": k, "dp": None}
    summary = {"groups": len(table_rows), "suppressed_groups": suppressed,
               "suppressed_statistics": suppressed_statistics, "min_group_size": k, "dp": False}
    return {"aggregate": json_output(document, summary)}


def _stat(stat: str, merged: pd.DataFrame, column: str, g: int, count: int) -> Any:
    if stat == "count":
        return count
    total = float(merged[f"{column}|sum"].iloc[g])
    if stat == "sum":
        return total
    if count == 0:
        return None
    if stat == "mean":
        return total / count
    if stat == "std":
        if count < 2:
            return None
        return math.sqrt(max(float(merged[f"{column}|m2"].iloc[g]), 0.0) / (count - 1))
    value = float(merged[f"{column}|{stat}"].iloc[g])
    return None if math.isinf(value) else value


@worker_task
def _aggregate_dp_partition(specs: Sequence[InputSpec], params: aggregate.AggregateParams,
                            plan: aggregate.DpPlan, *tables: pa.Table) -> bytes:
    """On a worker: rows clipped per key (every row of a key is on this worker), then per
    group the exact row count and per metric the non-null count and the clamped sum and
    sum of squares: what a single node's _dp_group adds noise to. Arrow IPC bytes, for _gather_padded:
    how many groups this partition has is what DP's partition selection hides."""
    inputs = _party_inputs(specs, tables)
    frame, entities = aggregate.combined_frame(inputs, params)
    kept = clip_rows_per_key(entities, len(frame), plan.rows_per_key)
    if not kept.all():
        frame = frame[kept]
    group_by = list(params.group_by)
    if group_by:
        grouped = frame.groupby(group_by, dropna=False, sort=True)
        codes = grouped.ngroup().to_numpy()
        labels = [key if isinstance(key, tuple) else (key,) for key in grouped.size().index]
    else:
        codes, labels = np.zeros(len(frame), dtype=np.int64), [()]
    groups = len(labels)
    out: dict[str, Any] = {c: [lab[j] for lab in labels] for j, c in enumerate(group_by)}
    out["rows"] = np.bincount(codes, minlength=groups).astype(np.int64)
    for column in dict.fromkeys(m.column for m in params.metrics):
        values = frame[column].to_numpy(dtype=float)
        valid = ~np.isnan(values)
        clamped = clamp(values[valid], plan.bounds[column])
        g = codes[valid]
        out[f"{column}|count"] = np.bincount(g, minlength=groups).astype(np.int64)
        out[f"{column}|sum"] = np.bincount(g, weights=clamped, minlength=groups)
        out[f"{column}|squares"] = np.bincount(g, weights=clamped ** 2, minlength=groups)
    return _frame_bytes(pd.DataFrame(out))


def _aggregate_dp(inputs: Sequence[ClusterPartyInput], params: aggregate.AggregateParams, rules: ReleaseRules,
                  client: "distributed.Client") -> dict[str, Output]:
    """DP aggregate: exact partials merged at the leader, then noise drawn once per group, in
    the same order, with the same sensitivities and partition selection as a single node."""
    plan = aggregate._dp_plan([inp.spec for inp in inputs], params, rules)
    parts = _gather_padded(client, _per_partition(client, _aggregate_dp_partition, inputs, params, plan))
    frame = pd.concat(list(parts), ignore_index=True)
    group_by = list(params.group_by) or [_GROUP]
    if not params.group_by:
        frame[_GROUP] = 0
    merged = frame.groupby(group_by, dropna=False, sort=True).sum()
    labels = [key if isinstance(key, tuple) else (key,) for key in merged.index] if params.group_by \
        else [()] * len(merged)
    k = rules.k
    table_rows = []
    for g in range(len(merged)):
        values = _dp_group_from_partials(merged.iloc[g], params, plan, k)
        if values is not None:
            table_rows.append([aggregate._plain(v) for v in labels[g]] + [aggregate._plain(v) for v in values])
    width = sum(len(m.stats) for m in params.metrics)
    columns = list(params.group_by) + ["rows"] + [f"{m.column}.{s}" for m in params.metrics for s in m.stats]
    suppressed_statistics = sum(1 for row in table_rows for v in row[len(params.group_by) + 1:] if v is None) \
        if width else 0
    document = {"columns": columns, "rows": table_rows, "suppressed_groups": None,
                "suppressed_statistics": suppressed_statistics, "min_group_size": k, "dp": plan.describe()}
    summary = {"groups": len(table_rows), "suppressed_groups": None,
               "suppressed_statistics": suppressed_statistics, "min_group_size": k, "dp": True}
    return {"aggregate": json_output(document, summary)}


def _dp_group_from_partials(row: pd.Series, params: aggregate.AggregateParams, plan: aggregate.DpPlan,
                            k: int) -> list[Any] | None:
    """models/aggregate.py's noisy answers over merged partials: the same draws, made once."""
    def exact(metric) -> tuple[int, float, float]:
        c = metric.column
        return int(row[f"{c}|count"]), float(row[f"{c}|sum"]), float(row[f"{c}|squares"])

    return aggregate.dp_group_from_sums(int(row["rows"]), exact, params, plan, k)


# ---- predict -----------------------------------------------------------------------------


@worker_task
def _predict_partition(specs: Sequence[InputSpec], params: Any, *tables: pa.Table) -> pa.Table:
    """On a worker: models/predict.py's scoring of this partition's joined rows (no k test:
    k applies to all scored rows, at the leader), keys under the aligned names."""
    from teenet.models import predict
    from teenet.models.onnx_models import load_model
    from teenet.models.tables import inner_join

    inputs = _party_inputs(specs, tables)
    model = load_model(params.model_onnx)
    columns = [[c for c in inp.columns if c in model.inputs] for inp in inputs]
    arity = len(inputs[0].keys)
    table = sort_by_keys(inner_join(inputs, params.normalise, unique=True, columns=columns), arity)
    out = table.select(key_names(arity))
    if table.num_rows == 0:
        return out
    for name, values in predict.score_rows(model, table).items():
        out = out.append_column(name, values)
    return out


def _predict(inputs: Sequence[ClusterPartyInput], params: Any, rules: ReleaseRules,
             client: "distributed.Client") -> dict[str, Output]:
    from teenet.models.onnx_models import load_model

    if params.model_onnx is None:
        raise InputError("the model's ONNX bytes were not supplied by the compute node", field="params.model_onnx")
    model = load_model(params.model_onnx)  # refused here, before any partition is read, if it is not a model
    shipped = {c for inp in inputs for c in inp.columns}
    missing = [name for name in model.inputs if name not in shipped]
    if missing:
        raise InputError(f"the model needs column(s) {', '.join(missing)}, which no input ships",
                         field="params.model")
    futures = _per_partition(client, _predict_partition, inputs, params)
    # Two phases: the per-partition row counts first; no scored row crosses the network below k.
    rows = sum(_counts(client, futures))
    release.require_group_size(rows, rules, "the set of scored rows", unit="ids")
    parts = _gather(client, futures)
    arity = len(inputs[0].keys)
    scored = sort_by_keys(_concat_scored(parts, arity), arity)
    owner = next(inp for inp in inputs if inp.party == params.ids_from)
    out = with_key_names(scored, owner.keys)
    return {"scores": arrow_output(out, {"rows": out.num_rows, "columns": list(out.column_names),
                                         "owner": params.ids_from})}


def _concat_scored(parts: Sequence[pa.Table], arity: int) -> pa.Table:
    """The partitions' scored rows in one table (an empty partition has no score columns)."""
    filled = [p for p in parts if p.num_columns > arity]
    return pa.concat_tables(filled)


__all__ = ["ClusterPartyInput", "FederatedTLS", "run_function_on_cluster", "CLUSTER_FUNCTIONS"]
