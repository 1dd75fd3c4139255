"""Where a row goes on a compute cluster: a keyed PRF of its normalised join key.

Definition `teenet/partition/v2` (v1, an HMAC per row in Python, is gone):

    K      = HKDF-SHA256(ikm = partition key, salt = empty (RFC 5869: 32 zero bytes),
                         info = "teenet/partition/v2" 0x00 "aes-256", length = 32)
    M      = enc(k_1) || ... || enc(k_n)
    P      = be32(len(M)) || M || 0x00 * (to a multiple of 16 bytes)
    X_1    = AES-256_K(P_1),   X_j = AES-256_K(X_{j-1} XOR P_j)      (P_j: the j-th 16-byte block)
    partition(row) = (first 8 bytes of X_last, big-endian unsigned) mod N

where k_1..k_n are the row's key columns after the job's `params.normalise` (exactly
teenet.models.tables.normalise_key, which the enclave functions join on), and enc is

    int64           "i" || 8-byte big-endian two's complement
    string          "s" || lp(UTF-8)
    binary          "b" || lp(bytes)
    anything else   "v" || lp(UTF-8 of the value's Python repr)  (dates, floats, decimals, bool)

(lp(x) = be32(len(x)) || x, be32 = 4-byte big-endian). A row with a null key component
never matches anything; it goes to partition 0. A table without key columns is split by
row number (row i of the stream to partition i mod N): nothing joins on it.

So a single int64 key is one AES block, `00 00 00 09 "i" be64(v) 00 00 00`, and the whole
placement is one AES-ECB call over the table's blocks; longer keys are a CBC-MAC, run for
all rows at once block index by block index (one ECB call per block index).

Why this is as good as HMAC for placement. The threat is an observer (the coordinator, a
worker's host, a member that is not an input of the job) learning something about keys from
which partition a row landed in. The partition key is made per job inside the leader's
enclave and reaches the job's input owners only HPKE-sealed, so the observer does not have
K. The job's other input owners do hold K (they must place their rows the same way), so
what each owner's partition sizes are must not reach them: docs/threat-model.md says where
those sizes are kept and what a network observer still sees. AES-256 under an unknown key is a
pseudorandom permutation; on distinct inputs a PRP is indistinguishable from a random
function (switching lemma: advantage <= q^2 / 2^129 for q blocks). CBC-MAC over a
prefix-free message set is a PRF (Bellare-Kilian-Rogaway; Petrank-Rackoff), and P is
prefix-free: it starts with the length of M, so two messages of different length differ in
the first block and two of the same length have the same number of blocks; P is also
injective in the key tuple (enc is self-delimiting). So without K a row's partition is
pseudorandom, exactly what HMAC-SHA256 gave: equal keys share a partition (that is the
point), and nothing else about a key follows from it. Truncating to 64 bits and reducing
mod N (N <= a few thousand) leaves a bias below N / 2^64.

The data node splits with `partition_rows`; each worker checks with the same function that
every row it received belongs to its own partition (check `cluster.partition`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from teenet.errors import InputError, VerificationError

_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII digits only (str.isdigit takes "²" and "٣")

VERSION = "teenet/partition/v2"
_INFO = VERSION.encode() + b"\x00aes-256"
_SLICE = 1 << 20  # rows placed per pass


def job_normalisation(params: Mapping[str, Any]):
    """The job's key normalisation, parsed by teenet.models exactly as its functions parse it."""
    from teenet.models.params import ParamReader
    from teenet.models.tables import KeyNormalisation

    return KeyNormalisation.parse(ParamReader(dict(params)).section("normalise"))


def placement_key(partition_key: bytes) -> bytes:
    """K of the definition: the AES-256 key derived from the job's partition key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(bytes(partition_key))


def _column(values: pa.Array) -> tuple[list, np.ndarray, np.ndarray | None]:
    """A normalised key column as the definition's enc: (pieces, enc length per row, null
    mask or None). A piece is an (n, w) uint8 matrix or a large_binary array; a row's enc
    is its pieces end to end. No Python loop where the type allows it."""
    n = len(values)
    nulls = values.is_null().to_numpy(zero_copy_only=False) if values.null_count else None
    kind = values.type
    if pa.types.is_int64(kind):
        fixed = np.empty((n, 9), dtype=np.uint8)
        fixed[:, 0] = ord("i")
        fixed[:, 1:] = values.fill_null(0).to_numpy(zero_copy_only=False).astype(">i8").view(np.uint8).reshape(n, 8)
        return [fixed], np.full(n, 9, dtype=np.int64), nulls
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        tag, data = b"s", values.cast(pa.large_string()).view(pa.large_binary())
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        tag, data = b"b", values.cast(pa.large_binary())
    else:  # dates, floats, decimals, bool, ...: the repr of each value (rare as join keys)
        tag, data = b"v", pa.array([b"" if v is None else repr(v).encode() for v in values.to_pylist()],
                                   pa.large_binary())
    if data.null_count:
        data = data.fill_null(b"")
    lengths = pc.binary_length(data).to_numpy(zero_copy_only=False).astype(np.int64)
    head = np.empty((n, 5), dtype=np.uint8)
    head[:, 0] = tag[0]
    head[:, 1:] = _be32(lengths)
    return [head, data], lengths + 5, nulls


def _be32(x: np.ndarray) -> np.ndarray:
    return x.astype(">u4").view(np.uint8).reshape(-1, 4)


def _binary(matrix: np.ndarray) -> pa.Array:
    n, w = matrix.shape
    offsets = np.arange(n + 1, dtype=np.int64) * w
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets),
                                                        pa.py_buffer(np.ascontiguousarray(matrix))])


def _messages(columns: list, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The padded messages P of every row laid end to end: (blocks (total, 16) uint8,
    first block of each row, block count of each row)."""
    length = sum(size for _, size, _ in columns)
    count = (length + 4 + 15) // 16
    pad = count * 16 - 4 - length
    flat = [_be32(length)] + [piece for column, _, _ in columns for piece in column]
    if all(isinstance(p, np.ndarray) for p in flat):  # every component fixed-width: one matrix
        width = int(count[0]) * 16 if n else 16
        matrix = np.zeros((n, width), dtype=np.uint8)
        at = 0
        for piece in flat:
            matrix[:, at:at + piece.shape[1]] = piece
            at += piece.shape[1]
        return matrix.reshape(-1, 16), np.arange(n, dtype=np.int64) * (width // 16), count
    pieces: list = []
    for piece in flat:  # neighbouring fixed-width pieces become one matrix
        if isinstance(piece, np.ndarray) and pieces and isinstance(pieces[-1], np.ndarray):
            pieces[-1] = np.hstack([pieces[-1], piece])
        else:
            pieces.append(piece)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(pad, out=offsets[1:])
    pieces.append(pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets),
                                                               pa.py_buffer(bytes(int(offsets[-1])))]))
    joined = pc.binary_join_element_wise(*(_binary(p) if isinstance(p, np.ndarray) else p for p in pieces),
                                         pa.scalar(b"", pa.large_binary()))
    buffers = joined.buffers()
    starts = np.frombuffer(buffers[1], dtype=np.int64)[joined.offset:joined.offset + n]
    data = np.frombuffer(buffers[2], dtype=np.uint8)
    base = int(starts[0]) if n else 0
    blocks = data[base:base + int(count.sum()) * 16].reshape(-1, 16)
    return blocks, (starts - base) // 16, count


def _ecb(aes_key: bytes):
    encrypt = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor()

    def ecb(blocks: np.ndarray) -> np.ndarray:
        return np.frombuffer(encrypt.update(np.ascontiguousarray(blocks).data), dtype=np.uint8).reshape(-1, 16)

    return ecb


def _prf_int64(aes_key: bytes, values: pa.Array) -> np.ndarray:
    """_prf for one int64 key, the block `00 00 00 09 'i' be64(v) 00 00 00` built as two
    big-endian 64-bit words (the same bytes as _messages builds, only faster)."""
    v = values.fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64)
    words = np.empty((len(v), 2), dtype=">u8")
    words[:, 0] = np.uint64(0x0000000969 << 24) | (v >> np.uint64(40))
    words[:, 1] = v << np.uint64(24)
    state = _ecb(aes_key)(words.view(np.uint8))
    return state.view(">u8").reshape(-1, 2)[:, 0]


def _prf(aes_key: bytes, columns: list, n: int) -> np.ndarray:
    """The first 8 bytes of each row's CBC-MAC as uint64."""
    ecb = _ecb(aes_key)
    blocks, first, count = _messages(columns, n)
    if n and int(count.max()) == 1:  # e.g. one int64 key: one ECB call over the table
        state = ecb(blocks)
    else:
        state = ecb(blocks[first]).copy()
        for j in range(1, int(count.max()) if n else 0):
            rows = np.flatnonzero(count > j)
            state[rows] = ecb(state[rows] ^ blocks[first[rows] + j])
    return np.ascontiguousarray(state).view(">u8").reshape(-1, 2)[:, 0]


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
        columns.append(normalise_key(values, norm, f"{where} key '{k}'").combine_chunks())
    aes_key = placement_key(partition_key)
    out = np.zeros(n, dtype=np.int64)
    for lo in range(0, n, _SLICE):  # bounded scratch memory on a large table
        hi = min(n, lo + _SLICE)
        if len(columns) == 1 and pa.types.is_int64(columns[0].type):
            values = columns[0].slice(lo, hi - lo)
            null = values.is_null().to_numpy(zero_copy_only=False) if values.null_count else None
            prf = _prf_int64(aes_key, values)
        else:
            encoded = [_column(c.slice(lo, hi - lo)) for c in columns]
            null = None
            for _, _, mask in encoded:
                if mask is not None:
                    null = mask if null is None else (null | mask)
            prf = _prf(aes_key, encoded, hi - lo)
        got = (prf % np.uint64(parts)).astype(np.int64)
        if null is not None:
            got[null] = 0
        out[lo:hi] = got
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
    if not (sep and slash and table and _DIGITS.fullmatch(index) and _DIGITS.fullmatch(parts)):
        raise InputError(f"expected a partition name <table>#<i>/<N>, found {name[:80]!r}", field="table")
    return table, int(index), int(parts)


def clustered_root(partition_roots: Sequence[bytes]) -> bytes:
    """A clustered table's lineage fingerprint: the RFC 9162 root whose leaves are the
    partition roots in partition order (leaf hash = SHA-256(0x00 || partition root))."""
    from teenet.tlog import MerkleTree, leaf_hash

    return MerkleTree(leaf_hash(bytes(r)) for r in partition_roots).root()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
