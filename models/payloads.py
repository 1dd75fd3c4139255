"""Encoding released results: JSON (strict, finite, sorted keys) and Arrow IPC streams."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa

from teenet.models.spec import MEDIA_ARROW, MEDIA_JSON, Output


def json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def json_output(document: dict[str, Any], summary: dict[str, Any] | None = None) -> Output:
    body = json_safe(document)
    payload = json.dumps(body, sort_keys=True, allow_nan=False, separators=(",", ":")).encode()
    return Output(MEDIA_JSON, payload, json_safe(summary if summary is not None else {}))


def arrow_output(table: pa.Table, summary: dict[str, Any]) -> Output:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return Output(MEDIA_ARROW, sink.getvalue().to_pybytes(), json_safe(summary))


def read_arrow(payload: bytes) -> pa.Table:
    """The table in an Arrow IPC stream payload (for recipients and tests)."""
    with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
        return reader.read_all()
