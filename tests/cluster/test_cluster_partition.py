"""The placement definition `teenet/partition/v2` (teenet/cluster/partition.py, docs/format.md).

`reference` below is the definition written out row by row, independently of the vectorised
code (one AES block at a time, the CBC-MAC chained by hand); the vectorised placement must
agree with it on every kind of key, and frozen known-answer vectors pin the definition
itself, so it cannot drift silently (a data node and a worker of different versions would
refuse each other's partitions).
"""

from __future__ import annotations

import datetime
import decimal
import struct

import numpy as np
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from teenet.cluster.partition import check_partition, partition_rows
from teenet.errors import VerificationError
from teenet.models.tables import KeyNormalisation, normalise_key

KEY = bytes(range(32))
INT = KeyNormalisation(type="int")
KEEP = KeyNormalisation()


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _enc(value) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (int, str, bytes)):
        return b"v" + _lp(repr(value).encode())
    if isinstance(value, int):
        return b"i" + value.to_bytes(8, "big", signed=True)
    if isinstance(value, str):
        return b"s" + _lp(value.encode())
    return b"b" + _lp(value)


def reference(table: pa.Table, keys, norm, partition_key: bytes, parts: int) -> list[int]:
    """The docstring's definition, one row and one block at a time."""
    k = HKDF(hashes.SHA256(), 32, salt=b"\x00" * 32, info=b"teenet/partition/v2\x00aes-256").derive(partition_key)
    cols = [normalise_key(table.column(c), norm, c).to_pylist() for c in keys]
    out = []
    for row in zip(*cols):
        if any(v is None for v in row):
            out.append(0)
            continue
        m = b"".join(_enc(v) for v in row)
        p = struct.pack(">I", len(m)) + m
        p += b"\x00" * (-len(p) % 16)
        x = bytes(16)
        for j in range(0, len(p), 16):
            e = Cipher(algorithms.AES(k), modes.ECB()).encryptor()
            x = e.update(bytes(a ^ b for a, b in zip(x, p[j:j + 16]))) + e.finalize()
        out.append(int.from_bytes(x[:8], "big") % parts)
    return out


def _mixed() -> pa.Table:
    return pa.table({
        "i": pa.array([0, -1, 2**63 - 1, None, 7, 123456789] * 3, pa.int64()),
        "s": pa.array(["", "a", "é" * 40, "x" * 11, None, "twelve bytes"] * 3),
        "b": pa.array([b"\x00", b"", b"\xff" * 27, b"k", b"kk", None] * 3),
        "d": pa.array([datetime.date(2020, 1, d) for d in range(1, 7)] * 3),
        "f": pa.array([0.5, 1.0, -2.25, 3.0, 1e300, None] * 3),
        "m": pa.array([decimal.Decimal("1.50")] * 18, pa.decimal128(5, 2)),
        "t": pa.array([True, False, None] * 6),
    })


@pytest.mark.parametrize("keys", [["i"], ["s"], ["b"], ["d"], ["f"], ["m"], ["t"], ["i", "s"], ["s", "i", "b"],
                                  ["b", "d", "f", "m", "t"]])
def test_vectorised_placement_is_the_definition(keys):
    table = _mixed()
    for parts in (2, 3, 7):
        got = partition_rows(table, keys, KEEP, KEY, parts)
        assert list(got) == reference(table, keys, KEEP, KEY, parts)
    # a sliced, many-chunk input (offsets inside arrow buffers) places the same rows alike
    chunked = pa.concat_tables([table.slice(1, 5), table.slice(6, 12)])
    assert list(partition_rows(chunked, keys, KEEP, KEY, 5)) == reference(chunked, keys, KEEP, KEY, 5)


def test_known_answer_vectors():
    """Frozen: change them only with a new version of the definition."""
    ints = pa.table({"id": pa.array([0, 1, -1, 2**63 - 1, -2**63, 42], pa.int64())})
    assert list(partition_rows(ints, ["id"], KEEP, KEY, 1 << 30)) == KAT_INT
    strs = pa.table({"k": ["", "a", "Alice", "x" * 11, "x" * 12, "é" * 30]})
    assert list(partition_rows(strs, ["k"], KEEP, KEY, 1 << 30)) == KAT_STR
    pair = pa.table({"a": pa.array([1, 2], pa.int64()), "b": [b"\x00", b"bin"]})
    assert list(partition_rows(pair, ["a", "b"], KEEP, bytes(32), 1000)) == KAT_PAIR
    assert list(partition_rows(ints, ["id"], KEEP, KEY, 1 << 30)) == reference(ints, ["id"], KEEP, KEY, 1 << 30)
    assert list(partition_rows(strs, ["k"], KEEP, KEY, 1 << 30)) == reference(strs, ["k"], KEEP, KEY, 1 << 30)


def test_equal_normalised_keys_of_different_parties_meet():
    # one party ships text ids, another integers: under type int they are one key
    text = pa.table({"id": ["007", " 12", "-3", None]})
    ints = pa.table({"id": pa.array([7, 12, -3, 5], pa.int32())})
    a, b = partition_rows(text, ["id"], INT, KEY, 16), partition_rows(ints, ["id"], INT, KEY, 16)
    assert list(a[:3]) == list(b[:3]) and a[3] == 0
    # case and whitespace only when normalise says so
    lower = KeyNormalisation(case="lower", trim=True)
    one = pa.table({"k": ["  Alice", "BOB ", "carol"] * 50})
    two = pa.table({"k": ["alice", "bob", "CAROL"] * 50})
    assert (partition_rows(one, ["k"], lower, KEY, 64) == partition_rows(two, ["k"], lower, KEY, 64)).all()
    assert (partition_rows(one, ["k"], KEEP, KEY, 64) != partition_rows(two, ["k"], KEEP, KEY, 64)).any()


def test_composite_keys_nulls_and_keys():
    many = pa.table({"x": list(range(400)), "y": ["a"] * 400})
    swapped = pa.table({"x": ["a"] * 400, "y": list(range(400))})
    assert (partition_rows(many, ["x", "y"], KEEP, KEY, 4) != partition_rows(swapped, ["x", "y"], KEEP, KEY, 4)).any()
    # ("ab", "c") and ("a", "bc") are different keys: the encoding is self-delimiting
    split = pa.table({"p": ["ab", "a"] * 200, "q": ["c", "bc"] * 200})
    got = partition_rows(split, ["p", "q"], KEEP, KEY, 1 << 30)
    assert got[0] != got[1]
    nulls = pa.table({"x": pa.array([1, None, 3], pa.int64()), "y": ["a", "b", None]})
    assert list(partition_rows(nulls, ["x", "y"], KEEP, KEY, 8000)[1:]) == [0, 0]
    ids = pa.table({"id": np.arange(20000)})
    one, other = (partition_rows(ids, ["id"], INT, k, 8) for k in (KEY, bytes(32)))
    assert (one != other).mean() > 0.8  # another job's key places rows elsewhere (7/8 expected)


def test_placement_is_roughly_uniform():
    n, parts = 80000, 8
    for table, keys in ((pa.table({"id": np.arange(n)}), ["id"]),
                        (pa.table({"id": [f"user-{i}" for i in range(n)]}), ["id"])):
        counts = np.bincount(partition_rows(table, keys, KEEP, KEY, parts), minlength=parts)
        expected = n / parts
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 30, counts  # 7 degrees of freedom: p < 1e-4 for a fair placement


def test_the_workers_check_uses_the_same_placement():
    ids = pa.table({"id": [f"c{i}" for i in range(3000)]})
    where = partition_rows(ids, ["id"], KEEP, KEY, 3)
    mine = ids.filter(pa.array(where == 1))
    check_partition(mine, ["id"], KEEP, KEY, 3, 1, where="p/t")
    with pytest.raises(VerificationError) as refused:
        check_partition(ids.filter(pa.array(where != 2)), ["id"], KEEP, KEY, 3, 1, where="p/t")
    assert refused.value.check == "cluster.partition" and "c1" not in str(refused.value)


# computed from the definition (`reference`) once, then frozen
KAT_INT = [456322309, 808239860, 345310918, 713295675, 863946528, 286483739]
KAT_STR = [70330104, 133379148, 1027703102, 805767684, 759102491, 988424976]
KAT_PAIR = [152, 335]


def test_a_table_placed_in_slices_is_placed_as_a_whole(monkeypatch):
    from teenet.cluster import partition

    table = pa.concat_tables([_mixed()] * 3)
    whole = {keys: partition_rows(table, keys, KEEP, KEY, 5) for keys in (("i",), ("s", "i"))}
    monkeypatch.setattr(partition, "_SLICE", 7)  # many passes, each starting mid-chunk
    for keys, expected in whole.items():
        assert (partition_rows(table, list(keys), KEEP, KEY, 5) == expected).all()
