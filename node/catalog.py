"""The node's catalog: the local tables named in its config, read as Arrow.

Sources: CSV, Parquet, a SQL query against SQLite, or against PostgreSQL (psycopg, with
the connection string taken from an environment variable so it never sits in a config).
Only the columns a job was granted are read, and batches are streamed so a large table
never has to fit in memory at once.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

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
        """Stream the table's rows (only `columns`, in that order) as record batches."""
        t = self.table(name)
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


def _rows_to_batches(names: list[str], rows_iter, cols: list[str] | None) -> Iterator[pa.RecordBatch]:
    pick = cols if cols is not None else names
    idx = [names.index(c) for c in pick]
    while True:
        rows = rows_iter(BATCH_ROWS)
        if not rows:
            return
        arrays = [pa.array([r[i] for r in rows]) for i in idx]
        yield pa.RecordBatch.from_arrays(arrays, names=pick)


def _sqlite_batches(t: CatalogTable, cols: list[str] | None) -> Iterator[pa.RecordBatch]:
    path = _existing(t)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = conn.execute(t.query or "")
        names = [d[0] for d in cur.description or []]
        _check_columns(t.name, names, cols)
        yield from _rows_to_batches(names, cur.fetchmany, cols)
    except sqlite3.Error as exc:
        raise InputError(f"table '{t.name}': SQLite query failed: {exc}", source=path) from None
    finally:
        conn.close()


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
            names = [d.name for d in cur.description or []]
            _check_columns(t.name, names, cols)
            pending = [first]

            def fetch(n: int) -> list:
                return pending.pop() if pending else cur.fetchmany(n)

            yield from _rows_to_batches(names, fetch, cols)
    except psycopg.Error as exc:
        raise InputError(f"table '{t.name}': PostgreSQL query failed: {exc.__class__.__name__}") from None
