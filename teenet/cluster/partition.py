"""Where a row goes on a compute cluster: a keyed hash of its normalised join key.

    partition(row) = int(first 8 bytes of HMAC-SHA256(partition_key,
                         "teenet/partition/v1" 0x00 || enc(k_1) || ... || enc(k_n)), big-endian) mod N

where k_1..k_n are the row's key columns after the job's `params.normalise` (exactly
teenet.models.tables.normalise_key, which the enclave functions join on), and enc is

    int64           "i" || 8-byte big-endian two's complement
    string          "s" || lp(UTF-8)
    binary          "b" || lp(bytes)
    anything else   "v" || lp(UTF-8 of the value's Python repr)  (dates, floats, decimals, bool)

(lp(x) = 4-byte big-endian length || x). A row with a null key component never matches
anything; it goes to partition 0. A table without key columns is split by row number
(row i of the stream to partition i mod N): nothing joins on it. The partition key is made
per job by the leader (inside its enclave) and reaches the owners only HPKE-sealed, so
where a row lands says nothing about its key to anyone without the key.

The data node splits with `partition_rows`; each worker checks with the same function that
every row it received belongs to its own partition (check `cluster.partition`).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from teenet.errors import InputError, VerificationError

_DOMAIN = b"teenet/partition/v1\x00"


def job_normalisation(params: Mapping[str, Any]):
    """The job's key normalisation, parsed by teenet.models exactly as its functions parse it."""
    from teenet.models.params import ParamReader
    from teenet.models.tables import KeyNormalisation

    return KeyNormalisation.parse(ParamReader(dict(params)).section("normalise"))


def _encode(value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (int, str, bytes)):
        data = repr(value).encode()
        return b"v" + struct.pack(">I", len(data)) + data
    if isinstance(value, int):
        return b"i" + value.to_bytes(8, "big", signed=True)
    if isinstance(value, str):
        data = value.encode()
        return b"s" + struct.pack(">I", len(data)) + data
    return b"b" + struct.pack(">I", len(value)) + value


def partition_rows(batch: pa.RecordBatch | pa.Table, keys: Sequence[str], norm, partition_key: bytes,
                   parts: int, *, first_row: int = 0, where: str = "table") -> np.ndarray:
    """Per row of `batch`, its partition (0..parts-1). `first_row` is the row number of the
    batch's first row in the whole stream (used only for a table without keys)."""
    from teenet.models.tables import normalise_key

    n = batch.num_rows
    if parts == 1:
        return np.zeros(n, dtype=np.int64)
    if not keys:
        return (np.arange(first_row, first_row + n, dtype=np.int64) % parts)
    columns = []
    for k in keys:
        values = batch.column(k)
        if isinstance(values, pa.Array):
            values = pa.chunked_array([values], type=values.type)
        columns.append(normalise_key(values, norm, f"{where} key '{k}'").to_pylist())
    out = np.zeros(n, dtype=np.int64)
    mac = hmac.new(partition_key, _DOMAIN, "sha256")
    for i, row in enumerate(zip(*columns)):
        if any(v is None for v in row):
            continue
        h = mac.copy()
        h.update(b"".join(_encode(v) for v in row))
        out[i] = int.from_bytes(h.digest()[:8], "big") % parts
    return out


def check_partition(table: pa.Table, keys: Sequence[str], norm, partition_key: bytes, parts: int,
                    index: int, *, where: str) -> None:
    """Refuse (`cluster.partition`) a table holding a row of another partition. A keyless
    table is not checked by row (its split is by row number, which the worker cannot see)."""
    if not keys or parts == 1:
        return
    got = partition_rows(table, keys, norm, partition_key, parts, where=where)
    wrong = int((got != index).sum())
    if wrong:
        raise VerificationError("cluster.partition", f"{where} holds rows of another partition "
                                f"(this worker holds partition {index} of {parts})")


def partition_table_name(table: str, index: int, parts: int) -> str:
    """The name a partition's key envelope and sealed stream are bound to: `<table>#<i>/<N>`."""
    return f"{table}#{index}/{parts}"


def parse_partition_table_name(name: str) -> tuple[str, int, int]:
    """(table, i, N) from `<table>#<i>/<N>`, or InputError."""
    table, sep, tail = name.rpartition("#")
    index, slash, parts = tail.partition("/")
    if not (sep and slash and table and index.isdigit() and parts.isdigit()):
        raise InputError(f"expected a partition name <table>#<i>/<N>, found {name[:80]!r}", field="table")
    return table, int(index), int(parts)


def clustered_root(partition_roots: Sequence[bytes]) -> bytes:
    """A clustered table's lineage fingerprint: the RFC 9162 root whose leaves are the
    partition roots in partition order (leaf hash = SHA-256(0x00 || partition root))."""
    from teenet.tlog import MerkleTree, leaf_hash

    return MerkleTree(leaf_hash(bytes(r)) for r in partition_roots).root()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
