"""Sealed tables come back exactly: every column type, any chunking, any batching."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sealing_tables import BINDING, assert_same_table, key, many_types_table
from teenet.sealing import (CHUNK_OVERHEAD, DEFAULT_CHUNK_SIZE, MAX_HEADER_SIZE, SealedTableReader,
                            SealedTableWriter, seal_table)


def roundtrip(table: pa.Table, chunk_size: int = DEFAULT_CHUNK_SIZE) -> pa.Table:
    return SealedTableReader(key(), BINDING).read_table(seal_table(table, key(), BINDING, chunk_size))


@pytest.mark.parametrize("chunk_size", [64, 1000, DEFAULT_CHUNK_SIZE])
def test_many_types_round_trip_exactly(chunk_size: int) -> None:
    table = many_types_table()
    assert_same_table(roundtrip(table, chunk_size), table)


def test_field_metadata_and_schema_metadata_survive() -> None:
    schema = pa.schema([pa.field("x", pa.int32(), metadata={"unit": "NOK"})], metadata={"v": "1"})
    table = pa.table({"x": [1, 2]}, schema=schema)
    got = roundtrip(table)
    assert got.schema.field("x").metadata == {b"unit": b"NOK"}
    assert got.schema.metadata == {b"v": b"1"}


def test_empty_table_round_trips_with_its_schema() -> None:
    table = many_types_table().slice(0, 0)
    got = roundtrip(table)
    assert got.num_rows == 0
    assert got.schema.equals(table.schema, check_metadata=True)


def test_table_without_columns_round_trips() -> None:
    table = pa.table({})
    assert roundtrip(table).num_columns == 0


def test_a_table_spans_many_chunks_and_every_message_is_bounded() -> None:
    table = pa.table({"id": np.arange(20_000), "name": [f"customer-{i}" for i in range(20_000)]})
    messages = list(seal_table(table, key(), BINDING, chunk_size=256))
    assert len(messages) > 1000
    assert len(messages[0]) <= MAX_HEADER_SIZE
    assert all(len(m) == 256 + CHUNK_OVERHEAD for m in messages[1:-1])
    assert len(messages[-1]) <= 256 + CHUNK_OVERHEAD
    assert_same_table(SealedTableReader(key(), BINDING).read_table(messages), table)


def test_default_chunks_stay_well_under_grpc_4_mib() -> None:
    table = pa.table({"v": np.random.default_rng(1).standard_normal(600_000)})  # ~4.6 MiB
    messages = list(seal_table(table, key(), BINDING))
    assert len(messages) >= 6
    assert max(len(m) for m in messages) == DEFAULT_CHUNK_SIZE + CHUNK_OVERHEAD < 4 * 2**20


def test_batches_of_uneven_sizes_round_trip() -> None:
    schema = pa.schema([("id", pa.int64()), ("s", pa.string())])
    sizes = [0, 1, 17, 0, 3000, 2, 999]
    batches, start = [], 0
    for n in sizes:
        batches.append(pa.record_batch({"id": pa.array(range(start, start + n), pa.int64()),
                                        "s": pa.array([str(i) * (i % 5) for i in range(start, start + n)])},
                                       schema=schema))
        start += n
    writer = SealedTableWriter(key(), BINDING, schema, chunk_size=512)
    messages = [writer.header(), *writer.seal_batches(batches)]
    got = SealedTableReader(key(), BINDING).read_table(messages)
    assert_same_table(got, pa.Table.from_batches(batches, schema=schema))


def test_a_large_batch_is_split_so_the_reader_holds_little_at_once() -> None:
    table = pa.table({"v": np.arange(1_000_000, dtype=np.int64)})  # one 8 MB batch
    assert table.to_batches()[0].nbytes > 4 * 2**20
    messages = list(seal_table(table, key(), BINDING, chunk_size=64 * 1024))
    batches = list(SealedTableReader(key(), BINDING).open(messages))
    assert len(batches) > 10
    assert max(b.nbytes for b in batches) <= 4 * 64 * 1024
    assert pa.Table.from_batches(batches).equals(table)


def test_dictionaries_that_change_between_batches_round_trip() -> None:
    b1 = pa.record_batch({"d": pa.array(["a", "b", "a"]).dictionary_encode()})
    b2 = pa.record_batch({"d": pa.array(["x", "y"]).dictionary_encode()})
    got = SealedTableReader(key(), BINDING).read_table(seal_table([b1, b2], key(), BINDING))
    assert got.column("d").to_pylist() == ["a", "b", "a", "x", "y"]


def test_open_yields_batches_as_they_arrive() -> None:
    table = pa.table({"v": np.arange(300_000, dtype=np.int64)})
    messages = iter(list(seal_table(table, key(), BINDING, chunk_size=64 * 1024)))
    batches = SealedTableReader(key(), BINDING).open(messages)
    first = next(batches)
    assert first.num_rows > 0
    assert len(list(messages)) > 0, "the first batch came before the stream was read to its end"


@pytest.mark.parametrize("source", ["table", "batch", "reader", "list", "generator"])
def test_seal_table_takes_tables_batches_readers_and_iterables(source: str) -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    batch = table.to_batches()[0]
    given = {"table": table, "batch": batch,
             "reader": pa.RecordBatchReader.from_batches(table.schema, [batch]),
             "list": [batch], "generator": (b for b in [batch])}[source]
    got = SealedTableReader(key(), BINDING).read_table(seal_table(given, key(), BINDING))
    assert got.equals(table)


def test_each_stream_takes_a_fresh_salt() -> None:
    table = pa.table({"a": [1]})
    first = list(seal_table(table, key(), BINDING))
    second = list(seal_table(table, key(), BINDING))
    assert first[0] != second[0] and first[1] != second[1]


def test_messages_are_bytes() -> None:
    messages = list(seal_table(pa.table({"a": [1]}), key(), BINDING))
    assert all(type(m) is bytes for m in messages)
