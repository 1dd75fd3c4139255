"""The shared audit chain: append, checkpoints, and tampering named at the right entry."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from typer.testing import CliRunner

from teenet.audit import (GENESIS_HASH, AuditLog, entry_hash_of, load_audit_key, read_log, verify_chain)
from teenet.canonical import canonical_json
from teenet.cli.audit import app as audit_app
from teenet.errors import InputError, VerificationError


@pytest.fixture
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def make_log(path: Path, key: ed25519.Ed25519PrivateKey, n: int = 10, every: int = 4) -> AuditLog:
    log = AuditLog(path, key, checkpoint_every=every)
    for i in range(n):
        log.append({"type": "test", "i": i, "job_id": f"{i:064x}"})
    return log


def verify_file(path: Path, key: ed25519.Ed25519PrivateKey | None):
    entries, checkpoints = read_log(path)
    return verify_chain(entries, checkpoints, key.public_key() if key else None)


def test_entries_chain_from_genesis_with_the_documented_hash(tmp_path, key):
    log = make_log(tmp_path / "a.db", key, n=3)
    entries = log.entries()
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].entry_hash
    record = json.loads(entries[2].payload)
    assert record["event"] == {"type": "test", "i": 2, "job_id": f"{2:064x}"} and record["at"].endswith("Z")
    assert canonical_json(record) == entries[2].payload
    assert entries[2].entry_hash == entry_hash_of(3, entries[1].entry_hash, entries[2].payload)

    by_hand = hashlib.sha256(b"teenet/audit/v1\x00" + entries[1].entry_hash + (3).to_bytes(8, "big")
                             + entries[2].payload).digest()
    assert by_hand == entries[2].entry_hash


def test_checkpoints_every_n_and_on_demand(tmp_path, key):
    log = make_log(tmp_path / "a.db", key, n=10, every=4)
    assert [c.seq for c in log.checkpoints()] == [4, 8]
    assert log.verify().signed_through == 8          # 9 and 10 are chained, not yet signed
    cp = log.checkpoint()
    assert cp is not None and cp.seq == 10
    report = log.verify()
    assert report.ok and report.entries == 10 and report.checkpoints == 3 and report.signed_through == 10
    assert AuditLog(tmp_path / "empty.db", key).checkpoint() is None


def test_append_survives_reopen(tmp_path, key):
    make_log(tmp_path / "a.db", key, n=5).close()
    log = AuditLog(tmp_path / "a.db", key)
    assert log.append({"type": "after-restart"}).seq == 6
    assert log.verify().ok


def tamper(path: Path, sql: str, *args) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def test_an_edited_payload_is_named_by_seq(tmp_path, key):
    path = tmp_path / "a.db"
    make_log(path, key).close()
    payload = read_log(path)[0][6].payload.decode().replace('"i":6', '"i":60')
    tamper(path, "UPDATE audit_entries SET payload = ? WHERE seq = 7", payload)
    report = verify_file(path, key)
    assert not report.ok
    assert (report.first_break.seq, report.first_break.problem) == (7, "hash mismatch")
    assert report.last_seq == 6


def test_a_rewritten_history_is_caught_by_the_signed_checkpoint(tmp_path, key):
    """An attacker edits entry 2 and recomputes every hash after it: the chain is
    consistent again, but the checkpoint signed over entry 4 no longer matches."""
    path = tmp_path / "a.db"
    make_log(path, key).close()
    entries, _ = read_log(path)
    conn = sqlite3.connect(path)
    prev = entries[0].entry_hash
    for e in entries[1:]:
        payload = e.payload.replace(b'"i":1,', b'"i":99,') if e.seq == 2 else e.payload
        digest = entry_hash_of(e.seq, prev, payload)
        conn.execute("UPDATE audit_entries SET prev_hash = ?, entry_hash = ?, payload = ? WHERE seq = ?",
                     (prev.hex(), digest.hex(), payload.decode(), e.seq))
        prev = digest
    conn.commit()
    conn.close()
    report = verify_file(path, key)
    assert (report.first_break.seq, report.first_break.problem) == (4, "checkpoint mismatch")


@pytest.mark.parametrize("sql, seq, problem", [
    ("DELETE FROM audit_entries WHERE seq = 5", 5, "gap"),
    ("UPDATE audit_entries SET prev_hash = '00' WHERE seq = 3", 3, "prev mismatch"),
    ("DELETE FROM audit_entries WHERE seq > 7", 8, "truncated"),
    # Always a change: a signature that already starts with ff gets 00 instead.
    ("UPDATE audit_checkpoints SET signature = (CASE WHEN substr(signature, 1, 2) = 'ff' THEN '00' ELSE 'ff' END)"
     " || substr(signature, 3) WHERE seq = 8", 8, "bad checkpoint signature"),
])
def test_each_kind_of_damage_is_named(tmp_path, key, sql, seq, problem):
    path = tmp_path / "a.db"
    make_log(path, key).close()
    tamper(path, sql)
    report = verify_file(path, key)
    assert report.first_break is not None
    assert (report.first_break.seq, report.first_break.problem) == (seq, problem)


def test_checkpoints_by_another_key_fail_when_the_owner_key_is_pinned(tmp_path, key):
    path = tmp_path / "a.db"
    make_log(path, ed25519.Ed25519PrivateKey.generate()).close()
    report = verify_file(path, key)
    assert (report.first_break.seq, report.first_break.problem) == (4, "bad checkpoint signature")
    assert verify_file(path, None).ok      # self-consistent, but only against its own key


def test_an_append_inside_a_rolled_back_transaction_leaves_nothing(tmp_path, key):
    conn = sqlite3.connect(tmp_path / "shared.db", isolation_level=None)
    log = AuditLog(conn, key, checkpoint_every=1)
    conn.execute("BEGIN IMMEDIATE")
    log.append({"type": "doomed"})
    conn.execute("ROLLBACK")
    assert log.entries() == [] and log.checkpoints() == []
    assert log.append({"type": "kept"}).seq == 1


def test_bad_inputs_are_clear_errors(tmp_path, key):
    log = AuditLog(tmp_path / "a.db", key)
    with pytest.raises(InputError, match="more than 65536"):
        log.append({"blob": "x" * 70_000})
    with pytest.raises(InputError, match="no such audit log"):
        read_log(tmp_path / "missing.db")
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(InputError, match="not a teenet audit log"):
        read_log(tmp_path / "junk.db")


def test_audit_key_is_created_once_and_private(tmp_path):
    path = tmp_path / "keys" / "audit.key"
    first = load_audit_key(path)
    assert path.stat().st_mode & 0o077 == 0
    assert load_audit_key(path).public_key().public_bytes_raw() == first.public_key().public_bytes_raw()
    path.write_text("garbage")
    with pytest.raises(InputError, match="not a PEM private key"):
        load_audit_key(path)


# the CLI

runner = CliRunner()


def test_cli_verify_ok_and_pinned(tmp_path, key):
    path = tmp_path / "a.db"
    make_log(path, key).close()
    b64 = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    result = runner.invoke(audit_app, ["verify", "--db", str(path), "--public-key", b64, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and data["entries"] == 10 and data["key_pinned"]
    result = runner.invoke(audit_app, ["verify", "--db", str(path)])
    assert result.exit_code == 0 and "pass --public-key" in result.output


def test_cli_verify_names_the_first_broken_entry(tmp_path, key):
    path = tmp_path / "a.db"
    make_log(path, key).close()
    tamper(path, "UPDATE audit_entries SET payload = replace(payload, 'test', 'tset') WHERE seq = 3")
    result = runner.invoke(audit_app, ["verify", "--db", str(path), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["first_break"]["seq"] == 3
    result = runner.invoke(audit_app, ["verify", "--db", str(path)])
    assert isinstance(result.exception, VerificationError)
    assert "entry 3: hash mismatch" in str(result.exception)


def test_cli_show_lists_the_tail(tmp_path, key):
    path = tmp_path / "a.db"
    make_log(path, key).close()
    result = runner.invoke(audit_app, ["show", "--db", str(path), "--limit", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [e["seq"] for e in data["entries"]] == [8, 9, 10] and data["entries"][0]["signed"]
    result = runner.invoke(audit_app, ["show", "--db", str(path), "--limit", "2"])
    assert result.exit_code == 0 and "2 of 10 entries" in result.output


def test_signed_tree_heads_prove_inclusion_and_append_only_growth(tmp_path: Path) -> None:
    from teenet.audit import read_tree_heads
    from teenet.tlog import Checkpoint, SignedNote, leaf_hash, verify_consistency, verify_inclusion, verify_note

    key = ed25519.Ed25519PrivateKey.generate()
    log = AuditLog(tmp_path / "a.db", key, checkpoint_every=4)
    for i in range(11):
        log.append({"event": "e", "i": i})
    log.checkpoint()
    heads = [Checkpoint.parse(SignedNote.parse(t).body) for t in log.tree_heads()]
    assert [h.size for h in heads] == [4, 8, 11]
    for text, head in zip(log.tree_heads(), heads):
        verify_note(SignedNote.parse(text), log.origin, key.public_key())
        assert head.origin == log.origin
    entries = log.entries()
    verify_inclusion(leaf_hash(entries[6].entry_hash), 6, 11, log.inclusion_proof(7, 11), heads[2].root_hash)
    verify_consistency(4, 11, heads[0].root_hash, heads[2].root_hash, log.consistency_proof(4, 11))
    report = log.verify()
    assert report.ok and report.tree_heads == 3 and report.tree_head == heads[2].body()
    written = log.tree_heads()
    log.close()
    assert read_tree_heads(tmp_path / "a.db") == written


def test_a_rewritten_entry_breaks_the_signed_tree_head_even_with_the_chain_recomputed(tmp_path: Path) -> None:
    """An owner-less rewriter who recomputes every chain hash after an edit (and drops the old
    checkpoints) still cannot match the signed tree heads."""
    from teenet.audit import read_tree_heads

    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "a.db"
    log = AuditLog(path, key, checkpoint_every=5)
    for i in range(10):
        log.append({"event": "e", "i": i})
    log.close()
    conn = sqlite3.connect(path, isolation_level=None)
    rows = conn.execute("SELECT seq, payload FROM audit_entries ORDER BY seq").fetchall()
    prev = GENESIS_HASH
    for seq, payload in rows:
        if seq == 3:
            payload = payload.replace('"i":2', '"i":20')
        digest = entry_hash_of(seq, prev, payload.encode())
        conn.execute("UPDATE audit_entries SET payload = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
                     (payload, prev.hex(), digest.hex(), seq))
        prev = digest
    conn.execute("DELETE FROM audit_checkpoints")
    conn.close()
    entries, checkpoints = read_log(path)
    assert verify_chain(entries, checkpoints, key.public_key()).ok  # the chain alone is fooled
    report = verify_chain(entries, checkpoints, key.public_key(), read_tree_heads(path))
    assert not report.ok and report.first_break.problem == "bad tree head"
    assert report.first_break.seq == 5 and "history rewritten" in report.first_break.detail


def test_a_log_from_before_tree_heads_still_verifies_and_gains_one(tmp_path: Path) -> None:
    from teenet.audit import read_tree_heads

    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "old.db"
    log = AuditLog(path, key, checkpoint_every=100)
    for i in range(7):
        log.append({"event": "e", "i": i})
    log.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TABLE audit_tree_heads")
    conn.close()
    assert read_tree_heads(path) == []
    assert verify_chain(*read_log(path), key.public_key(), read_tree_heads(path)).ok
    log = AuditLog(path, key, checkpoint_every=100)
    log.checkpoint()
    assert len(log.tree_heads()) == 1 and log.verify().ok
    log.close()
