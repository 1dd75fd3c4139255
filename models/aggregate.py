"""`aggregate`: grouped statistics over owners' tables, small groups suppressed, optional DP.

Params:
  combine: join | union (join)   join: inner join of the inputs on their keys (a key may
      repeat, e.g. transactions joined to customers); union: the same columns from every
      input, rows stacked. A single input is used as is.
  normalise: {trim, case, type}  key normalisation for the join (see `psi`).
  group_by: [column, ...] ([])   an empty list makes one group of all rows.
  metrics: [{column, stats: [count, sum, mean, std, min, max, p50, p90, ...]}, ...]
      numeric columns; count is the non-null count, std the sample standard deviation,
      pNN the NN-th percentile (linear interpolation), any NN from 1 to 99.
  dp: {epsilon, mechanism: laplace|gaussian, delta, bounds: {column: [low, high]}, max_rows_per_key}
      optional differential privacy through diffprivlib (see teenet.models.dp); only count,
      sum, mean and std have a mechanism here. No seed or other RNG control is accepted.
      Bounds missing from the spec come from the owners' rules, never from the data.

k is the owners' strictest (`ReleaseRules.k`) and counts people: distinct key values when
every input has a key (one customer's many transactions never make a group alone; in a
union, equal keys from two parties count once), otherwise rows.
- Without dp: a group with fewer than k people is suppressed (left out; only how many
  groups were suppressed is reported), and within a released group every statistic of a
  metric column computed from fewer than k people with a non-null value is null, its
  count with it ("suppressed_statistics" counts such cells).
- With dp: rows per key are clipped, groups are chosen by DP partition selection (a noisy
  threshold, never exact counts), and a metric whose noisy count is below k is null.
  How many groups were left out is not released ("suppressed_groups": null).

Release kind "aggregate": JSON {"columns": [...], "rows": [[...], ...],
"suppressed_groups": n | null, "suppressed_statistics": n, "min_group_size": k,
"dp": {epsilon, delta, mechanism, rows_per_key, bounds, partition_selection} | null}; the columns are the
group_by columns, "rows" and "<column>.<stat>" for each metric.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from teenet.errors import InputError

from teenet.models import release
from teenet.models.dp import (DP_STATS, DpParams, NoiseBudget, clamp, clip_rows_per_key, queries_per_group,
                              refuse_rng_controls, selection_delta, selection_threshold, square_sensitivity,
                              sum_sensitivity)
from teenet.models.params import ParamReader
from teenet.models.payloads import json_output
from teenet.models.spec import Function, InputSpec, Output, PartyInput, ReleaseRules
from teenet.models.tables import (KeyNormalisation, check_specs, inner_join, key_names, normalise_key,
                                  shipped_table)

_BASE_STATS = ("count", "sum", "mean", "std", "min", "max")
_PERCENTILE = re.compile(r"^p([1-9][0-9]?)$")


@dataclass(frozen=True)
class Metric:
    column: str
    stats: tuple[str, ...]


@dataclass(frozen=True)
class AggregateParams:
    combine: str
    normalise: KeyNormalisation
    group_by: tuple[str, ...]
    metrics: tuple[Metric, ...]
    dp: DpParams | None


def parse_params(params: Mapping[str, Any], inputs: Sequence[InputSpec],
                 kinds: frozenset[str]) -> AggregateParams:
    reader = ParamReader(params)
    refuse_rng_controls(reader)
    combine = reader.text("combine", choices=("join", "union"), default="join")
    joining = combine == "join" and len(inputs) > 1
    check_specs(inputs, need_keys=joining)
    norm = KeyNormalisation.parse(reader.section("normalise"))
    group_by = reader.names("group_by", default=())
    metrics = []
    for item in reader.sections("metrics"):
        column = item.text("column")
        stats = item.names("stats")
        for j, stat in enumerate(stats):
            if stat not in _BASE_STATS and not _PERCENTILE.match(stat):
                raise InputError(f"unknown statistic '{stat}' (expected one of {', '.join(_BASE_STATS)} "
                                 "or pNN with NN from 1 to 99)", field=f"{item.field('stats')}[{j}]")
        if not stats:
            raise InputError("expected at least one statistic", field=item.field("stats"))
        item.done()
        metrics.append(Metric(column, stats))
    if not metrics:
        raise InputError("expected at least one {column, stats}", field="params.metrics")
    metric_columns = tuple(dict.fromkeys(m.column for m in metrics))
    overlap = set(metric_columns) & set(group_by)
    if overlap:
        raise InputError(f"column(s) {', '.join(sorted(overlap))} are both grouped on and measured",
                         field="params.metrics")
    dp_reader = reader.section("dp")
    dp = DpParams.parse(dp_reader, metric_columns, grouped=bool(group_by)) if dp_reader is not None else None
    if dp is not None:
        for i, metric in enumerate(metrics):
            for stat in metric.stats:
                if stat not in DP_STATS:
                    raise InputError(f"statistic '{stat}' has no differentially private mechanism here "
                                     f"(expected one of {', '.join(sorted(DP_STATS))} with dp)",
                                     field=f"params.metrics[{i}].stats")
    reader.done()
    for name, where in [(c, "params.group_by") for c in group_by] + [(c, "params.metrics") for c in metric_columns]:
        _check_shipped(inputs, name, where, every=(combine == "union"))
    return AggregateParams(combine, norm, group_by, tuple(metrics), dp)


def _check_shipped(inputs: Sequence[InputSpec], column: str, field: str, *, every: bool) -> None:
    holders = [s for s in inputs if column in s.columns]
    if every and len(holders) != len(inputs):
        lacking = ", ".join(s.name for s in inputs if column not in s.columns)
        raise InputError(f"column '{column}' is missing from {lacking} (a union needs it in every input)",
                         field=field)
    if not holders:
        raise InputError(f"column '{column}' is not among the columns any input ships", field=field)


def combined_frame(inputs: Sequence[PartyInput], params: AggregateParams) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The joined or stacked rows, and per row an id of the entity (key) it belongs to.

    The entity ids are hashes of the normalised key tuple, or None when some input has
    no key; they let the k rule count people rather than rows.
    """
    needed = list(dict.fromkeys(params.group_by + tuple(m.column for m in params.metrics)))
    keyed = all(inp.keys for inp in inputs) and len({len(inp.keys) for inp in inputs}) == 1
    if params.combine == "join" and len(inputs) > 1:
        columns = [[c for c in inp.columns if c in needed] for inp in inputs]
        table = inner_join(inputs, params.normalise, unique=False, columns=columns)
        keys = table.select(key_names(len(inputs[0].keys)))
    else:
        parts = [shipped_table(inp, i) for i, inp in enumerate(inputs)]
        try:
            table = pa.concat_tables([p.select(needed) for p in parts], promote_options="permissive")
            keys = pa.concat_tables([pa.table([normalise_key(p.column(k), params.normalise, f"{inp.name} key '{k}'")
                                               for k in inp.keys], names=key_names(len(inp.keys)))
                                     for p, inp in zip(parts, inputs)], promote_options="permissive") if keyed else None
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(f"the inputs' columns have types that cannot be stacked: {exc}",
                             field="inputs.columns") from None
    frame = table.select(needed).to_pandas()
    for metric in params.metrics:
        series = frame[metric.column]
        if series.dtype == bool:
            frame[metric.column] = series.astype(float)
        elif not pd.api.types.is_numeric_dtype(series):
            raise InputError(f"column '{metric.column}' is {table.column(metric.column).type}, expected a number",
                             field="params.metrics")
    entities = None if keys is None else pd.util.hash_pandas_object(keys.to_pandas(), index=False).to_numpy()
    return frame, entities


def compute(inputs: Sequence[PartyInput], params: AggregateParams, kinds: frozenset[str],
            rules: ReleaseRules) -> dict[str, Output]:
    frame, entities = combined_frame(inputs, params)
    dp_plan = None if params.dp is None else _dp_plan(inputs, params, rules)
    if dp_plan is not None:
        # Each person contributes at most rows_per_key rows, before anything is counted.
        kept = clip_rows_per_key(entities, len(frame), dp_plan.rows_per_key)
        if not kept.all():
            frame = frame[kept]
            entities = entities[kept] if entities is not None else None
    if params.group_by:
        grouped = frame.groupby(list(params.group_by), dropna=False, sort=True)
        codes = grouped.ngroup().to_numpy()
        sizes = grouped.size()  # in group-number order, as ngroup numbers them
        labels = [key if isinstance(key, tuple) else (key,) for key in sizes.index]
        rows = sizes.to_numpy()
    else:
        grouped = frame.groupby(np.zeros(len(frame), dtype=np.int64))
        codes, labels, rows = np.zeros(len(frame), dtype=np.int64), [()], np.array([len(frame)])
    k = rules.k
    width = sum(len(m.stats) for m in params.metrics)
    if dp_plan is None:
        # k counts distinct entities: one customer's many transactions never make a group alone.
        keep = release.releasable_groups(_support(codes, entities, None, len(rows)), rules)
        values = _exact_values(frame, grouped, codes, entities, rows, keep, params, rules)
        suppressed: int | None = int((~keep).sum())
    else:
        order = np.argsort(codes, kind="stable")
        starts = np.searchsorted(codes[order], np.arange(len(rows) + 1))
        values = [_dp_group(frame.iloc[order[starts[g]:starts[g + 1]]], params, dp_plan, k)
                  for g in range(len(rows))]
        keep = np.array([v is not None for v in values], dtype=bool)
        # How many groups exist is an exact fact about the rows: not released under DP.
        suppressed = None
    columns = list(params.group_by) + ["rows"] + [f"{m.column}.{s}" for m in params.metrics for s in m.stats]
    table_rows = [[_plain(v) for v in labels[g]] + [_plain(v) for v in values[g]]
                  for g in range(len(rows)) if keep[g]]
    suppressed_statistics = sum(1 for row in table_rows for v in row[len(params.group_by) + 1:] if v is None) \
        if width else 0
    dp_info = None if dp_plan is None else dp_plan.describe()
    document = {"columns": columns, "rows": table_rows, "suppressed_groups": suppressed,
                "suppressed_statistics": suppressed_statistics, "min_group_size": k, "dp": dp_info}
    summary = {"groups": len(table_rows), "suppressed_groups": suppressed,
               "suppressed_statistics": suppressed_statistics, "min_group_size": k, "dp": dp_plan is not None}
    return {"aggregate": json_output(document, summary)}


def _support(codes: np.ndarray, entities: np.ndarray | None, mask: np.ndarray | None, groups: int) -> np.ndarray:
    """Per group, the distinct entities (or rows, without keys) among the rows in `mask`."""
    if mask is not None:
        codes = codes[mask]
        entities = entities[mask] if entities is not None else None
    if entities is None:
        return np.bincount(codes, minlength=groups)
    pairs = pd.DataFrame({"g": codes, "e": entities}).drop_duplicates()
    return np.bincount(pairs["g"].to_numpy(), minlength=groups)


def _exact_values(frame: pd.DataFrame, grouped: Any, codes: np.ndarray, entities: np.ndarray | None,
                  rows: np.ndarray, keep: np.ndarray, params: AggregateParams, rules: ReleaseRules) -> list[list[Any]]:
    """Each kept group's row count and statistics; a metric computed from fewer than k
    entities with a non-null value is suppressed in that group (every statistic of it, its
    count too), so a group of k with one non-null value says nothing of that value."""
    if not keep.any():
        return [[] for _ in range(len(rows))]
    stats = _exact_stats(grouped, params)
    support = {m.column: _support(codes, entities, frame[m.column].notna().to_numpy(), len(rows))
               for m in params.metrics}
    values: list[list[Any]] = []
    for g in range(len(rows)):
        if not keep[g]:
            values.append([])
            continue
        row: list[Any] = [int(rows[g])]
        i = 0
        for metric in params.metrics:
            enough = support[metric.column][g] >= rules.k
            for _ in metric.stats:
                row.append(stats[i][g] if enough else None)
                i += 1
        values.append(row)
    return values


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _exact_stats(grouped: Any, params: AggregateParams) -> list[np.ndarray]:
    """One array per released statistic, indexed by group number (vectorised in pandas)."""
    out: list[np.ndarray] = []
    for metric in params.metrics:
        series = grouped[metric.column]
        for stat in metric.stats:
            if stat == "count":
                result = series.count()
            elif stat == "sum":
                result = series.sum(min_count=0)
            elif stat == "std":
                result = series.std(ddof=1)
            elif stat in ("mean", "min", "max"):
                result = getattr(series, stat)()
            else:
                result = series.quantile(int(stat[1:]) / 100.0)
            array = result.to_numpy()
            out.append(array.astype(np.int64) if stat == "count" else array.astype(float))
    return out


@dataclass(frozen=True)
class DpPlan:
    """The DP settings a run uses, resolved from the spec and the owners' rules."""

    params: DpParams
    rows_per_key: int
    bounds: Mapping[str, tuple[float, float]]
    queries: int
    grouped: bool

    def describe(self) -> dict[str, Any]:
        return {"epsilon": self.params.epsilon, "mechanism": self.params.mechanism, "delta": self.params.delta,
                "rows_per_key": self.rows_per_key, "bounds": {c: list(b) for c, b in self.bounds.items()},
                "partition_selection": self.grouped}


def _dp_plan(inputs: Sequence[PartyInput], params: AggregateParams, rules: ReleaseRules) -> DpPlan:
    dp = params.dp
    assert dp is not None
    bounds: dict[str, tuple[float, float]] = {}
    for metric in params.metrics:
        found = dp.bounds.get(metric.column) or rules.value_bounds(metric.column, inputs)
        if found is None or not found[0] < found[1]:
            raise InputError(f"no bounds for '{metric.column}' in the spec or the owners' rules (DP clamps to "
                             "declared bounds, never to the data's)", field=f"params.dp.bounds.{metric.column}")
        bounds[metric.column] = found
    limits = [v for v in (dp.max_rows_per_key, rules.max_rows_per_key) if v is not None]
    rows_per_key = min(limits) if limits else 1
    queries = queries_per_group([m.stats for m in params.metrics])
    return DpPlan(dp, rows_per_key, bounds, queries, bool(params.group_by))


def _dp_group(part: pd.DataFrame, params: AggregateParams, plan: DpPlan, k: int) -> list[Any] | None:
    """One group's noisy answers, or None when partition selection leaves it out."""
    def exact(metric) -> tuple[int, float, float]:
        clamped = clamp(part[metric.column].dropna().to_numpy(dtype=float), plan.bounds[metric.column])
        return len(clamped), float(clamped.sum()), float((clamped ** 2).sum())

    return dp_group_from_sums(len(part), exact, params, plan, k)


def dp_group_from_sums(rows: int, exact, params: AggregateParams, plan: DpPlan, k: int) -> list[Any] | None:
    """One group's noisy answers from its exact row count and, per metric, `exact(metric)`:
    the (count, sum, sum of squares) of its clamped values. The one place the noise is drawn,
    for a single node and for a cluster's merged partials alike (models/cluster.py)."""
    budget = NoiseBudget(plan.params, plan.queries)
    per_key = plan.rows_per_key
    noisy_rows = budget.noisy(rows, per_key, laplace=True)
    threshold = selection_threshold(k, per_key, budget.laplace_scale(per_key), selection_delta(plan.params)) \
        if plan.grouped else float(k)
    if noisy_rows < threshold:
        return None
    out: list[Any] = [int(round(noisy_rows))]
    for metric in params.metrics:
        bounds = plan.bounds[metric.column]
        n, raw_sum, raw_squares = exact(metric)
        count = budget.noisy(n, per_key)
        total = budget.noisy(raw_sum, sum_sensitivity(bounds, per_key)) \
            if set(metric.stats) & {"sum", "mean", "std"} else 0.0
        squares = budget.noisy(raw_squares, square_sensitivity(bounds, per_key)) \
            if "std" in metric.stats else 0.0
        if count < k:  # post-processing of the noisy count: fewer than k values behind it
            out.extend([None] * len(metric.stats))
            continue
        for stat in metric.stats:
            if stat == "count":
                out.append(int(round(count)))
            elif stat == "sum":
                out.append(total)
            elif stat == "mean":
                out.append(float(np.clip(total / count, *bounds)))
            else:
                variance = (squares - total * total / count) / max(count - 1.0, 1.0)
                out.append(math.sqrt(max(variance, 0.0)))
    return out


FUNCTION = Function(name="aggregate", release_kinds=frozenset({"aggregate"}), params_type=AggregateParams,
                    parse_params=parse_params, compute=compute)
