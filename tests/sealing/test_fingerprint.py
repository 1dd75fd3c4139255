"""Table fingerprints (teenet.lineage): over exactly the plaintext chunks a sealed stream carries."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest

from teenet.errors import VerificationError
from teenet.lineage import (Fingerprinter, check_fingerprint, fingerprint_mac, fingerprint_of_chunks,
                            rounded_rows)
from teenet.reasons import CHECKS
from teenet.sealing import SealedTableReader, StreamBinding, TableKey, seal_table
from teenet.tlog import node_hash

BINDING = StreamBinding(hashlib.sha256(b"job").digest(), "bank", "customers")


def _table(balance_3: int = 30) -> pa.Table:
    return pa.table({"id": list(range(200)), "balance": [i * 10 if i != 3 else balance_3 for i in range(200)]})


def _ship(table: pa.Table, key: TableKey, chunk_size: int = 256) -> tuple[list[bytes], Fingerprinter, list[bytes]]:
    fp, plain = Fingerprinter(), []

    def hook(pieces) -> None:
        plain.append(b"".join(bytes(p) for p in pieces))
        fp.add_chunk(pieces)

    return list(seal_table(table, key, BINDING, chunk_size, on_chunk=hook)), fp, plain


def _open(messages: list[bytes], key: TableKey) -> tuple[SealedTableReader, Fingerprinter]:
    fp = Fingerprinter()
    reader = SealedTableReader(key, BINDING, on_chunk=fp.add_chunk)
    reader.read_table(messages)
    return reader, fp


def test_the_fingerprint_is_the_rfc9162_root_over_the_plaintext_chunks() -> None:
    key = TableKey.generate()
    messages, fp, plain = _ship(_table(), key)
    assert fp.chunks == len(messages) - 1 >= 3
    assert fp.root() == fingerprint_of_chunks(plain)
    # RFC 9162 by hand for the first two leaves: the root of a 2-chunk stream
    two = node_hash(hashlib.sha256(b"\x00" + plain[0]).digest(), hashlib.sha256(b"\x00" + plain[1]).digest())
    assert fingerprint_of_chunks(plain[:2]) == two
    _, opened = _open(messages, key)
    assert opened.root() == fp.root() and opened.chunks == fp.chunks  # both sides agree


def test_one_changed_cell_changes_the_fingerprint() -> None:
    key = TableKey.generate()
    assert _ship(_table(30), key)[1].root() != _ship(_table(31), key)[1].root()
    assert _ship(_table(30), key)[1].root() == _ship(_table(30), TableKey.generate())[1].root()  # keys do not matter


def test_the_enclave_refuses_a_claimed_fingerprint_that_differs_from_what_it_opened() -> None:
    key = TableKey.generate()
    messages, fp, _ = _ship(_table(30), key)
    other = _ship(_table(31), key)[1].root()  # the fingerprint of a different table
    reader, opened = _open(messages, key)
    header = reader.header
    good = check_fingerprint(table_key=key.secret_bytes(), header=header, computed=opened, claimed_root=fp.root(),
                             claimed_chunks=fp.chunks, mac=fingerprint_mac(key.secret_bytes(), header, fp.root(),
                                                                          fp.chunks))
    assert good == fp.root()
    # a correctly MACed claim of another table's root: refused by the recomputation
    with pytest.raises(VerificationError) as exc:
        check_fingerprint(table_key=key.secret_bytes(), header=header, computed=opened, claimed_root=other,
                          claimed_chunks=fp.chunks, mac=fingerprint_mac(key.secret_bytes(), header, other, fp.chunks))
    assert exc.value.check == "input.fingerprint" and "input.fingerprint" in CHECKS
    # the right root without the table key's MAC (or under another stream's header): refused
    with pytest.raises(VerificationError):
        check_fingerprint(table_key=key.secret_bytes(), header=header, computed=opened, claimed_root=fp.root(),
                          claimed_chunks=fp.chunks, mac=bytes(32))
    other_header = _ship(_table(30), key)[0][0]
    with pytest.raises(VerificationError):
        check_fingerprint(table_key=key.secret_bytes(), header=header, computed=opened, claimed_root=fp.root(),
                          claimed_chunks=fp.chunks,
                          mac=fingerprint_mac(key.secret_bytes(), other_header, fp.root(), fp.chunks))


def test_row_counts_leave_rounded_down_to_k_and_never_below_k() -> None:
    assert rounded_rows(0, 10) == "<10" and rounded_rows(9, 10) == "<10"
    assert rounded_rows(10, 10) == "10" and rounded_rows(1234, 10) == "1230" and rounded_rows(7, 1) == "7"
