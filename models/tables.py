"""Shaping owners' tables inside the enclave: key normalisation, inner joins and unions.

Keys are normalised identically for every party (`KeyNormalisation`), rows with a null
key never match, and joins run in Arrow's hash join (no per-row Python), so they scale to
tens of millions of rows. Error messages name parties, tables and columns, never values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from teenet.errors import InputError

from teenet.models.params import ParamReader
from teenet.models.spec import InputSpec, PartyInput

# Internal names for the aligned key columns while parties are joined.
KEY_PREFIX = "__teenet_key_"


@dataclass(frozen=True)
class KeyNormalisation:
    """How every party's key values are made comparable before matching.

    trim: strip surrounding whitespace; case: lower | upper | none; type: str | int, or
    keep (the default) to compare values as shipped.
    """

    trim: bool = False
    case: str = "none"
    type: str = "keep"

    @classmethod
    def parse(cls, reader: ParamReader | None) -> "KeyNormalisation":
        if reader is None:
            return cls()
        result = cls(trim=reader.flag("trim", False),
                     case=reader.text("case", choices=("lower", "upper", "none"), default="none"),
                     type=reader.text("type", choices=("str", "int", "keep"), default="keep"))
        reader.done()
        return result


def key_names(arity: int) -> list[str]:
    return [f"{KEY_PREFIX}{i}" for i in range(arity)]


def check_specs(inputs: Sequence[InputSpec], *, need_keys: bool, min_inputs: int = 1) -> None:
    """Inputs name distinct tables, keys of one arity, and no column twice."""
    if len(inputs) < min_inputs:
        raise InputError(f"expected at least {min_inputs} input table(s), found {len(inputs)}",
                         field="inputs")
    seen: set[tuple[str, str]] = set()
    for i, spec in enumerate(inputs):
        if (spec.party, spec.table) in seen:
            raise InputError(f"table {spec.name} is listed twice", field=f"inputs[{i}]")
        seen.add((spec.party, spec.table))
        if need_keys and not spec.keys:
            raise InputError(f"{spec.name} names no key column", field=f"inputs[{i}].keys")
        names = list(spec.keys) + list(spec.columns)
        if len(set(names)) != len(names):
            raise InputError(f"{spec.name} names a column twice", field=f"inputs[{i}].columns")
        if any(n.startswith(KEY_PREFIX) for n in names):
            raise InputError(f"column names starting with '{KEY_PREFIX}' are reserved",
                             field=f"inputs[{i}].columns")
    if need_keys and len({len(s.keys) for s in inputs}) > 1:
        arities = ", ".join(f"{s.name}: {len(s.keys)}" for s in inputs)
        raise InputError(f"every input needs the same number of key columns (found {arities})",
                         field="inputs.keys")


def shipped_table(inp: PartyInput, index: int) -> pa.Table:
    """The declared key columns and columns of one input, and nothing else it shipped."""
    if not isinstance(inp.data, pa.Table):
        raise InputError(f"{inp.name}: expected an Arrow table", field=f"inputs[{index}].data")
    names = list(inp.keys) + list(inp.columns)
    missing = [n for n in names if n not in inp.data.column_names]
    if missing:
        raise InputError(f"{inp.name} lacks declared column(s) {', '.join(missing)}",
                         field=f"inputs[{index}].data")
    return inp.data.select(names)


def owner_of_column(inputs: Sequence[InputSpec], party: str, column: str, field: str) -> int:
    """The index of the one input of `party` that ships `column` (not as a key)."""
    parties = {s.party for s in inputs}
    if party not in parties:
        raise InputError(f"party '{party}' has no input in this job (expected one of "
                         f"{', '.join(sorted(parties))})", field=field)
    found = [i for i, s in enumerate(inputs) if s.party == party and column in s.columns]
    if not found:
        raise InputError(f"column '{column}' is not among the columns {party} ships", field=field)
    if len(found) > 1:
        raise InputError(f"column '{column}' is shipped in more than one table of {party}", field=field)
    return found[0]


def normalise_key(values: pa.ChunkedArray, norm: KeyNormalisation, where: str) -> pa.ChunkedArray:
    """One key column normalised; errors name the column, never a value."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.cast(kind.value_type)
        kind = values.type
    try:
        if norm.type == "int":
            if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
                return pc.cast(values, pa.int64(), safe=True)
            # Surrounding blanks never change an integer's meaning, so they go regardless of trim.
            text = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
            return pc.cast(text, pa.int64(), safe=True)
        if norm.type == "str" or pa.types.is_string(kind) or pa.types.is_large_string(kind):
            text = pc.cast(values, pa.string())
            if norm.trim:
                text = pc.utf8_trim_whitespace(text)
            if norm.case == "lower":
                text = pc.utf8_lower(text)
            elif norm.case == "upper":
                text = pc.utf8_upper(text)
            return text
        if pa.types.is_integer(kind):
            return pc.cast(values, pa.int64())
        return values
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        wanted = "an integer" if norm.type == "int" else "a string"
        raise InputError(f"{where}: a key value cannot be read as {wanted} "
                         f"({type(exc).__name__})", field="params.normalise.type") from None


def keyed_table(inp: PartyInput, index: int, norm: KeyNormalisation,
                columns: Sequence[str] | None = None) -> pa.Table:
    """An input with its keys renamed to the aligned key names, normalised, null keys dropped."""
    table = shipped_table(inp, index)
    keep = list(inp.columns) if columns is None else list(columns)
    arrays = [normalise_key(table.column(k), norm, f"{inp.name} key '{k}'") for k in inp.keys]
    names = key_names(len(inp.keys))
    out = pa.table(arrays + [table.column(c) for c in keep], names=names + keep)
    valid = None
    for name in names:
        present = pc.is_valid(out.column(name))
        valid = present if valid is None else pc.and_(valid, present)
    if valid is not None and out.num_rows and not pc.all(valid).as_py():
        out = out.filter(valid)
    return out


def distinct_keys(table: pa.Table, arity: int) -> pa.Table:
    """The set of key tuples in a keyed table."""
    return table.select(key_names(arity)).group_by(key_names(arity), use_threads=True).aggregate([])


def inner_join(inputs: Sequence[PartyInput], norm: KeyNormalisation, *, unique: bool,
               columns: Sequence[Sequence[str]] | None = None) -> pa.Table:
    """Inner join of every input on its keys; columns keep their names, keys the aligned names.

    With `unique`, a key repeated within one table is refused (one row per entity, as
    training and scoring need); without it, a repeated key joins to several rows.
    """
    arity = len(inputs[0].keys)
    names = key_names(arity)
    owners: dict[str, str] = {}
    joined: pa.Table | None = None
    for i, inp in enumerate(inputs):
        keep = list(inp.columns) if columns is None else list(columns[i])
        for column in keep:
            if column in owners:
                raise InputError(f"column '{column}' is shipped by both {owners[column]} and "
                                 f"{inp.name}; rename one so a joined row has one meaning",
                                 field=f"inputs[{i}].columns")
            owners[column] = inp.name
        table = keyed_table(inp, i, norm, keep)
        if unique and distinct_keys(table, arity).num_rows != table.num_rows:
            raise repeated_key_error(inp, i, table)
        if joined is None:
            joined = table
            continue
        for k in names:
            if joined.column(k).type != table.column(k).type:
                raise InputError(f"key types differ: {inputs[0].name} has {joined.column(k).type}, "
                                 f"{inp.name} has {table.column(k).type}; set params.normalise.type "
                                 "to str or int", field="params.normalise.type")
        try:
            joined = joined.join(table, keys=names, join_type="inner", use_threads=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InputError(f"cannot join {inp.name} on its keys: {exc}", field=f"inputs[{i}]") from None
    assert joined is not None
    return joined


def repeated_key_error(inp: PartyInput, index: int, table: pa.Table) -> InputError:
    """The error for a table whose keys repeat, saying so when the repeats are blank keys
    (an empty string is a key like any other to a join, which is rarely what was meant)."""
    for name, original in zip(key_names(len(inp.keys)), inp.keys):
        column = table.column(name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            blank = pc.sum(pc.equal(pc.utf8_trim_whitespace(column), "").cast(pa.int64())).as_py() or 0
            if blank > 1:
                return InputError(f"{inp.name}: key '{original}' is blank or empty in more than one row (expected "
                                  "one row per key; give each row its id, or leave the key null to leave the row "
                                  "out)", field=f"inputs[{index}].keys")
    return InputError(f"{inp.name}: a key appears in more than one row (expected one row per key)",
                      field=f"inputs[{index}].keys")


def unique_join_sorted(inputs: Sequence[PartyInput], norm: KeyNormalisation,
                       columns: Sequence[Sequence[str]] | None = None) -> pa.Table:
    """`inner_join(..., unique=True)` followed by `sort_by_keys`, in one pass.

    Single int64 keys (ids, or any key normalised with type int) take a sort-merge path in
    numpy: each input's keys are sorted once (which also finds a repeated key), the sorted
    key sets are intersected, and each input's rows are taken in key order. Same rows, same
    order, same column names as the general path, which any other key takes.
    """
    arity = len(inputs[0].keys)
    keep = [list(inp.columns) if columns is None else list(columns[i]) for i, inp in enumerate(inputs)]
    keyed = [keyed_table(inp, i, norm, keep[i]) for i, inp in enumerate(inputs)]
    if arity != 1 or not all(pa.types.is_int64(t.column(0).type) for t in keyed):
        return sort_by_keys(inner_join(inputs, norm, unique=True, columns=columns), arity)
    owners: dict[str, str] = {}
    for i, inp in enumerate(inputs):
        for column in keep[i]:
            if column in owners:
                raise InputError(f"column '{column}' is shipped by both {owners[column]} and "
                                 f"{inp.name}; rename one so a joined row has one meaning",
                                 field=f"inputs[{i}].columns")
            owners[column] = inp.name
    orders, sorted_keys = [], []
    for i, table in enumerate(keyed):
        keys = table.column(0).to_numpy()
        # Keys are unique (a repeat is refused just below), so every sort gives the same
        # order; numpy's default sort is about twice as fast as the stable one on int64.
        order = np.argsort(keys)
        ordered = keys[order]
        if ordered.size > 1 and bool(np.any(ordered[1:] == ordered[:-1])):
            raise InputError(f"{inputs[i].name}: a key appears in more than one row (expected one row per key)",
                             field=f"inputs[{i}].keys")
        orders.append(order)
        sorted_keys.append(ordered)
    common = sorted_keys[0]
    for ordered in sorted_keys[1:]:
        common = np.intersect1d(common, ordered, assume_unique=True)
    names = key_names(1)
    arrays, out_names = [pa.array(common, pa.int64())], list(names)
    for i, table in enumerate(keyed):
        rows = orders[i][np.searchsorted(sorted_keys[i], common)]
        # one chunk per column first: Arrow's take over many chunks costs more than the concatenation
        taken = table.select(keep[i]).combine_chunks().take(pa.array(rows, pa.int64()))
        arrays += list(taken.columns)
        out_names += keep[i]
    return pa.table(arrays, names=out_names)


def sort_by_keys(table: pa.Table, arity: int) -> pa.Table:
    """Rows in ascending key order, so results do not depend on any party's row order."""
    return table.sort_by([(k, "ascending") for k in key_names(arity)])


def with_key_names(table: pa.Table, names: Sequence[str]) -> pa.Table:
    """Aligned key columns renamed to a party's own key names."""
    mapping = dict(zip(key_names(len(names)), names))
    return table.rename_columns([mapping.get(n, n) for n in table.column_names])
