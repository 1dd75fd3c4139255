"""Witnessing the members' audit logs (teenet/witness.py): in-process, real logs, real keys."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.audit import AuditLog, entry_hash_of
from teenet.errors import InputError
from teenet.coordinator.store import CoordinatorStore
from teenet.witness import CheckpointBoard, Witness, publish, witnessed


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    return conn


def _board(members) -> CheckpointBoard:
    # The coordinator's own store, so the board runs on the tables its migration makes.
    store = CoordinatorStore(Path(tempfile.mkdtemp(prefix="teenet-board-")) / "coordinator.db")
    return CheckpointBoard(store.conn, store.lock, members)


@pytest.fixture
def consortium(tmp_path):
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in ("bank", "clinic", "lab", "compute")}
    publics = {n: k.public_key() for n, k in keys.items()}
    witnesses = {n: Witness(_db(), threading.RLock(), n, keys[n], publics) for n in ("clinic", "lab", "compute")}
    log = AuditLog(tmp_path / "bank-audit.db", keys["bank"], checkpoint_every=1000)
    return keys, publics, witnesses, log


def _grow(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append({"event": "test", "i": i})
    log.checkpoint()


def _rewrite_entry(path, key, seq: int) -> AuditLog:
    """Rewrite entry `seq` of the log at `path`, re-chain everything after it and re-sign
    every tree head with the owner's real key: a member hiding what it did."""
    conn = sqlite3.connect(path, isolation_level=None)
    rows = conn.execute("SELECT seq, payload FROM audit_entries ORDER BY seq").fetchall()
    prev = bytes(32)
    conn.execute("BEGIN")
    for s, payload in rows:
        if s == seq:
            payload = payload.replace('"i":', '"i_was":')
        digest = entry_hash_of(s, prev, payload.encode())
        conn.execute("UPDATE audit_entries SET prev_hash = ?, entry_hash = ?, payload = ? WHERE seq = ?",
                     (prev.hex(), digest.hex(), payload, s))
        prev = digest
    conn.execute("DELETE FROM audit_tree_heads")
    conn.execute("COMMIT")
    conn.close()
    return AuditLog(path, key, checkpoint_every=1000)  # its next head is signed with the real key


def test_witnesses_cosign_a_growing_log_and_quorum_counts(consortium):
    keys, publics, witnesses, log = consortium
    board = _board(publics)
    _grow(log, 3)
    assert publish(log, "bank", board) == 1
    _grow(log, 4)
    assert publish(log, "bank", board) == 1
    for w in witnesses.values():
        cosigned, raised = w.run_once(board)
        assert (cosigned, raised) == (1, [])  # the latest head is a new witness's starting point
    assert witnessed(board, log.origin, 7, publics, 3)
    assert not witnessed(board, log.origin, 7, publics, 4)
    assert not witnessed(board, log.origin, 5, publics, 1)  # never published at that size
    assert not witnessed(board, log.origin, 3, publics, 1)  # published, but before any witness looked
    _grow(log, 1)
    publish(log, "bank", board)
    assert witnesses["clinic"].run_once(board) == (1, [])  # from its head at 7 to 8, by the proof
    assert witnessed(board, log.origin, 8, publics, 1) and not witnessed(board, log.origin, 8, publics, 2)
    witnesses["lab"].run_once(board)  # sees the others' cosignatures now
    status = {r["member"]: r for r in witnesses["lab"].status(quorum=3)}
    assert status["bank"]["cosigned_size"] == 8 and status["bank"]["cosignatures"] == 2  # clinic's and its own
    assert not status["bank"]["witnessed"] and not status["bank"]["blocked"]


def test_a_rewritten_past_entry_is_caught_by_every_witness_and_blocks_the_member(consortium, tmp_path):
    keys, publics, witnesses, log = consortium
    board = _board(publics)
    _grow(log, 5)
    publish(log, "bank", board)
    for w in witnesses.values():
        w.run_once(board)
    log.close()
    log = _rewrite_entry(tmp_path / "bank-audit.db", keys["bank"], 2)
    _grow(log, 2)
    publish(log, "bank", board)  # the board takes it: it is really signed by the bank
    for name, w in witnesses.items():
        cosigned, raised = w.run_once(board)
        assert cosigned == 0
        assert [(e.member, e.kind) for e in raised] == [("bank", "inconsistent")]
        evidence = raised[0].evidence()
        assert "\n5\n" in evidence["verified"] and "\n7\n" in evidence["conflicting"]
        assert w.blocked("bank") and not w.blocked("lab")
        assert w.run_once(board) == (0, [])  # one open alarm, not one per round
    # nothing was cosigned past the rewrite, so the rewritten head is not witnessed
    assert not witnessed(board, log.origin, 7, publics, 1)
    lab = witnesses["lab"]
    assert lab.acknowledge("bank", "ops@lab") == 1
    assert not lab.blocked("bank")
    # the operator accepted the log as it now stands: its latest head is the new start
    assert lab.run_once(board) == (1, []) and lab.head(log.origin)[0] == 7
    _grow(log, 1)
    publish(log, "bank", board)
    assert lab.run_once(board) == (1, [])
    assert lab.alarms()[0]["acknowledged_by"] == "ops@lab"
    with pytest.raises(InputError):
        lab.acknowledge("nobody", "ops@lab")


def test_a_split_view_is_caught_through_the_other_witnesses_cosignatures(consortium, tmp_path):
    """The board shows the clinic one history of the bank's log and the lab another (both
    really signed by the bank); the lab's cosignature, relayed to the clinic, gives it away."""
    keys, publics, witnesses, log = consortium
    fork = AuditLog(tmp_path / "bank-fork.db", keys["bank"], checkpoint_every=1000)
    _grow(log, 3)
    _grow(fork, 2)
    fork.append({"event": "hidden"})
    fork.checkpoint()
    shared = _board(publics)
    view_a, view_b = _board(publics), _board(publics)
    publish(log, "bank", view_a)
    publish(fork, "bank", view_b)

    class View:
        """A malicious coordinator: its own checkpoints per witness, one cosignature store."""

        def __init__(self, own):
            self.own = own

        def __getattr__(self, name):
            if name in ("cosignature_page", "post_cosignature"):
                return getattr(shared, name)
            return getattr(self.own, name)

    clinic, lab = witnesses["clinic"], witnesses["lab"]
    assert clinic.run_once(View(view_a)) == (1, [])
    cosigned, raised = lab.run_once(View(view_b))
    assert cosigned == 1
    assert [(e.kind, e.witness) for e in raised] == [("split_view", "clinic")]
    cosigned, raised = clinic.run_once(View(view_a))
    assert [(e.member, e.kind, e.witness) for e in raised] == [("bank", "split_view", "lab")]
    assert clinic.blocked("bank") and lab.blocked("bank")


def test_a_lying_witness_cannot_frame_an_owner_with_a_cosignature_on_a_made_up_root(consortium):
    """One member (the lab) cosigns a checkpoint body of the bank's log that the bank never
    signed (same size, another root) and posts it. That is the lab's word, not the bank's:
    no split view is raised against the bank, nobody is blocked, and the made-up body
    counts towards no quorum. (Without the owner-signature check this raised `split_view`
    against the bank at every other witness and blocked it.)"""
    import base64

    from teenet.tlog import Checkpoint, SignedNote, cosign

    keys, publics, witnesses, log = consortium
    board = _board(publics)
    _grow(log, 4)
    publish(log, "bank", board)
    clinic = witnesses["clinic"]
    assert clinic.run_once(board) == (1, [])
    size, root, note = clinic.head(log.origin)
    lines = SignedNote.parse(note).body.split("\n")
    lines[2] = base64.b64encode(bytes(32)).decode()  # another root at the same size
    body = "\n".join(lines)
    assert Checkpoint.parse(body).size == size and Checkpoint.parse(body).root_hash != root
    board.post_cosignature("lab", body, cosign(body, "lab", keys["lab"], 1_700_000_000))
    _grow(log, 1)
    publish(log, "bank", board)
    assert clinic.run_once(board) == (1, [])
    assert not clinic.blocked("bank") and clinic.alarms() == []
    assert witnesses["compute"].run_once(board) == (1, []) and not witnesses["compute"].blocked("bank")
    assert not witnessed(board, log.origin, size, publics, 2)  # the lab's made-up body is no cosignature of it


def test_the_board_takes_only_a_publishers_own_signed_checkpoints_in_order(consortium):
    keys, publics, witnesses, log = consortium
    board = _board(publics)
    _grow(log, 2)
    note = log.tree_heads()[-1]
    with pytest.raises(InputError, match="only its own"):
        board.publish("lab", note, 0, [])
    forged = note.replace("\n2\n", "\n3\n", 1)
    with pytest.raises(InputError, match="not signed"):
        board.publish("bank", forged, 0, [])
    board.publish("bank", note, 0, [])
    _grow(log, 1)
    with pytest.raises(InputError, match="prev_size"):
        board.publish("bank", log.tree_heads()[-1], 0, [])
    with pytest.raises(InputError, match="cosignature"):
        board.post_cosignature("lab", log.tree_heads()[0].split("\n\n")[0] + "\n", "\u2014 lab AAAA\n")

