"""Fuzzing the sealed-chunk reader: random messages, and real sealed streams with bytes
flipped, cut, inserted, and messages dropped, duplicated, swapped or replaced.

Only a SealingError (a TeenetError) may come out, and whatever the reader accepts must be
exactly the table that was sealed: a mutation either changes nothing the reader relies on
or is refused. Nothing partial is ever returned by read_table."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import strategies as st

from fuzz_counts import fuzz, mutate, run_target
from teenet.sealing import SealedTableReader, StreamBinding, TableKey, seal_table

KEY = TableKey.from_secret_bytes(bytes(range(32)))
BINDING = StreamBinding(bytes.fromhex("ab" * 32), "bank", "customers")
TABLE = pa.table({"customer_id": pa.array(range(10_000_000, 10_000_040), pa.int64()),
                  "region": pa.array(["north", "south", None, "east"] * 10),
                  "income": pa.array([1000.5 * i for i in range(40)])})
# 256-byte chunks: a 40-row table makes a dozen chunks, so chunk-level faults have room.
MESSAGES = list(seal_table(TABLE, KEY, BINDING, chunk_size=256))
FAST, SLOW = 400, 4000


def _read(messages):
    return lambda: SealedTableReader(KEY, BINDING).read_table(iter(messages))


def _stream_mutation(data, msgs: list[bytes]) -> list[bytes]:
    msgs = list(msgs)
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(("bytes", "bytes", "drop", "dup", "swap", "replace", "insert",
                                        "cut", "splice")))
        i = data.draw(st.integers(0, len(msgs) - 1)) if msgs else 0
        if not msgs:
            msgs.append(data.draw(st.binary(max_size=600)))
        elif op == "bytes":
            msgs[i] = mutate(data, msgs[i])
        elif op == "drop":
            del msgs[i]
        elif op == "dup":
            msgs.insert(i, msgs[i])
        elif op == "swap":
            j = data.draw(st.integers(0, len(msgs) - 1))
            msgs[i], msgs[j] = msgs[j], msgs[i]
        elif op == "replace":
            msgs[i] = data.draw(st.binary(max_size=600))
        elif op == "insert":
            msgs.insert(i, data.draw(st.binary(max_size=600)))
        elif op == "cut":
            del msgs[i:]
        else:  # a chunk from another stream of the same table, key and binding (another salt)
            other = list(seal_table(TABLE, KEY, BINDING, chunk_size=256))
            j = data.draw(st.integers(0, len(other) - 1))
            msgs[i] = other[j]
    return msgs


def _one_example(data, counter):
    kind = data.draw(st.sampled_from(("random", "mutated", "mutated", "mutated")))
    if kind == "random":
        msgs = data.draw(st.lists(st.binary(max_size=700), max_size=6))
    else:
        msgs = _stream_mutation(data, MESSAGES)
    accepted, table = run_target(counter, _read(msgs))
    if accepted:
        assert table.equals(TABLE), "the reader accepted an altered stream and returned other data"
        assert msgs == MESSAGES, "the reader accepted a stream that differs from the sealed one"


def _fuzz(name: str, examples: int) -> None:
    counter = fuzz(name, examples, _one_example)
    assert counter.refused.get("SealingError", 0) >= examples * 0.5, counter


def test_the_unmutated_stream_reads_back():
    assert len(MESSAGES) >= 6
    assert SealedTableReader(KEY, BINDING).read_table(iter(MESSAGES)).equals(TABLE)


def test_fuzz_sealed_reader():
    _fuzz("sealed-chunk reader", FAST)


@pytest.mark.slow
def test_fuzz_sealed_reader_long():
    _fuzz("sealed-chunk reader (long)", SLOW)
