"""Every way to tamper with a sealed stream is refused, with the reason, and leaks nothing."""

from __future__ import annotations

import hashlib
import struct
from typing import Iterable

import pyarrow as pa
import pytest

import teenet.sealing as sealing
from sealing_tables import BINDING, JOB, OTHER_JOB, key
from teenet.errors import SealingError
from teenet.sealing import (MAX_CHUNK_SIZE, SealedTableReader, SealedTableWriter, StreamBinding, TableKey,
                            seal_table)

SECRET_NAMES = [f"secret-customer-{i}" for i in range(40)]
TABLE = pa.table({"id": list(range(40)), "name": SECRET_NAMES})
CHUNK = 128


def sealed(table: pa.Table = TABLE, binding: StreamBinding = BINDING, table_key: TableKey | None = None) -> list[bytes]:
    return list(seal_table(table, table_key or key(), binding, chunk_size=CHUNK))


def refused(messages: Iterable[bytes], match: str, expected: StreamBinding = BINDING,
            table_key: TableKey | None = None) -> SealingError:
    """read_table refuses with `match` in the reason, returns nothing, and leaks no value."""
    reader = SealedTableReader(table_key or key(), expected)
    result = None
    with pytest.raises(SealingError, match=match) as info:
        result = reader.read_table(messages)
    assert result is None
    text = str(info.value)
    assert "secret-customer" not in text and key().secret_bytes().hex() not in text
    assert "\n" not in text
    return info.value


def flip(message: bytes, offset: int, bit: int = 0x01) -> bytes:
    altered = bytearray(message)
    altered[offset] ^= bit
    return bytes(altered)


def test_the_untouched_stream_opens() -> None:
    messages = sealed()
    assert len(messages) > 5
    assert SealedTableReader(key(), BINDING).read_table(messages).equals(TABLE)


@pytest.mark.parametrize("offset,match", [
    (0, "magic"),
    (6, "unsupported format version"),
    (7, "header authentication failed"),        # job digest
    (41, "header authentication failed"),       # party
    (-100, "header authentication failed"),     # schema hash
    (-66, "outside the allowed range|header authentication failed"),  # chunk size
    (-40, "header authentication failed"),      # salt
    (-1, "header authentication failed"),       # the MAC itself
])
def test_a_flipped_bit_in_the_header_is_refused_before_any_chunk(offset: int, match: str) -> None:
    messages = sealed()
    chunks_read = []

    def stream():
        yield flip(messages[0], offset % len(messages[0]))
        for message in messages[1:]:
            chunks_read.append(message)
            yield message

    refused(stream(), match)  # type: ignore[arg-type]
    assert chunks_read == [], "the reader pulled a chunk after a bad header"


def test_a_flipped_bit_in_a_chunk_ciphertext_is_refused() -> None:
    messages = sealed()
    messages[2] = flip(messages[2], 9 + 40)
    refused(messages, r"chunk 1: authentication failed")


def test_a_flipped_bit_in_a_tag_is_refused() -> None:
    messages = sealed()
    messages[-1] = flip(messages[-1], len(messages[-1]) - 1, 0x80)
    refused(messages, rf"chunk {len(messages) - 2}: authentication failed")


def test_a_flipped_last_flag_is_refused() -> None:
    messages = sealed()
    messages[1] = flip(messages[1], 8)  # chunk 0 now claims to be last
    refused(messages, r"chunk 0: authentication failed")
    messages = sealed()
    messages[-1] = flip(messages[-1], 8)  # the last chunk now claims not to be
    refused(messages, r"chunk \d+: .*(authentication failed|chunk size)")


def test_reordered_chunks_are_refused() -> None:
    messages = sealed()
    messages[2], messages[3] = messages[3], messages[2]
    refused(messages, r"expected chunk 1, found chunk 2")


def test_a_rewritten_index_is_refused() -> None:
    messages = sealed()
    third = bytearray(messages[3])
    third[:8] = struct.pack(">Q", 1)
    messages[2] = bytes(third)  # chunk 2 relabelled as chunk 1
    refused(messages, r"chunk 1: authentication failed")


def test_a_dropped_chunk_is_refused() -> None:
    messages = sealed()
    del messages[2]
    refused(messages, r"expected chunk 1, found chunk 2")


def test_a_duplicated_chunk_is_refused() -> None:
    messages = sealed()
    messages.insert(3, messages[2])
    refused(messages, r"expected chunk 2, found chunk 1")


@pytest.mark.parametrize("keep", [1, 2, -1])
def test_truncation_before_the_last_chunk_is_refused(keep: int) -> None:
    messages = sealed()
    refused(messages[:keep], r"truncated")


def test_a_message_after_the_last_chunk_is_refused() -> None:
    messages = sealed()
    refused(messages + [messages[-1]], r"a message follows the chunk flagged last")
    refused(messages + [b"anything"], r"a message follows the chunk flagged last")


def test_a_chunk_spliced_from_another_table_is_refused() -> None:
    ours = sealed()
    theirs = sealed(binding=StreamBinding(JOB, "bank-a", "accounts"))  # same key, same job
    ours[2] = theirs[2]
    refused(ours, r"chunk 1: authentication failed")


def test_a_chunk_spliced_from_another_job_is_refused() -> None:
    ours = sealed()
    theirs = sealed(binding=StreamBinding(OTHER_JOB, "bank-a", "loans"))  # same key, same names
    ours[3] = theirs[3]
    refused(ours, r"chunk 2: authentication failed")


def test_a_chunk_from_another_sealing_of_the_same_table_is_refused() -> None:
    ours, again = sealed(), sealed()
    ours[2] = again[2]
    refused(ours, r"chunk 1: authentication failed")


def test_a_header_spliced_from_another_stream_is_refused() -> None:
    ours, theirs = sealed(), sealed()  # same key, binding and table; different salt
    refused([theirs[0], *ours[1:]], r"chunk 0: authentication failed")


def test_a_header_from_another_table_is_refused_naming_the_table() -> None:
    theirs = sealed(binding=StreamBinding(JOB, "bank-a", "accounts"))
    refused(theirs, r"header table differs: expected 'loans', found 'accounts'")


def test_the_wrong_key_is_refused_at_the_header() -> None:
    refused(sealed(), r"header authentication failed: wrong table key", table_key=TableKey.generate())


@pytest.mark.parametrize("expected,match", [
    (StreamBinding(OTHER_JOB, "bank-a", "loans"), "header job digest differs: expected 2222"),
    (StreamBinding(JOB, "bank-b", "loans"), "header party differs: expected 'bank-b', found 'bank-a'"),
    (StreamBinding(JOB, "bank-a", "deposits"), "header table differs: expected 'deposits', found 'loans'"),
])
def test_a_stream_for_another_binding_is_refused_naming_the_field(expected: StreamBinding, match: str) -> None:
    error = refused(sealed(), match, expected=expected)
    assert key().secret_bytes().hex() not in str(error)


def _header_with(chunk_size: int, schema_hash: bytes = b"\x00" * 32, binding: StreamBinding = BINDING,
                 salt: bytes = b"\x07" * 32) -> tuple[bytes, "sealing._StreamKeys"]:
    """A header correctly MACed under the test key: only a key holder could make it."""
    body = sealing._encode_header_body(binding, schema_hash, chunk_size, salt)
    keys = sealing._StreamKeys(key(), salt, body)
    return body + keys.header_mac(body), keys


def _seal_plaintext(plaintext: bytes, schema_hash: bytes, chunk_size: int = CHUNK) -> list[bytes]:
    """Seal arbitrary plaintext as the spec says: a key holder forging a bad Arrow stream."""
    header, keys = _header_with(chunk_size, schema_hash)
    header_hash = hashlib.sha256(header).digest()
    pieces = [plaintext[i:i + chunk_size] for i in range(0, len(plaintext), chunk_size)] or [b""]
    messages = [header]
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        sealed_piece = keys.aead.encrypt(sealing._nonce(keys.nonce_prefix, index, last), piece,
                                         sealing._aad(header_hash, index, last))
        messages.append(struct.pack(">QB", index, last) + sealed_piece)
    return messages


def _arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_a_header_for_a_chunk_size_over_the_maximum_is_refused() -> None:
    header, _ = _header_with(MAX_CHUNK_SIZE + 1)
    refused([header, *sealed()[1:]], r"chunk size 3145729 is outside the allowed range")


def test_a_chunk_larger_than_the_header_says_is_refused_before_decryption() -> None:
    messages = sealed()
    messages[1] = messages[1] + b"\x00" * 10
    refused(messages, r"chunk 0: 138 plaintext bytes, but the header's chunk size is 128")


def test_a_short_non_last_chunk_is_refused() -> None:
    messages = sealed()
    messages[1] = messages[1][:-20]
    refused(messages, r"chunk 0: 108 plaintext bytes, but the header's chunk size is 128 \(only the last")


def test_a_chunk_too_short_to_hold_a_tag_is_refused() -> None:
    messages = sealed()
    messages[1] = messages[1][:20]
    refused(messages, r"chunk 0: 20 bytes is too short")


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 154, b"TNSEAL", b"TNSEAL\x01" + b"\xff" * 200,
                                     bytes(range(256)) * 2])
def test_garbage_as_a_header_is_refused(garbage: bytes) -> None:
    refused([garbage, *sealed()[1:]], r"header: ")


def test_a_non_bytes_message_is_refused() -> None:
    refused(["TNSEAL"], r"header: expected a bytes message")  # type: ignore[list-item]
    messages: list = sealed()
    messages[1] = 42
    refused(messages, r"chunk 0: expected a bytes message")


def test_an_empty_stream_is_refused() -> None:
    refused([], r"empty stream: no header")


def test_a_header_alone_is_refused_as_truncated() -> None:
    refused(sealed()[:1], r"truncated: it ends after 0 chunk")


def test_a_stream_whose_schema_differs_from_the_header_hash_is_refused() -> None:
    other_schema_hash = hashlib.sha256(b"not this schema").digest()
    refused(_seal_plaintext(_arrow_stream(TABLE), other_schema_hash), r"does not match the header's schema hash")


def _schema_hash(table: pa.Table) -> bytes:
    return hashlib.sha256(sealing._schema_message(table.schema)).digest()


def test_plaintext_after_the_arrow_end_marker_is_refused() -> None:
    plaintext = _arrow_stream(TABLE) + b"smuggled"
    refused(_seal_plaintext(plaintext, _schema_hash(TABLE)), r"8 plaintext bytes follow the Arrow end-of-stream")


def test_malformed_arrow_inside_an_authentic_stream_is_refused() -> None:
    stream = _arrow_stream(TABLE)
    schema_len = len(sealing._schema_message(TABLE.schema))
    plaintext = stream[:schema_len] + b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"\x01" * 16
    refused(_seal_plaintext(plaintext, _schema_hash(TABLE)), r"Arrow IPC stream inside the sealed stream is malformed")


def test_plaintext_that_is_not_arrow_is_refused() -> None:
    refused(_seal_plaintext(b"just some csv,1,2\n" * 4, _schema_hash(TABLE)),
            r"does not start with an Arrow IPC schema message")


def test_an_empty_last_chunk_is_refused() -> None:
    messages = _seal_plaintext(_arrow_stream(TABLE), _schema_hash(TABLE))
    header_hash = hashlib.sha256(messages[0]).digest()
    _, keys = _header_with(CHUNK, _schema_hash(TABLE))
    index = len(messages) - 1
    # Re-flag the real last chunk as not last is impossible without the key; a key holder
    # appending an empty final chunk still breaks the rule that only the last is short.
    empty = keys.aead.encrypt(sealing._nonce(keys.nonce_prefix, index, True), b"",
                              sealing._aad(header_hash, index, True))
    refused(messages + [struct.pack(">QB", index, 1) + empty], r"follows the chunk flagged last|too short")


def test_the_counter_bound_is_enforced_by_writer_and_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = sealed()
    assert len(messages) - 1 > 3
    monkeypatch.setattr(sealing, "MAX_CHUNKS", 3)
    with pytest.raises(SealingError, match=r"stream exceeds 3 chunks"):
        list(seal_table(TABLE, key(), BINDING, chunk_size=CHUNK))
    refused(messages, r"stream exceeds 3 chunks")


def test_open_may_stream_batches_but_read_table_returns_nothing_on_failure() -> None:
    batches = [pa.record_batch({"id": list(range(i * 10, i * 10 + 10)), "name": SECRET_NAMES[:10]})
               for i in range(4)]
    messages = list(seal_table(batches, key(), BINDING, chunk_size=CHUNK))
    messages[-1] = flip(messages[-1], 12)
    seen = []
    with pytest.raises(SealingError, match="authentication failed"):
        for batch in SealedTableReader(key(), BINDING).open(messages):
            seen.append(batch)
    assert seen, "open() hands over authenticated batches before the end"
    refused(messages, "authentication failed")


def test_a_writer_seals_one_stream_only() -> None:
    writer = SealedTableWriter(key(), BINDING, TABLE.schema, chunk_size=CHUNK)
    list(writer.seal_batches(TABLE.to_batches()))
    with pytest.raises(SealingError, match="already sealed a stream"):
        writer.seal_batches(TABLE.to_batches())
