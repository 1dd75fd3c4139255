"""Bad input to the sealing API gives one clear line, never a traceback or a secret."""

from __future__ import annotations

import copy
import pickle

import pyarrow as pa
import pytest

from sealing_tables import BINDING, JOB, key
from teenet.errors import InputError
from teenet.sealing import (DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, SealedTableReader, SealedTableWriter,
                            StreamBinding, TableKey, seal_table)

TABLE = pa.table({"a": [1, 2]})


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_a_key_of_the_wrong_length_is_refused_without_echoing_it(length: int) -> None:
    secret = bytes([0xAB]) * length
    with pytest.raises(InputError, match=f"^table key must be 32 bytes, got {length}$") as info:
        TableKey.from_secret_bytes(secret)
    assert "ab" not in str(info.value).lower().replace("table", "")


def test_a_key_must_be_bytes() -> None:
    with pytest.raises(InputError, match="table key must be 32 bytes, got a str"):
        TableKey.from_secret_bytes("k" * 32)  # type: ignore[arg-type]


def test_a_key_does_not_show_itself() -> None:
    table_key = TableKey.generate()
    secret = table_key.secret_bytes()
    assert len(secret) == 32 and TableKey.generate().secret_bytes() != secret
    for shown in (repr(table_key), str(table_key), f"{table_key!r}"):
        assert secret.hex() not in shown and repr(secret) not in shown
    assert repr(table_key) == "TableKey(<secret>)"


def test_a_key_cannot_be_pickled_or_copied_by_serialisation() -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(TableKey.generate())
    with pytest.raises(TypeError):
        copy.deepcopy(TableKey.generate())


def test_a_key_round_trips_through_its_secret_bytes() -> None:
    table_key = TableKey.generate()
    again = TableKey.from_secret_bytes(table_key.secret_bytes())
    messages = list(seal_table(TABLE, table_key, BINDING))
    assert SealedTableReader(again, BINDING).read_table(messages).equals(TABLE)


@pytest.mark.parametrize("digest,party,table,match", [
    (b"\x00" * 31, "p", "t", "field 'job_digest': job digest must be 32 bytes, got 31"),
    ("11" * 32, "p", "t", "job digest must be 32 bytes, got str"),
    (JOB, "", "t", "field 'party': must not be empty"),
    (JOB, "p", "", "field 'table': must not be empty"),
    (JOB, "p" * 256, "t", "field 'party': must be at most 255 UTF-8 bytes, got 256"),
    (JOB, "p", "ø" * 128, "field 'table': must be at most 255 UTF-8 bytes, got 256"),
    (JOB, "p\ud800", "t", "field 'party': must be valid UTF-8"),
    (JOB, "p\nq", "t", "field 'party': must not contain control characters"),
    (JOB, 7, "t", "field 'party': expected a string, got int"),
])
def test_a_bad_binding_is_refused(digest: object, party: object, table: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        StreamBinding(digest, party, table)  # type: ignore[arg-type]


def test_a_binding_is_frozen() -> None:
    with pytest.raises(Exception):
        BINDING.party = "mallory"  # type: ignore[misc]


def test_names_of_255_utf8_bytes_are_accepted() -> None:
    binding = StreamBinding(JOB, "ø" * 127 + "x", "t" * 255)
    messages = list(seal_table(TABLE, key(), binding))
    assert SealedTableReader(key(), binding).read_table(messages).equals(TABLE)


@pytest.mark.parametrize("given,match", [
    ({"a": [1]}, "expected a pyarrow Table, .* got dict"),
    ("a,b\n1,2", "got str"),
    (b"bytes", "got bytes"),
    (42, "got int"),
    (None, "got NoneType"),
    ([], "no record batches to take a schema from"),
    ([{"a": 1}], "got a list of dict"),
])
def test_seal_table_refuses_what_is_not_arrow(given: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        list(seal_table(given, key(), BINDING))  # type: ignore[arg-type]


def test_seal_table_refuses_loose_key_bytes_and_untyped_bindings() -> None:
    with pytest.raises(InputError, match="key must be a TableKey, got bytes"):
        list(seal_table(TABLE, bytes(32), BINDING))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="binding must be a StreamBinding, got tuple"):
        list(seal_table(TABLE, key(), (JOB, "p", "t")))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="key must be a TableKey"):
        SealedTableReader(bytes(32), BINDING)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="expected binding must be a StreamBinding"):
        SealedTableReader(key(), None)  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk_size", [0, 63, MAX_CHUNK_SIZE + 1, 4 << 20, 1.5, True, "1024"])
def test_a_chunk_size_out_of_range_is_refused(chunk_size: object) -> None:
    with pytest.raises(InputError, match="field 'chunk_size': chunk size must be an integer in 64..3145728"):
        SealedTableWriter(key(), BINDING, TABLE.schema, chunk_size)  # type: ignore[arg-type]


def test_chunk_size_defaults_to_one_mib_and_may_be_the_maximum() -> None:
    assert DEFAULT_CHUNK_SIZE == 1 << 20 and MAX_CHUNK_SIZE == 3 << 20
    messages = list(seal_table(TABLE, key(), BINDING, MAX_CHUNK_SIZE))
    assert SealedTableReader(key(), BINDING).read_table(messages).equals(TABLE)


def test_a_writer_needs_a_schema() -> None:
    with pytest.raises(InputError, match="schema must be a pyarrow Schema, got Table"):
        SealedTableWriter(key(), BINDING, TABLE)  # type: ignore[arg-type]


def test_batches_that_do_not_fit_the_schema_are_refused() -> None:
    writer = SealedTableWriter(key(), BINDING, TABLE.schema)
    with pytest.raises(InputError, match="record batch schema differs from the writer's schema"):
        list(writer.seal_batches([pa.record_batch({"b": ["x"]})]))
    writer = SealedTableWriter(key(), BINDING, TABLE.schema)
    with pytest.raises(InputError, match="expected pyarrow RecordBatches, got Table"):
        list(writer.seal_batches([TABLE]))  # type: ignore[list-item]


def test_a_salt_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(InputError, match="salt must be 32 bytes, got 3"):
        SealedTableWriter(key(), BINDING, TABLE.schema, _salt=b"abc")
