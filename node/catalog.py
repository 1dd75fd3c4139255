"""The node's catalog: the local tables named in its config, read as Arrow.

Sources: CSV, Parquet, a SQL query against SQLite, or against PostgreSQL (psycopg, with
the connection string taken from an environment variable so it never sits in a config).
Only the columns a job was granted are read, and batches are streamed so a large table
never has to fit in memory at once.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from teenet.errors import InputError

BATCH_ROWS = 65_536
READ_BUFFER_BYTES = 1 << 20  # Parquet read buffer: memory stays flat whatever the file's size


@dataclass(frozen=True)
class CatalogTable:
    name: str
    format: str
    path: Path | None
    query: str | None
    dsn_env: str | None


class Catalog:
    """The tables this node may offer, by name."""

    def __init__(self, tables: Mapping[str, CatalogTable]) -> None:
        self.tables = dict(tables)

    @classmethod
    def from_config(cls, sources: Mapping[str, object]) -> "Catalog":
        out = {}
        for name, src in sources.items():
            out[name] = CatalogTable(name, getattr(src, "format"), getattr(src, "path", None),
                                     getattr(src, "query", None), getattr(src, "dsn_env", None))
        return cls(out)

    def table(self, name: str) -> CatalogTable:
        try:
            return self.tables[name]
        except KeyError:
            raise InputError(f"table '{name}' is not in this node's catalog "
                             f"(it has: {', '.join(sorted(self.tables)) or 'none'})") from None

    def schema(self, name: str) -> pa.Schema:
        t = self.table(name)
        if t.format == "parquet":
            return pq.read_schema(_existing(t))
        if t.format == "csv":
            return pads.dataset(_existing(t), format="csv").schema
        first = next(self.batches(name, None), None)
        if first is None:
            raise InputError(f"table '{name}': the query returned no columns")
        return first.schema

    def columns(self, name: str) -> list[str]:
        return list(self.schema(name).names)

    def batches(self, name: str, columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
        """Stream the table's rows (only `columns`, in that order) as record batches. A
        source that turns out unreadable part-way (a CSV value that does not parse as its
        column's type, a truncated file) raises InputError naming the table."""
        t = self.table(name)
        try:
            yield from self._batches(t, columns)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            # The text (Arrow's, with the cell value) is for this owner's operator; `field`
            # (the column's name, when Arrow says which) is all a reason outside may carry.
            detail = " ".join(str(exc).split())[:300]
            raise InputError(f"table '{name}' cannot be read: {detail}", source=str(t.path) if t.path else None,
                             field=self._column_named_in(t, detail)) from None

    def _column_named_in(self, t: CatalogTable, detail: str) -> str | None:
        """The name of the column an Arrow CSV error points at ("CSV column #3"), if any."""
        match = re.search(r"CSV column #(\d+)", detail)
        if match is None or t.format != "csv":
            return None
        try:
            names = pads.dataset(_existing(t), format="csv").schema.names
        except (pa.ArrowInvalid, OSError, InputError):
            return None
        index = int(match.group(1))
        return names[index] if index < len(names) else None

    def _batches(self, t: CatalogTable, columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
        name = t.name
        cols = list(columns) if columns is not None else None
        if t.format == "parquet":
            yield from _parquet_batches(t, cols)
            return
        if t.format == "csv":
            ds = pads.dataset(_existing(t), format=pads.CsvFileFormat(
                read_options=pacsv.ReadOptions(block_size=8 << 20)))
            _check_columns(name, ds.schema.names, cols)
            yield from ds.to_batches(columns=cols, batch_size=BATCH_ROWS)
            return
        if t.format == "sqlite":
            yield from _sqlite_batches(t, cols)
            return
        if t.format == "postgres":
            yield from _postgres_batches(t, cols)
            return
        raise InputError(f"table '{name}': unknown format {t.format!r}")

    def read(self, name: str, columns: Sequence[str] | None = None) -> pa.Table:
        batches = list(self.batches(name, columns))
        if not batches:
            return pa.table({c: pa.array([], pa.null()) for c in (columns or [])})
        return pa.Table.from_batches(batches)


def _parquet_batches(t: CatalogTable, cols: list[str] | None) -> Iterator[pa.RecordBatch]:
    """A Parquet file one row group at a time, through a bounded read buffer.

    Arrow's dataset scanner reads row groups ahead of a slow consumer (an upload), so a data
    node's memory grew with the table; a buffered ParquetFile without pre-buffering holds
    one row group's granted columns at a time, whatever the file's size.
    """
    with pq.ParquetFile(_existing(t), buffer_size=READ_BUFFER_BYTES, pre_buffer=False) as source:
        _check_columns(t.name, source.schema_arrow.names, cols)
        for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=cols):
            # iter_batches yields the file's column order; a job gets the order it asked for.
            yield batch.select(cols) if cols is not None and batch.schema.names != cols else batch


def _existing(t: CatalogTable) -> str:
    if t.path is None or not Path(t.path).exists():
        raise InputError(f"table '{t.name}': file not found", source=str(t.path))
    return str(t.path)


def _check_columns(table: str, available: Sequence[str], wanted: Sequence[str] | None) -> None:
    if wanted is None:
        return
    missing = [c for c in wanted if c not in available]
    if missing:
        raise InputError(f"table '{table}' has no column(s) {', '.join(missing)} "
                         f"(it has: {', '.join(available)})")


# Rows held back while a column has been NULL in every row so far (its type unknown).
MAX_UNTYPED_ROWS = 16 * BATCH_ROWS


def _rows_to_batches(table: str, names: list[str], fetch: Callable[[int], list], cols: list[str] | None,
                     declared: Sequence[pa.DataType | None] | None = None,
                     convert: Sequence[Callable[[Any], Any] | None] | None = None) -> Iterator[pa.RecordBatch]:
    """Rows of a SQL result as record batches of one fixed schema.

    A column's type is the one the database declares (`declared`), else the one its first
    non-NULL values give it. Batches are held back while a column has been NULL in every row
    so far, up to MAX_UNTYPED_ROWS rows (then it stays the null type). Every later batch is
    cast to that type with a safe cast: a value that does not fit (2.5 in an integer column,
    text in a number column) is refused with the column and rows, never truncated. At least
    one batch is yielded, so an empty result still has its columns."""
    pick = cols if cols is not None else names
    idx = [names.index(c) for c in pick]
    types: list[pa.DataType | None] = [declared[i] if declared else None for i in idx]
    fixers = [convert[i] if convert else None for i in idx]
    held: list[tuple[int, list]] = []
    held_rows = emitted = row = 0

    def column(k: int, values: list, start: int, fixed: pa.DataType | None) -> pa.Array:
        where = f"table '{table}', column '{pick[k]}', rows {start + 1}..{start + len(values)}"
        fix = fixers[k]
        if fix is not None:
            values = [None if v is None else fix(v) for v in values]
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise InputError(f"{where}: values of different types ({str(exc)[:120]}); "
                             "CAST the column to one type in the query", field=pick[k]) from None
        if fixed is None or array.type == fixed:
            return array
        try:
            return array.cast(fixed, safe=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            known = ("is NULL in every earlier row, so it was typed null" if fixed == pa.null()
                     else f"is {fixed} from its first values")
            raise InputError(f"{where}: a value does not fit the column, which {known} "
                             f"({str(exc)[:120]}); CAST the column in the query", field=pick[k]) from None

    while True:
        rows = fetch(BATCH_ROWS)
        if rows:
            for k, i in enumerate(idx):
                if types[k] is None:
                    inferred = column(k, [r[i] for r in rows], row, None).type
                    types[k] = None if inferred == pa.null() else inferred
            held.append((row, rows))
            held_rows += len(rows)
            row += len(rows)
        if held and (not rows or all(t is not None for t in types) or held_rows >= MAX_UNTYPED_ROWS):
            types = [t if t is not None else pa.null() for t in types]  # from here on, fixed
            for start, chunk in held:
                yield pa.RecordBatch.from_arrays([column(k, [r[i] for r in chunk], start, types[k])
                                                  for k, i in enumerate(idx)], names=pick)
                emitted += 1
            held, held_rows = [], 0
        if not rows:
            break
    if not emitted:
        yield pa.RecordBatch.from_arrays([pa.array([], t if t is not None else pa.null()) for t in types],
                                         names=pick)


def _sqlite_batches(t: CatalogTable, cols: list[str] | None) -> Iterator[pa.RecordBatch]:
    path = _existing(t)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = conn.execute(t.query or "")
        names = [d[0] for d in cur.description or []]
        _check_columns(t.name, names, cols)
        yield from _rows_to_batches(t.name, names, cur.fetchmany, cols)
    except sqlite3.Error as exc:
        raise InputError(f"table '{t.name}': SQLite query failed: {exc}", source=path) from None
    finally:
        conn.close()


# PostgreSQL type OIDs (pg_type.oid) and the Arrow type each column of that type gets.
# NUMERIC becomes float64 (values converted from Decimal): models and aggregates compute
# in floating point. Other types take the type their first values give them.
_PG_NUMERIC = 1700
_PG_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(), 20: pa.int64(), 21: pa.int64(), 23: pa.int64(), 700: pa.float64(), 701: pa.float64(),
    _PG_NUMERIC: pa.float64(), 25: pa.string(), 1042: pa.string(), 1043: pa.string(), 19: pa.string(),
    1082: pa.date32(), 1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
}


def _postgres_batches(t: CatalogTable, cols: list[str] | None) -> Iterator[pa.RecordBatch]:
    try:
        import psycopg
    except ImportError:
        raise InputError(f"table '{t.name}': PostgreSQL support needs `pip install teenet[postgres]`") from None
    dsn = os.environ.get(t.dsn_env or "")
    if not dsn:
        raise InputError(f"table '{t.name}': environment variable {t.dsn_env} with the connection string is not set")
    try:
        with psycopg.connect(dsn) as conn, conn.cursor(name=f"teenet_{t.name}") as cur:
            cur.execute(t.query or "")
            first = cur.fetchmany(BATCH_ROWS)
            description = cur.description or []
            names = [d.name for d in description]
            _check_columns(t.name, names, cols)
            declared = [_PG_TYPES.get(d.type_code) for d in description]
            convert = [float if d.type_code == _PG_NUMERIC else None for d in description]
            pending = [first]

            def fetch(n: int) -> list:
                return pending.pop() if pending else cur.fetchmany(n)

            yield from _rows_to_batches(t.name, names, fetch, cols, declared, convert)
    except psycopg.Error as exc:
        raise InputError(f"table '{t.name}': PostgreSQL query failed: {exc.__class__.__name__}") from None
