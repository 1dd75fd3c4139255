"""Tables and comparisons shared by the sealing tests."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import numpy as np
import pyarrow as pa

from teenet.sealing import StreamBinding, TableKey

JOB = bytes.fromhex("11" * 32)
OTHER_JOB = bytes.fromhex("22" * 32)
BINDING = StreamBinding(JOB, "bank-a", "loans")


def key() -> TableKey:
    return TableKey.from_secret_bytes(bytes(range(32)))


def same_values(a: object, b: object) -> bool:
    """Deep equality where NaN equals NaN (Arrow's own equals says it does not)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_same_table(got: pa.Table, want: pa.Table) -> None:
    assert got.schema.equals(want.schema, check_metadata=True), f"{got.schema}\n!=\n{want.schema}"
    assert got.num_rows == want.num_rows
    for i, name in enumerate(want.column_names):  # by position: names may repeat
        assert same_values(got.column(i).to_pylist(), want.column(i).to_pylist()), name


def many_types_table(rows: int = 50) -> pa.Table:
    """One column of each kind a data owner ships, nulls in most."""
    rng = np.random.default_rng(3)
    ints = [int(v) if i % 7 else None for i, v in enumerate(rng.integers(-2**62, 2**62, rows))]
    floats = [float("nan") if i % 5 == 0 else (None if i % 11 == 0 else float(v))
              for i, v in enumerate(rng.standard_normal(rows))]
    words = ["Zürich", "東京", "🙂 emoji", "", "plain", None]
    tz = dt.timezone(dt.timedelta(hours=2))
    fields = {
        "i8": pa.array([i % 100 - 50 for i in range(rows)], pa.int8()),
        "u64": pa.array([2**64 - 1 - i for i in range(rows)], pa.uint64()),
        "i64": pa.array(ints, pa.int64()),
        "f32": pa.array([1.5 * i for i in range(rows)], pa.float32()),
        "f64": pa.array(floats, pa.float64()),
        "text": pa.array([words[i % len(words)] for i in range(rows)], pa.string()),
        "large_text": pa.array([words[(i + 1) % len(words)] for i in range(rows)], pa.large_string()),
        "blob": pa.array([bytes([i % 256]) * (i % 4) if i % 9 else None for i in range(rows)], pa.binary()),
        "flag": pa.array([None if i % 6 == 0 else i % 2 == 0 for i in range(rows)], pa.bool_()),
        "nothing": pa.nulls(rows),
        "when": pa.array([dt.datetime(2024, 1, 1, 12, tzinfo=tz) + dt.timedelta(minutes=i) for i in range(rows)],
                         pa.timestamp("us", tz="Europe/Oslo")),
        "day": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(rows)], pa.date32()),
        "amount": pa.array([Decimal(i) / 100 if i % 4 else None for i in range(rows)], pa.decimal128(12, 2)),
        "segment": pa.array([["retail", "corporate", None][i % 3] for i in range(rows)]).dictionary_encode(),
        "tags": pa.array([[f"t{j}" for j in range(i % 3)] if i % 8 else None for i in range(rows)],
                         pa.list_(pa.string())),
        "address": pa.array([{"zip": i, "street": f"gate {i}"} if i % 10 else None for i in range(rows)],
                            pa.struct([("zip", pa.int32()), ("street", pa.string())])),
        "limits": pa.array([{"a": 1.0, "b": float(i)} if i % 2 else {} for i in range(rows)],
                           pa.map_(pa.string(), pa.float64())),
    }
    table = pa.table(fields)
    return table.replace_schema_metadata({"owner": "bank-a", "note": "ümlaut"})
