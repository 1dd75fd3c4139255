"""Benchmark data: PSI id sets and a vertically split training table, written as Parquet.

Everything is generated from a seed, in slices, so a 100M-row id set never has to sit in
memory as Python objects. Ids come from a bijection of the 64-bit integers (multiply by an
odd constant, wrap), so they are distinct, spread over the whole range and in no order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SLICE = 1 << 20          # rows generated and written at a time (one Parquet row group)
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplication mod 2^64 is a bijection


def scrambled_ids(start: int, stop: int, salt: int) -> np.ndarray:
    """Distinct int64 ids for the positions start..stop-1 (same position, same id)."""
    positions = np.arange(start, stop, dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed = positions * _MULT + np.uint64(salt)
    return mixed.view(np.int64)


@dataclass(frozen=True)
class PsiSets:
    left: Path
    right: Path
    rows: int
    overlap: int


def write_psi_sets(directory: Path, rows: int, overlap_fraction: float = 0.5, salt: int = 12345) -> PsiSets:
    """Two id sets of `rows` ids each sharing overlap_fraction of them (one column, customer_id).

    Left holds positions 0..rows-1, right positions (1-f)*rows .. (2-f)*rows-1, so exactly
    f*rows ids are common. Each file is written in row groups of SLICE rows.
    """
    directory.mkdir(parents=True, exist_ok=True)
    shift = rows - int(round(rows * overlap_fraction))
    paths = []
    for name, first in (("left", 0), ("right", shift)):
        path = directory / f"ids-{rows}-{name}.parquet"
        schema = pa.schema([("customer_id", pa.int64())])
        with pq.ParquetWriter(path, schema, compression="snappy") as writer:
            for lo in range(0, rows, SLICE):
                hi = min(rows, lo + SLICE)
                ids = scrambled_ids(first + lo, first + hi, salt)
                writer.write_table(pa.table({"customer_id": ids}, schema=schema), row_group_size=SLICE)
        paths.append(path)
    return PsiSets(paths[0], paths[1], rows, rows - shift)


def read_id_strings(path: Path) -> list[str]:
    """The ids of one set as decimal strings (what a string-keyed PSI library takes)."""
    ids = pq.read_table(path, columns=["customer_id"]).column(0).to_numpy()
    return ids.astype(str).tolist()


@dataclass(frozen=True)
class TrainingSet:
    paths: dict[str, Path]          # party -> parquet
    columns: dict[str, list[str]]   # party -> feature columns (bank's also has the label)
    rows: int
    label: str = "defaulted"
    key: str = "customer_id"


PARTY_PREFIX = {"bank": "b", "telco": "t", "insurer": "i"}


def write_training_set(directory: Path, rows: int, features_per_party: int = 10, seed: int = 7) -> TrainingSet:
    """Three parties' halves (thirds) of one population: the same customers, different columns.

    Every party holds every customer, each in its own row order. The label (at the bank)
    depends on a few features of each party, so a joint model is needed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = scrambled_ids(0, rows, salt=987654321)
    logit = np.full(rows, -0.8)
    tables: dict[str, dict[str, np.ndarray]] = {}
    columns: dict[str, list[str]] = {}
    for p, (party, prefix) in enumerate(PARTY_PREFIX.items()):
        data: dict[str, np.ndarray] = {}
        for j in range(features_per_party):
            name = f"{prefix}{j:02d}"
            x = rng.standard_normal(rows) if j % 3 else rng.gamma(2.0, 1.0, rows)
            data[name] = np.round(x, 4)
            if j < 3:
                logit += (0.6 - 0.2 * j) * (1 if (p + j) % 2 == 0 else -1) * (x - x.mean()) / x.std()
        tables[party] = data
        columns[party] = list(data)
    label = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int32)
    tables["bank"]["defaulted"] = label
    columns["bank"].append("defaulted")
    paths = {}
    for party, data in tables.items():
        order = rng.permutation(rows)  # each party ships its rows in its own order
        table = pa.table({"customer_id": ids[order], **{k: v[order] for k, v in data.items()}})
        path = directory / f"train-{rows}-{party}.parquet"
        pq.write_table(table, path, row_group_size=SLICE)
        paths[party] = path
    return TrainingSet(paths, columns, rows)
