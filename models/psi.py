"""`psi`: the intersection of two or more parties' key sets, and what may be said of it.

Params (all optional unless a kind needs them):
  normalise: {trim: bool (false), case: lower|upper|none (none), type: str|int|keep (keep)}
      applied identically to every party's key columns before matching. type int also
      strips blanks; values that are not integers are refused. Rows with a null key never
      match. Multi-column keys match position by position (every input has the same arity).
  payload: [{party, column}, ...]   required for the "sums" kind: numeric columns to sum
      over the intersection (a private join-and-compute). A party whose table repeats a
      key contributes all its rows for that key.

Release kinds:
  size  JSON {"intersection_size": n}.
  ids   Arrow IPC stream of the intersecting key tuples in ascending order, named by the
        first input's key columns; only to parties that own ids and every owner allowed.
  sums  JSON {"intersection_size": n, "sums": [{party, table, column, sum, count, suppressed}]};
        a column with fewer than k distinct intersecting keys holding a non-null value has
        sum and count null and suppressed true.
Every kind is refused when the intersection holds fewer than k ids (the owners' strictest
k), without saying how many it holds. Thresholds do not stop differencing two probes that
differ by one id; docs/privacy.md says what does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from teenet.errors import InputError

from teenet.models import release
from teenet.models.params import ParamReader
from teenet.models.payloads import arrow_output, json_output
from teenet.models.spec import Function, InputSpec, Output, PartyInput, ReleaseRules
from teenet.models.tables import (KeyNormalisation, check_specs, distinct_keys, key_names, keyed_table,
                                  owner_of_column, sort_by_keys, with_key_names)


@dataclass(frozen=True)
class PayloadColumn:
    """A column to sum over the intersection, and which input ships it."""

    party: str
    column: str
    input_index: int


@dataclass(frozen=True)
class PsiParams:
    normalise: KeyNormalisation
    payload: tuple[PayloadColumn, ...]


def parse_params(params: Mapping[str, Any], inputs: Sequence[InputSpec], kinds: frozenset[str]) -> PsiParams:
    check_specs(inputs, need_keys=True, min_inputs=2)
    reader = ParamReader(params)
    norm = KeyNormalisation.parse(reader.section("normalise"))
    payload = []
    for item in reader.sections("payload", default=[]):
        party = item.text("party")
        column = item.text("column")
        item.done()
        payload.append(PayloadColumn(party, column, owner_of_column(inputs, party, column, item.field("column"))))
    reader.done()
    if "sums" in kinds and not payload:
        raise InputError("the 'sums' release needs at least one {party, column} to sum",
                         field="params.payload")
    return PsiParams(norm, tuple(payload))


def intersect(inputs: Sequence[PartyInput], norm: KeyNormalisation, *, ordered: bool) -> pa.Table:
    """The distinct key tuples present in every input, in aligned key names.

    Single int64 keys (ids, and any key normalised with type int) are intersected by
    sorting: each input's keys are sorted and de-duplicated, then merged, which is several
    times faster than hashing at millions of rows and yields ascending order for free.
    Other keys use Arrow's hash join: only the smallest input is de-duplicated, and every
    other one filters it with a semi join, which never multiplies rows.
    """
    arity = len(inputs[0].keys)
    names = key_names(arity)
    keyed = [keyed_table(inp, i, norm, columns=()) for i, inp in enumerate(inputs)]
    order = sorted(range(len(keyed)), key=lambda i: keyed[i].num_rows)
    smallest = keyed[order[0]]
    for i in order[1:]:
        if smallest.schema.types != keyed[i].schema.types:
            raise InputError(f"key types differ: {inputs[order[0]].name} has {smallest.schema.types}, "
                             f"{inputs[i].name} has {keyed[i].schema.types}; set params.normalise.type "
                             "to str or int", field="params.normalise.type")
    if arity == 1 and pa.types.is_int64(smallest.schema.types[0]):
        return _intersect_sorted_int64([keyed[i].column(0) for i in order], names[0])
    common = distinct_keys(smallest, arity)
    for i in order[1:]:
        common = common.join(keyed[i], keys=names, join_type="left semi", use_threads=True)
    return sort_by_keys(common, arity) if ordered else common


def _sorted_distinct(values: pa.ChunkedArray) -> np.ndarray:
    """One input's int64 keys (no nulls: keyed_table dropped them), sorted, each once."""
    keys = np.sort(values.to_numpy())
    if keys.size > 1:
        keep = np.empty(keys.size, dtype=bool)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
    return keys


def _intersect_sorted_int64(columns: Sequence[pa.ChunkedArray], name: str) -> pa.Table:
    """The ascending distinct int64 values present in every column (smallest column first)."""
    common = _sorted_distinct(columns[0])
    for column in columns[1:]:
        if common.size == 0:
            break
        common = np.intersect1d(common, _sorted_distinct(column), assume_unique=True)
    return pa.table({name: pa.array(common, pa.int64())})


def compute(inputs: Sequence[PartyInput], params: PsiParams, kinds: frozenset[str],
            rules: ReleaseRules) -> dict[str, Output]:
    common = intersect(inputs, params.normalise, ordered="ids" in kinds)
    size = common.num_rows
    # Every release of an intersection states its size: a tiny probe table would test one
    # id's membership. Below k nothing is released, and the refusal does not say the size.
    release.require_group_size(size, rules, "the intersection", unit="ids")
    outputs: dict[str, Output] = {}
    if "size" in kinds:
        outputs["size"] = json_output({"intersection_size": size}, {"intersection_size": size})
    if "ids" in kinds:
        ids = with_key_names(common, inputs[0].keys)
        outputs["ids"] = arrow_output(ids, {"rows": size, "columns": list(ids.column_names)})
    if "sums" in kinds:
        sums = [_sum_over(inputs, item, common, params.normalise, rules.k) for item in params.payload]
        outputs["sums"] = json_output({"intersection_size": size, "sums": sums},
                                      {"intersection_size": size, "columns": len(sums)})
    return outputs


def _sum_over(inputs: Sequence[PartyInput], item: PayloadColumn, common: pa.Table,
              norm: KeyNormalisation, k: int) -> dict[str, Any]:
    """The column's sum and non-null count over the intersection, or both null (suppressed)
    when fewer than k distinct intersecting keys have a non-null value in it."""
    part = payload_partial(inputs, item, common, norm)
    entry = {"party": item.party, "table": inputs[item.input_index].table, "column": item.column}
    if part["people"] < k:
        return {**entry, "sum": None, "count": None, "suppressed": True}
    total = part["sum"]
    return {**entry, "sum": total if total is not None else 0, "count": part["count"], "suppressed": False}


def payload_partial(inputs: Sequence[PartyInput], item: PayloadColumn, common: pa.Table,
                    norm: KeyNormalisation) -> dict[str, Any]:
    """A payload column over `common` with no k test: its sum (None over no rows), non-null
    count and the distinct keys behind them. A single node tests k on it directly; a cluster
    merges the partitions' partials first (models/cluster.py)."""
    inp = inputs[item.input_index]
    table = keyed_table(inp, item.input_index, norm, columns=(item.column,))
    values = table.column(item.column)
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
            or pa.types.is_decimal(values.type) or pa.types.is_boolean(values.type)):
        raise InputError(f"column '{item.column}' of {inp.name} is {values.type}, expected a number",
                         field="params.payload")
    arity = len(inp.keys)
    inside = table.join(common, keys=key_names(arity), join_type="left semi", use_threads=True)
    column = inside.column(item.column)
    if pa.types.is_boolean(column.type):
        column = column.cast(pa.int64())
    present = inside.filter(pc.is_valid(inside.column(item.column))) if inside.num_rows else inside
    people = distinct_keys(present, arity).num_rows if present.num_rows else 0
    total = pc.sum(column).as_py() if inside.num_rows else None
    return {"sum": total, "count": pc.count(column).as_py() if inside.num_rows else 0, "people": people}


FUNCTION = Function(name="psi", release_kinds=frozenset({"size", "ids", "sums"}), params_type=PsiParams,
                    parse_params=parse_params, compute=compute)
