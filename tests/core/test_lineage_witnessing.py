"""Quorum in lineage and the coordinator's witnessed log (teenet/witness.py, teenet/lineage.py):
in-process, real audit logs, real keys, the board on a real CoordinatorStore."""

from __future__ import annotations

import base64
import copy
import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.audit import AuditLog, entry_hash_of
from teenet.coordinator.store import CoordinatorStore
from teenet.errors import InputError
from teenet.tlog import Checkpoint, SignedNote, sign_note
from teenet.witness import (CheckpointBoard, FileBoard, Witness, checkpoints_file, publish, quorum_state)

MEMBERS = ("bank", "clinic", "lab", "compute")


def _conn() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)


@pytest.fixture
def net(tmp_path):
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in MEMBERS}
    publics = {n: k.public_key() for n, k in keys.items()}
    store = CoordinatorStore(Path(tempfile.mkdtemp(prefix="teenet-board-")) / "coordinator.db")
    board = CheckpointBoard(store.conn, store.lock, publics)
    log = AuditLog(tmp_path / "compute-audit.db", keys["compute"], checkpoint_every=1000)
    return keys, publics, board, log, store


def _grow(log: AuditLog, n: int) -> Checkpoint:
    for i in range(n):
        log.append({"event": "test", "i": i})
    log.checkpoint()
    return Checkpoint.parse(SignedNote.parse(log.tree_heads()[-1]).body)


def _state(board, publics, head, quorum):
    return quorum_state(board, log="drop", member="compute", key=publics["compute"], head=head,
                        witnesses=publics, quorum=quorum)


def test_a_result_head_is_witnessed_only_once_a_quorum_cosigned_a_checkpoint_that_extends_it(net):
    keys, publics, board, log, _ = net
    head = _grow(log, 3)  # the tree head a result names
    publish(log, "compute", board)
    s = _state(board, publics, head, 2)
    assert (s.state, s.cosignatures) == ("unwitnessed", 0) and "not yet witnessed" in s.detail
    later = _grow(log, 4)
    publish(log, "compute", board)
    witnesses = {n: Witness(_conn(), threading.RLock(), n, keys[n], publics) for n in ("bank", "clinic", "lab")}
    witnesses["bank"].run_once(board)  # first sight: it cosigns the latest head only (size 7)
    s = _state(board, publics, head, 2)
    assert (s.state, s.cosigned_size, s.cosignatures) == ("unwitnessed", later.size, 1)
    witnesses["clinic"].run_once(board)
    s = _state(board, publics, head, 2)
    # witnessed at 7 through the compute node's own consistency proof from 3 to 7
    assert (s.state, s.cosigned_size, s.cosignatures) == ("witnessed", later.size, 2), s.detail
    # the compute node's own cosignature never counts toward its own log's quorum
    board.post_cosignature("compute", *_cosig_parts(log, keys["compute"], "compute"))
    assert _state(board, publics, head, 3).state == "unwitnessed"
    # a head the board never held is not witnessed, said as such
    missing = Checkpoint(head.origin, 5, bytes(32))
    s = _state(board, publics, missing, 1)
    assert s.state == "unwitnessed" and "no checkpoint" in s.detail

    # offline: the file of what it was judged on gives the same answer, and edits show
    doc = checkpoints_file([_state(board, publics, head, 2)])
    assert _state(FileBoard(doc), publics, head, 2).state == "witnessed"
    stripped = copy.deepcopy(doc)
    stripped["logs"][head.origin]["cosignatures"] = stripped["logs"][head.origin]["cosignatures"][:1]
    assert _state(FileBoard(stripped), publics, head, 2).state == "unwitnessed"
    # a cosignature line moved onto another checkpoint does not verify there
    moved = copy.deepcopy(doc)
    for c in moved["logs"][head.origin]["cosignatures"]:
        c["body"] = SignedNote.parse(log.tree_heads()[0]).body
    assert _state(FileBoard(moved), publics, head, 1).state == "unwitnessed"
    flipped = copy.deepcopy(doc)
    later_pub = next(p for p in flipped["logs"][head.origin]["checkpoints"] if p["prev_size"] == head.size)
    raw = bytearray(base64.b64decode(later_pub["proof"][0]))
    raw[0] ^= 1
    later_pub["proof"][0] = base64.b64encode(bytes(raw)).decode()
    s = _state(FileBoard(flipped), publics, head, 2)
    # an unsigned proof that fails does not prove the owner rewrote anything (a board could
    # alter it): not witnessed, not broken
    assert s.state == "unwitnessed" and "does not verify" in s.detail
    with pytest.raises(InputError, match="format"):
        FileBoard({"format": "nope"})
    with pytest.raises(InputError) as bad:
        FileBoard({"format": doc["format"], "logs": {"o": {"checkpoints": [{"note": 1}]}}})
    assert "logs.o" in str(bad.value)


def _cosig_parts(log, key, name):
    from teenet.tlog import cosign

    body = SignedNote.parse(log.tree_heads()[-1]).body
    return body, cosign(body, name, key, 1_700_000_000)


def test_a_compute_node_that_signs_another_root_at_the_results_size_is_inconsistent(net, tmp_path):
    """The compute node's signed word on the board contradicts the tree head in the result
    (a fork shown to the result's holder): the lineage breaks, it does not merely wait."""
    keys, publics, board, log, _ = net
    head = _grow(log, 4)
    fork = AuditLog(tmp_path / "fork.db", keys["compute"], checkpoint_every=1000)
    forked = _grow(fork, 4)
    assert forked.size == head.size and forked.root_hash != head.root_hash
    publish(fork, "compute", board)
    s = _state(board, publics, head, 1)
    assert s.state == "inconsistent" and "split view" in s.detail
    # a forged head not signed by the compute node's key is the board's junk: no judgement from it
    other = _board_of(publics)
    junk = sign_note(Checkpoint(head.origin, head.size, bytes(32)).body(), head.origin, keys["lab"])
    other._conn.execute("INSERT INTO published_checkpoints (origin, size, publisher, note, prev_size, proof, "
                        "received_at) VALUES (?, ?, 'compute', ?, 0, '[]', 0)", (head.origin, head.size, junk))
    assert _state(other, publics, head, 1).state == "unwitnessed"


def _board_of(publics):
    store = CoordinatorStore(Path(tempfile.mkdtemp(prefix="teenet-board-")) / "coordinator.db")
    return CheckpointBoard(store.conn, store.lock, publics)


def test_members_witness_the_coordinators_log_and_catch_it_rewritten(net):
    """The coordinator's log, on its real CoordinatorStore, is witnessed like a member's when
    the consortium names its key, and a rewrite of one past entry is caught."""
    keys, publics, board, _, store = net
    coordinator_key = ed25519.Ed25519PrivateKey.generate()
    audit = AuditLog(store.conn, coordinator_key, checkpoint_every=1000, lock=store.lock)
    board.register("coordinator", coordinator_key.public_key())
    for i in range(5):
        audit.append({"event": "job_submitted", "i": i})
    audit.checkpoint()
    publish(audit, "coordinator", board)
    extra = {"coordinator": coordinator_key.public_key()}
    witnesses = {n: Witness(_conn(), threading.RLock(), n, keys[n], publics, extra) for n in ("bank", "lab")}
    blind = Witness(_conn(), threading.RLock(), "clinic", keys["clinic"], publics)  # no key in its file
    for w in witnesses.values():
        assert w.run_once(board) == (1, [])
    assert blind.run_once(board) == (0, [])
    assert "coordinator" not in {r["member"] for r in blind.status()}
    assert {r["member"]: r["cosigned_size"] for r in witnesses["lab"].status()}["coordinator"] == 5
    # a cosignature by the coordinator itself counts for nothing
    head = Checkpoint.parse(SignedNote.parse(audit.tree_heads()[-1]).body)
    assert quorum_state(board, log="coordinator", member="coordinator", key=coordinator_key.public_key(),
                        head=head, witnesses=publics, quorum=2).state == "witnessed"

    # the coordinator's operator rewrites entry 2 in coordinator.db and re-signs with the real key
    conn = store.conn
    with store.lock:
        rows = conn.execute("SELECT seq, payload FROM audit_entries ORDER BY seq").fetchall()
        prev = bytes(32)
        conn.execute("BEGIN")
        for seq, payload in rows:
            if seq == 2:
                payload = payload.replace('"i":1', '"i":99')
            digest = entry_hash_of(seq, prev, payload.encode())
            conn.execute("UPDATE audit_entries SET prev_hash = ?, entry_hash = ?, payload = ? WHERE seq = ?",
                         (prev.hex(), digest.hex(), payload, seq))
            prev = digest
        conn.execute("DELETE FROM audit_tree_heads")
        conn.execute("COMMIT")
    rewritten = AuditLog(store.conn, coordinator_key, checkpoint_every=1000, lock=store.lock)
    rewritten.append({"event": "job_submitted", "i": 5})
    rewritten.checkpoint()
    publish(rewritten, "coordinator", board)  # the board takes it: really signed by the coordinator
    for w in witnesses.values():
        cosigned, raised = w.run_once(board)
        assert cosigned == 0 and [(e.member, e.kind) for e in raised] == [("coordinator", "inconsistent")]
        assert w.blocked("coordinator") and not w.blocked("bank")
    # a result naming the head cosigned before the rewrite stays witnessed (the quorum saw it);
    # the rewritten head is never cosigned, so nothing naming it counts as witnessed
    assert quorum_state(board, log="coordinator", member="coordinator", key=coordinator_key.public_key(),
                        head=head, witnesses=publics, quorum=2).state == "witnessed"
    new_head = Checkpoint.parse(SignedNote.parse(rewritten.tree_heads()[-1]).body)
    assert quorum_state(board, log="coordinator", member="coordinator", key=coordinator_key.public_key(),
                        head=new_head, witnesses=publics, quorum=1).state == "unwitnessed"
    assert witnesses["lab"].acknowledge("coordinator", "ops@lab") == 1
