"""docs/format.md's worked example is what the writer produces, and the spec alone decodes it.

The decoder below is written from docs/format.md only: struct, hashlib, hmac, the HKDF and
AESGCM of `cryptography`, and pyarrow's IPC reader. It does not import teenet.sealing.

Regenerate the doc's block after a deliberate format change with:
    .venv/bin/python tests/sealing/test_format_example.py
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from pathlib import Path

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT_DOC = Path(__file__).resolve().parents[2] / "docs" / "format.md"

EXAMPLE_KEY = bytes(range(32))
EXAMPLE_SALT = bytes(range(0x40, 0x60))
EXAMPLE_JOB = hashlib.sha256(b"teenet example job").digest()
EXAMPLE_PARTY = "bank-a"
EXAMPLE_TABLE = "loans"
EXAMPLE_CHUNK_SIZE = 256


def example_table() -> pa.Table:
    return pa.table({"id": pa.array([1, 2, 3], pa.int64()),
                     "city": pa.array(["Oslo", "Zürich", None], pa.string())})


def example_messages() -> list[bytes]:
    from teenet.sealing import SealedTableWriter, StreamBinding, TableKey

    table = example_table()
    writer = SealedTableWriter(TableKey.from_secret_bytes(EXAMPLE_KEY),
                               StreamBinding(EXAMPLE_JOB, EXAMPLE_PARTY, EXAMPLE_TABLE),
                               table.schema, EXAMPLE_CHUNK_SIZE, _salt=EXAMPLE_SALT)
    return [writer.header(), *writer.seal_batches(table.to_batches())]


def _hex_lines(data: bytes, width: int = 32) -> list[str]:
    return [data[i:i + width].hex() for i in range(0, len(data), width)]


def example_block() -> str:
    """The ```sealed-example block of docs/format.md, from the library's writer."""
    messages = example_messages()
    lines = []
    for number, message in enumerate(messages):
        label = "header" if number == 0 else f"chunk {number - 1}"
        lines.append(f"{label} ({len(message)} bytes):")
        lines.extend(_hex_lines(message))
    return "\n".join(lines)


def doc_block() -> str:
    text = FORMAT_DOC.read_text(encoding="utf-8")
    found = re.search(r"```sealed-example\n(.*?)\n```", text, re.S)
    assert found, f"{FORMAT_DOC} has no ```sealed-example block"
    return found.group(1)


def doc_messages() -> list[bytes]:
    messages: list[bytearray] = []
    for line in doc_block().splitlines():
        if line.endswith("bytes):"):
            messages.append(bytearray())
        elif line.strip():
            messages[-1] += bytes.fromhex(line.strip())
    return [bytes(m) for m in messages]


def doc_values() -> dict[str, bytes]:
    """The ```sealed-example-values block: inputs and derived values, name: hex."""
    text = FORMAT_DOC.read_text(encoding="utf-8")
    found = re.search(r"```sealed-example-values\n(.*?)\n```", text, re.S)
    assert found, f"{FORMAT_DOC} has no ```sealed-example-values block"
    values = {}
    for line in found.group(1).splitlines():
        name, _, value = line.partition(":")
        values[name.strip()] = bytes.fromhex(value.strip())
    return values


# -- an independent decoder, from docs/format.md alone -----------------------------------

def decode_from_spec(messages: list[bytes], key: bytes) -> tuple[dict, pa.Table]:
    header = messages[0]
    assert header[:6] == b"TNSEAL" and header[6] == 1
    pos = 7
    job = header[pos:pos + 32]
    pos += 32
    (n,) = struct.unpack_from(">H", header, pos)
    party = header[pos + 2:pos + 2 + n].decode()
    pos += 2 + n
    (n,) = struct.unpack_from(">H", header, pos)
    table_name = header[pos + 2:pos + 2 + n].decode()
    pos += 2 + n
    schema_hash = header[pos:pos + 32]
    (chunk_size,) = struct.unpack_from(">I", header, pos + 32)
    salt = header[pos + 36:pos + 68]
    body, mac = header[:pos + 68], header[pos + 68:]
    assert len(mac) == 32

    okm = HKDF(hashes.SHA256(), 71, salt, b"teenet/sealed-table/v1\x00" + hashlib.sha256(body).digest()).derive(key)
    mac_key, chunk_key, nonce_prefix = okm[:32], okm[32:64], okm[64:]
    assert hmac.compare_digest(hmac.new(mac_key, body, hashlib.sha256).digest(), mac)
    header_hash = hashlib.sha256(header).digest()

    plaintext = bytearray()
    aead = AESGCM(chunk_key)
    for expected, message in enumerate(messages[1:]):
        index, last = struct.unpack_from(">QB", message)
        assert index == expected
        assert last == (expected == len(messages) - 2)
        nonce = nonce_prefix + struct.pack(">I", index) + bytes([last])
        aad = header_hash + struct.pack(">Q", index) + bytes([last])
        chunk = aead.decrypt(nonce, message[9:], aad)
        assert len(chunk) == chunk_size or last
        plaintext += chunk

    assert plaintext[:4] == b"\xff\xff\xff\xff"
    (meta_len,) = struct.unpack_from("<i", plaintext, 4)
    assert hashlib.sha256(plaintext[:8 + meta_len]).digest() == schema_hash
    table = pa.ipc.open_stream(pa.py_buffer(bytes(plaintext))).read_all()
    facts = {"job digest": job, "party": party, "table": table_name, "chunk size": chunk_size,
             "salt": salt, "schema hash": schema_hash, "mac key": mac_key, "chunk key": chunk_key,
             "nonce prefix": nonce_prefix, "header hash": header_hash}
    return facts, table


def test_doc_example_is_what_the_writer_produces_byte_for_byte() -> None:
    assert doc_block() == example_block()


def test_doc_example_decodes_with_a_decoder_written_from_the_spec_alone() -> None:
    facts, table = decode_from_spec(doc_messages(), doc_values()["table key"])
    assert table.equals(example_table(), check_metadata=True)
    assert (facts["job digest"], facts["party"], facts["table"]) == (EXAMPLE_JOB, EXAMPLE_PARTY, EXAMPLE_TABLE)
    assert facts["chunk size"] == EXAMPLE_CHUNK_SIZE
    assert len(doc_messages()) >= 3, "the example should show more than one chunk"


def test_doc_derived_values_match_the_spec_derivation() -> None:
    values = doc_values()
    facts, _ = decode_from_spec(doc_messages(), values["table key"])
    assert values["table key"] == EXAMPLE_KEY and values["salt"] == EXAMPLE_SALT
    for name in ("job digest", "schema hash", "mac key", "chunk key", "nonce prefix", "header hash"):
        assert values[name] == facts[name], name


def test_the_spec_decoder_refuses_a_flipped_bit() -> None:
    messages = doc_messages()
    altered = bytearray(messages[1])
    altered[20] ^= 0x01
    with pytest.raises(Exception):
        decode_from_spec([messages[0], bytes(altered), *messages[2:]], EXAMPLE_KEY)


def example_values_block() -> str:
    messages = example_messages()
    facts, _ = decode_from_spec(messages, EXAMPLE_KEY)
    rows = [("table key", EXAMPLE_KEY), ("salt", EXAMPLE_SALT)]
    rows += [(name, facts[name]) for name in
             ("job digest", "schema hash", "mac key", "chunk key", "nonce prefix", "header hash")]
    return "\n".join(f"{name + ':':14}{value.hex()}" for name, value in rows)


if __name__ == "__main__":
    print("```sealed-example-values")
    print(example_values_block())
    print("```\n")
    print("```sealed-example")
    print(example_block())
    print("```")
