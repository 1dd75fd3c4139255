"""Paged, bounded reads of the coordinator's checkpoint board (teenet/witness.py "Paged board
reads"): thousands of checkpoints on a real CoordinatorStore, real keys, real witnesses."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.audit import default_origin
from teenet.coordinator.service import board_reply
from teenet.coordinator.state import TransitionRefused
from teenet.coordinator.store import CoordinatorStore
from teenet.errors import TeenetError
from teenet.proto import teenet_pb2 as pb
from teenet.tlog import Checkpoint, MerkleTree, sign_note
from teenet.witness import (PAGE_BYTES, PAGE_ROWS, QUORUM_PAGE_ROWS, ROWS_CHECKPOINTS, ROWS_COSIGNATURES,
                            CheckpointBoard, GrpcBoard, Page, Witness, pages, quorum_state, witnessed)

N = 2000  # checkpoints of the bank's log on the big board
NAMES = ("bank", "clinic", "lab", "compute")


def _store(tmp: Path) -> CoordinatorStore:
    store = CoordinatorStore(tmp / "coordinator.db")
    # The store's own tables and code; fsync off only so thousands of publications stay fast.
    store.conn.execute("PRAGMA synchronous=OFF")
    return store


def _chain(key: ed25519.Ed25519PrivateKey, n: int, fork_at: int = 0) -> list[tuple[str, int, list[bytes]]]:
    """The signed checkpoints of a log growing one entry at a time to size n, each with its
    RFC 9162 consistency proof from the one before; from size `fork_at` on, another history."""
    origin = default_origin(key.public_key())
    tree, out, prev = MerkleTree(), [], 0
    for i in range(n):
        tree.append(b"entry %d" % i if not fork_at or i + 1 < fork_at else b"forked %d" % i)
        size = tree.size
        out.append((sign_note(Checkpoint(origin, size, tree.root()).body(), origin, key), prev,
                    tree.consistency_proof(prev, size) if prev else []))
        prev = size
    return out


def _node_db(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=OFF")  # a file that survives "restarts"; fsync off for speed
    return conn


class Reads:
    """The real board, with a count of the pages and rows each reader asked for."""

    def __init__(self, board: Any) -> None:
        self.board, self.pages, self.rows, self.checkpoint_rows = board, 0, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.board, name)

    def _count(self, page):
        self.pages += 1
        self.rows += len(page.rows)
        return page

    def checkpoint_page(self, origin, **where):
        page = self._count(self.board.checkpoint_page(origin, **where))
        self.checkpoint_rows += len(page.rows)
        return page

    def cosignature_page(self, origin, **where):
        return self._count(self.board.cosignature_page(origin, **where))


@pytest.fixture(scope="module")
def big():
    """A board with N checkpoints of the bank's log, and the clinic's witness that saw the
    first one, then paged through all the others in one round."""
    tmp = Path(tempfile.mkdtemp(prefix="teenet-board-paging-"))
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in NAMES}
    publics = {n: k.public_key() for n, k in keys.items()}
    store = _store(tmp)
    board = CheckpointBoard(store.conn, store.lock, publics)
    chain = _chain(keys["bank"], N + 1)
    board.publish("bank", *chain[0])
    node_db = tmp / "clinic-node.db"
    clinic = Witness(_node_db(node_db), threading.RLock(),
                     "clinic", keys["clinic"], publics)
    first = clinic.run_once(board)
    for item in chain[1:N]:
        board.publish("bank", *item)
    reads = Reads(board)
    catch_up = clinic.run_once(reads)
    return {"keys": keys, "publics": publics, "store": store, "board": board, "chain": chain, "origin":
            default_origin(publics["bank"]), "node_db": node_db, "first": first, "catch_up": catch_up,
            "reads": (reads.pages, reads.rows), "clinic": clinic}


def test_every_page_of_a_long_board_is_bounded_in_rows_and_bytes(big):
    board, origin = big["board"], big["origin"]
    seen, pages_read = [], 0
    for page in pages(board.checkpoint_page, origin):
        assert len(page.rows) <= PAGE_ROWS
        seen += page.rows
        pages_read += 1
    assert len(seen) >= N and pages_read >= N // PAGE_ROWS
    # as the RPC answers it: bounded by rows, and by bytes when rows are large
    reply = board_reply(board, pb.CheckpointRequest(origin=origin, rows=ROWS_CHECKPOINTS, limit=10_000))
    assert len(reply.checkpoints) == PAGE_ROWS and reply.more and reply.rows == ROWS_CHECKPOINTS
    assert reply.ByteSize() < PAGE_BYTES
    small = CheckpointBoard(big["store"].conn, big["store"].lock, big["publics"], page_bytes=16 * 1024)
    reply = board_reply(small, pb.CheckpointRequest(origin=origin, rows=ROWS_CHECKPOINTS, after=reply.next_cursor))
    assert 0 < len(reply.checkpoints) < PAGE_ROWS and reply.more and reply.ByteSize() < 17 * 1024
    nxt = board_reply(small, pb.CheckpointRequest(origin=origin, rows=ROWS_CHECKPOINTS, after=reply.next_cursor))
    assert nxt.checkpoints[0].note != reply.checkpoints[-1].note  # the cursor moved on, nothing skipped:
    assert nxt.checkpoints[0].prev_size == Checkpoint.parse(reply.checkpoints[-1].note.split("\n\n")[0] + "\n").size
    # a client before paging is refused once its unpaged reply would not fit, and says why
    with pytest.raises(TransitionRefused, match="upgrade this client to a teenet that pages"):
        board_reply(small, pb.CheckpointRequest(origin=origin))
    legacy = board_reply(board, pb.CheckpointRequest(origin=origin, min_size=N - 1))  # it still fits: served
    assert [Checkpoint.parse(c.note.split("\n\n")[0] + "\n").size for c in legacy.checkpoints][:1] == [N - 1]
    assert len(legacy.cosignatures) >= N - 1 and legacy.rows == 0
    with pytest.raises(TeenetError, match="rows must be"):
        board_reply(board, pb.CheckpointRequest(origin=origin, rows=9))


def test_a_witness_pages_through_thousands_of_checkpoints_and_cosigns_each_after_its_proof(big):
    board, origin, clinic = big["board"], big["origin"], big["clinic"]
    assert big["first"] == (1, [])  # first sight: size 1
    assert big["catch_up"] == (N - 1, [])  # every later one, each from the one before by its proof
    assert clinic.head(origin)[0] == N
    pages_read, rows_read = big["reads"]
    # the checkpoints in ceil((N-1)/PAGE_ROWS) pages, then the cosignatures of what it verified
    assert -(-(N - 1) // PAGE_ROWS) <= pages_read and rows_read < 3 * N
    assert witnessed(board, origin, N, big["publics"], 1) and not witnessed(board, origin, N, big["publics"], 2)
    status = {r["member"]: r for r in clinic.status(quorum=1)}["bank"]
    assert (status["cosigned_size"], status["cosignatures"], status["witnessed"]) == (N, 1, True)


def test_a_restarted_witness_resumes_from_its_durable_cursors_without_rereading_history(big):
    board, origin, keys, publics = big["board"], big["origin"], big["keys"], big["publics"]
    again = Witness(_node_db(big["node_db"]), threading.RLock(), "clinic", keys["clinic"], publics)
    assert again.cursors(origin) == big["clinic"].cursors(origin) != (0, 0)
    reads = Reads(board)
    assert again.run_once(reads) == (0, [])
    assert reads.rows == 0 and reads.pages == 2  # one empty page of checkpoints, one of cosignatures
    board.publish("bank", *big["chain"][N])
    reads = Reads(board)
    assert again.run_once(reads) == (1, [])
    assert again.head(origin)[0] == N + 1
    # the new checkpoint; its cosignatures: of the size verified, past the cursor, the recount
    assert reads.rows <= 4


def test_the_quorum_of_one_tree_head_is_judged_on_a_bounded_read(big):
    board, origin, publics = big["board"], big["origin"], big["publics"]
    body = big["chain"][N // 2 - 1][0].split("\n\n")[0] + "\n"
    head = Checkpoint.parse(body)
    reads = Reads(board)
    s = quorum_state(reads, log="audit", member="bank", key=publics["bank"], head=head, witnesses=publics, quorum=1)
    assert (s.state, s.cosigned_size) == ("witnessed", N // 2), s.detail
    # one page of a few checkpoints from that size, one of the cosignatures of exactly those sizes
    assert reads.pages == 2 and reads.rows <= 2 * QUORUM_PAGE_ROWS
    late = Checkpoint.parse(big["chain"][N - 100][0].split("\n\n")[0] + "\n")
    reads = Reads(board)
    s = quorum_state(reads, log="audit", member="bank", key=publics["bank"], head=late, witnesses=publics, quorum=2)
    assert s.state == "unwitnessed" and s.cosignatures == 1  # no second witness: it walks to the end, in pages
    assert reads.pages >= 2 * (100 // QUORUM_PAGE_ROWS)


def test_a_cosignature_is_posted_before_the_cursor_moves_past_its_checkpoint(tmp_path):
    """The coordinator goes away in the middle of a page: the witness stored the head and
    may not have posted its cosignature; its cursor has not moved, so the next round does."""
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in NAMES}
    publics = {n: k.public_key() for n, k in keys.items()}
    store = _store(tmp_path)
    board = CheckpointBoard(store.conn, store.lock, publics)
    chain = _chain(keys["bank"], 200)
    board.publish("bank", *chain[0])
    lab = Witness(_node_db(tmp_path / "lab.db"), threading.RLock(), "lab", keys["lab"], publics)
    lab.run_once(board)
    for item in chain[1:]:
        board.publish("bank", *item)
    origin = default_origin(publics["bank"])
    before = lab.cursors(origin)

    class GoneAt(Reads):
        def __init__(self, board, posts):
            super().__init__(board)
            self.posts = posts

        def post_cosignature(self, *args):
            if self.posts == 0:
                raise ConnectionError("coordinator unavailable")
            self.posts -= 1
            return self.board.post_cosignature(*args)

    with pytest.raises(ConnectionError):
        lab.run_once(GoneAt(board, 100))
    assert lab.head(origin)[0] == 102  # heads 2..101 posted, 102 stored but not posted
    assert lab.cursors(origin) == before  # mid-page: the cursor stayed
    assert not witnessed(board, origin, 102, publics, 1)
    assert lab.run_once(board) == (200 - 102, [])
    for size in (101, 102, 103, 200):
        assert witnessed(board, origin, size, publics, 1), size


def test_a_split_view_is_caught_across_pages_even_behind_the_cosignature_cursor(tmp_path):
    """The board shows the clinic the bank's log and the lab a fork of it at size 300. The
    lab cosigns the fork before the clinic is shown size 300 at all, and the clinic's
    cursor passes that cosignature (hundreds of cosignatures, pages of them, go by); once
    the clinic verifies its own 300 it still finds the lab's, and the lab finds the clinic's."""
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in NAMES}
    publics = {n: k.public_key() for n, k in keys.items()}
    boards = {}
    for name in ("common", "a", "b"):
        store = _store(tmp_path / name if (tmp_path / name).mkdir() is None else tmp_path)
        boards[name] = CheckpointBoard(store.conn, store.lock, publics)
    real, fork = _chain(keys["bank"], 300), _chain(keys["bank"], 300, fork_at=300)
    assert real[298] == fork[298] and real[299] != fork[299]

    class View:
        """A malicious coordinator: its own checkpoints per witness, one cosignature store."""

        def __init__(self, own):
            self.own = own

        def __getattr__(self, name):
            return getattr(boards["common"] if name in ("cosignature_page", "post_cosignature") else self.own, name)

    view_a, view_b = View(boards["a"]), View(boards["b"])
    boards["a"].publish("bank", *real[0])
    boards["b"].publish("bank", *fork[0])
    clinic = Witness(sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False),
                     threading.RLock(), "clinic", keys["clinic"], publics)
    lab = Witness(sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False),
                  threading.RLock(), "lab", keys["lab"], publics)
    assert clinic.run_once(view_a) == (1, []) and lab.run_once(view_b) == (1, [])
    for i in range(1, 299):
        boards["a"].publish("bank", *real[i])
        boards["b"].publish("bank", *fork[i])
    boards["b"].publish("bank", *fork[299])
    assert clinic.run_once(view_a) == (298, [])
    assert lab.run_once(view_b) == (299, [])  # its 300 is the fork
    assert clinic.run_once(view_a) == (0, [])  # no 300 shown to it yet: the lab's cosignature judged nothing
    origin = default_origin(publics["bank"])
    assert clinic.cursors(origin)[1] > PAGE_ROWS  # its cursor is past hundreds of cosignatures, the fork's too
    boards["a"].publish("bank", *real[299])
    cosigned, raised = clinic.run_once(view_a)
    assert cosigned == 1 and [(e.kind, e.witness) for e in raised] == [("split_view", "lab")]
    assert "\n300\n" in raised[0].evidence()["conflicting"]
    cosigned, raised = lab.run_once(view_b)
    assert [(e.member, e.kind, e.witness) for e in raised] == [("bank", "split_view", "clinic")]
    assert clinic.blocked("bank") and lab.blocked("bank")


def test_a_board_that_does_not_page_or_does_not_move_its_cursor_is_refused(big):
    board, origin = big["board"], big["origin"]

    class OldCoordinator:
        """A coordinator before paging: it does not know fields 64-67, so it reads only the
        origin and min_size of a request, and answers the old way (the same reply function)."""

        def GetCheckpoints(self, request, timeout=None):
            old = pb.CheckpointRequest(origin=request.origin, min_size=request.min_size)
            return board_reply(board, old)

    with pytest.raises(TeenetError, match="does not page its replies .*upgrade the coordinator"):
        GrpcBoard(OldCoordinator()).checkpoint_page(origin, min_size=N)

    class Stuck(Reads):
        def checkpoint_page(self, origin, **where):
            page = self.board.checkpoint_page(origin, **where)
            return Page(page.rows, where.get("after", 0), True, page.latest_size)  # "more", the cursor unmoved

    with pytest.raises(TeenetError, match="did not advance it"):
        for _ in pages(Stuck(board).checkpoint_page, origin):
            pass


def test_a_witness_without_a_kept_cursor_starts_at_its_head_not_at_the_start(big):
    """A node.db from before paging has heads but no cursors: its first paged round reads
    the checkpoints from its head on, not the history."""
    board, origin, clinic = big["board"], big["origin"], big["clinic"]
    with clinic._lock:
        clinic._conn.execute("DELETE FROM witness_cursors WHERE origin = ?", (origin,))
    reads = Reads(board)
    assert clinic.run_once(reads) == (0, [])
    assert reads.checkpoint_rows == 1  # the one at its head's size (cosignatures: judged once, from 0)
    assert clinic.cursors(origin)[0] > N
    reads = Reads(board)
    assert clinic.run_once(reads) == (0, []) and reads.rows == 0


def test_a_witness_whose_board_starts_over_reads_it_from_the_start(tmp_path):
    """A coordinator store restored or replaced: its sequence numbers are behind the
    witness's cursors. The witness reads it again from the start and so still catches a
    second history of the size it cosigned (here: a fork shown only on the new board)."""
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in NAMES}
    publics = {n: k.public_key() for n, k in keys.items()}
    first = CheckpointBoard(_store(tmp_path).conn, threading.RLock(), publics)
    for item in _chain(keys["bank"], 40):
        first.publish("bank", *item)
    lab = Witness(_node_db(tmp_path / "lab.db"), threading.RLock(), "lab", keys["lab"], publics)
    assert lab.run_once(first) == (1, [])  # first sight: 40
    origin = default_origin(publics["bank"])
    assert lab.cursors(origin)[0] == 40
    (tmp_path / "new").mkdir()
    second = CheckpointBoard(_store(tmp_path / "new").conn, threading.RLock(), publics)
    second.publish("bank", _chain(keys["bank"], 40, fork_at=40)[-1][0], 0, [])
    cosigned, raised = lab.run_once(second)
    assert cosigned == 0 and [(e.member, e.kind) for e in raised] == [("bank", "inconsistent")]


def test_migration_6_keeps_every_cosignature_of_an_older_board_in_arrival_order(tmp_path):
    from teenet.coordinator.store import MIGRATIONS

    path = tmp_path / "coordinator.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version, sql in MIGRATIONS[:-1]:  # a board before paging
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    assert MIGRATIONS[-1][0] == 6
    rows = [("o", 3, "lab", "b3", "l3", 2.0), ("o", 1, "clinic", "b1", "l1", 1.0), ("o", 2, "lab", "b2", "l2", 3.0)]
    conn.executemany("INSERT INTO checkpoint_cosignatures VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    store = CoordinatorStore(path)
    assert store.schema_version() == 6
    got = store.conn.execute("SELECT id, size, witness FROM checkpoint_cosignatures ORDER BY id").fetchall()
    assert got == [(1, 1, "clinic"), (2, 3, "lab"), (3, 2, "lab")]
    board = CheckpointBoard(store.conn, store.lock, {})
    page = board.cosignature_page("o", after=1)
    assert [c.body for c in page.rows] == ["b3", "b2"] and page.next_cursor == 3 and not page.more
