"""Publishing and witnessing the members' audit logs (issue 14, docs/architecture.md "Witnessed logs").

Every member node (data and compute) publishes the signed tree heads of its audit log
(teenet/audit.py: C2SP checkpoints in signed notes, origin "teenet/audit/<key hash>", signed
with the node's Ed25519 signing key) to the coordinator's checkpoint board, each with the
RFC 9162 consistency proof from the previous checkpoint published for that origin. The
board keeps them durably; it holds no member key, so it cannot make one.

Every member node is also a witness of the others: it fetches their new checkpoints,
checks the signature under the member's key from the consortium file and the consistency
proof from the head it verified last (kept in node.db, tables `witness_*`), cosigns each
verified head with its own signing key (C2SP tlog-cosignature `cosignature/v1`, key name
= its member name) and posts the cosignature. It also reads every other witness's
cosignatures. Either of these is an *equivocation* by the log's owner:

* a checkpoint that does not extend the head this witness verified (its consistency proof
  fails, or it has the same size and another root): a rewritten history;
* a cosignature, validly made by a member, on a checkpoint of the same origin and size as
  one this witness verified but with another root, the body also carrying the owner's own
  valid signature: a split view, where different witnesses were shown different logs. Each
  witness posts the owner's signature line(s) beside its cosignature line for this reason;
  a conflicting body without the owner's signature is the cosigner's word only and is
  ignored, so one lying member cannot frame (and block) an owner.

An equivocation is recorded durably with both checkpoints as evidence (and audited by the
caller), and the witness refuses new jobs involving that member (`member.equivocated`)
until its operator acknowledges it (`teenet audit acknowledge MEMBER`). Acknowledging also
forgets the verified head of that log, so the next checkpoint the member publishes becomes
the new starting point: the operator has accepted the history as it now stands.

`witnessed(origin, size)` says whether a checkpoint carries the consortium's
`witness_quorum` of valid cosignatures.

Paged board reads. The board only grows (every job adds tree heads), so nobody reads it
whole: a read names one origin, which rows (checkpoints or cosignatures), a size range and
a cursor (`after`, the board sequence number of the last row the reader has), and gets at
most `PAGE_ROWS` rows and about `PAGE_BYTES` bytes with `next_cursor` and `more`. A witness
keeps its two cursors per log durably in node.db (`witness_cursors`) and moves them only
after every row before them is done (its cosignature posted, its split views judged), so a
restart re-reads at most one page and never the history. Readers that judge one tree head
(`witnessed`, `quorum_state`) ask for the checkpoints at and beyond its size and the
cosignatures of exactly those sizes. A request without paging (a client before it) is served
the old way only while the reply fits `PAGE_BYTES`, and refused with a message saying so
beyond; a board that does not page is refused by this client with a message saying so.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.audit import AuditLog, default_origin
from teenet.errors import InputError, TeenetError, VerificationError
from teenet.tlog import (HASH_SIZE, Checkpoint, SignedNote, cosign, verify_consistency, verify_cosignature,
                         verify_note)

MAX_PROOF_HASHES = 128
MAX_FETCH = 256            # checkpoints in one unpaged (pre-paging) reply, as before paging
MAX_BOARD_TEXT = 64 * 1024  # the largest note, cosignature body or line the board takes
PAGE_ROWS = 256            # rows in one paged reply at most
PAGE_BYTES = 1 << 20       # one reply's rows stop short of this (but hold one row at least): well
#                            under gRPC's 4 MiB (teenet/pki.py), a row being at most ~70 KiB
QUORUM_PAGE_ROWS = 16      # checkpoints a quorum lookup reads per page (it stops at the first witnessed)
ROWS_CHECKPOINTS, ROWS_COSIGNATURES, ROWS_NONE = 1, 2, 3  # CheckpointRequest.rows

# Node side (node.db): what this node has verified and cosigned, and the alarms it raised.
WITNESS_SCHEMA = """
CREATE TABLE IF NOT EXISTS witness_heads (
    origin      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    root        TEXT NOT NULL,
    note        TEXT NOT NULL,
    cosigned_at REAL NOT NULL,
    cosignatures INTEGER NOT NULL DEFAULT 0,  -- valid cosignatures on it the board showed last
    PRIMARY KEY (origin, size)
);
CREATE TABLE IF NOT EXISTS witness_cursors (
    origin       TEXT PRIMARY KEY,
    checkpoints  INTEGER NOT NULL DEFAULT 0,  -- board sequence of the last checkpoint row done
    cosignatures INTEGER NOT NULL DEFAULT 0   -- board sequence of the last cosignature row judged
);
CREATE TABLE IF NOT EXISTS witness_alarms (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    member          TEXT NOT NULL,
    origin          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    evidence        TEXT NOT NULL,
    raised_at       REAL NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at REAL
);
"""



@dataclass(frozen=True)
class Published:
    """One checkpoint on the board: the signed note and the proof from `prev_size`."""

    publisher: str
    note: str
    prev_size: int
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class Cosignature:
    """A witness's cosignature line over a checkpoint body."""

    witness: str
    body: str
    line: str


@dataclass(frozen=True)
class Page:
    """One bounded read of the board: rows of one origin past a cursor, in board order."""

    rows: list[Any]      # Published or Cosignature
    next_cursor: int     # pass as `after` for the next page
    more: bool           # more rows match past next_cursor
    latest_size: int = 0


class Board(Protocol):
    """Where checkpoints and cosignatures are published (the coordinator, or a test's store).

    The pages take rows of `origin` past board sequence `after` with min_size <= size <=
    max_size (0: no upper bound), at most `limit` of them (and PAGE_BYTES)."""

    def latest_size(self, origin: str) -> int: ...
    def publish(self, publisher: str, note: str, prev_size: int, proof: Sequence[bytes]) -> None: ...
    def checkpoint_page(self, origin: str, *, after: int = 0, min_size: int = 0, max_size: int = 0,
                        limit: int = PAGE_ROWS) -> Page: ...
    def cosignature_page(self, origin: str, *, after: int = 0, min_size: int = 0, max_size: int = 0,
                         limit: int = PAGE_ROWS) -> Page: ...
    def post_cosignature(self, witness: str, body: str, line: str) -> None: ...
    def origins(self) -> list[str]: ...


def pages(read: Any, origin: str, *, after: int = 0, min_size: int = 0, max_size: int = 0,
          limit: int = PAGE_ROWS) -> Iterable[Page]:
    """Every page of `read` (a board's checkpoint_page or cosignature_page) from `after` on,
    until `more` is false. A board whose cursor does not advance is refused, not looped on."""
    while True:
        page = read(origin, after=after, min_size=min_size, max_size=max_size, limit=limit)
        yield page
        if not page.more:
            return
        if page.next_cursor <= after or not page.rows:
            raise TeenetError("the coordinator's checkpoint board said there is more past its cursor but did not "
                              "advance it; not reading it further")
        after = page.next_cursor


def resumed(read: Any, origin: str, *, after: int, min_size: int = 0) -> Iterable[Page]:
    """`pages` from a reader's kept cursor; from the start instead when the board's rows end
    before it (an empty page whose cursor is behind `after`: a coordinator store restored
    or replaced), so nothing it holds now goes unread."""
    first = read(origin, after=after, min_size=min_size, max_size=0, limit=PAGE_ROWS)
    if after > 0 and not first.rows and first.next_cursor < after:
        yield from pages(read, origin, after=0, min_size=min_size)
        return
    yield first
    if first.more:
        if first.next_cursor <= after or not first.rows:
            raise TeenetError("the coordinator's checkpoint board said there is more past its cursor but did not "
                              "advance it; not reading it further")
        yield from pages(read, origin, after=first.next_cursor, min_size=min_size)


def cosignatures_between(board: Board, origin: str, min_size: int, max_size: int) -> list[Cosignature]:
    """The cosignatures on checkpoints of `origin` with min_size <= size <= max_size."""
    return [c for p in pages(board.cosignature_page, origin, min_size=min_size, max_size=max(1, max_size))
            for c in p.rows]


def _row_bytes(row: Any) -> int:
    if isinstance(row, Published):
        return len(row.publisher.encode()) + len(row.note.encode()) + (HASH_SIZE + 2) * len(row.proof) + 16
    return len(row.witness.encode()) + len(row.body.encode()) + len(row.line.encode()) + 16


def _bounded(rows: Sequence[tuple[int, Any]], after: int, limit: int, page_bytes: int, last_seq: int) -> Page:
    """Rows (seq, row) fetched `limit`+1 at most: the page that fits `limit` and `page_bytes`.
    An empty page's cursor is min(after, the origin's last sequence): below `after` when the
    board's rows end before it (a board restored or replaced), so the reader starts over."""
    taken: list[Any] = []
    size, cursor = 0, min(after, last_seq)
    for seq, row in rows[:limit]:
        n = _row_bytes(row)
        if taken and size + n > page_bytes:
            break
        taken.append(row)
        size, cursor = size + n, seq
    return Page(taken, cursor, len(taken) < len(rows))


def _limit(limit: int) -> int:
    return PAGE_ROWS if limit <= 0 else min(int(limit), PAGE_ROWS)


def _parse_note(text: str, *, field: str = "note") -> tuple[SignedNote, Checkpoint]:
    try:
        note = SignedNote.parse(text)
        return note, Checkpoint.parse(note.body)
    except VerificationError as exc:
        raise InputError(f"the {field} is not a signed C2SP checkpoint ({exc.check})", field=field) from None


def _is_checkpoint_body(body: str) -> bool:
    try:
        Checkpoint.parse(body)
        return True
    except VerificationError:
        return False


def _is_note(text: str) -> bool:
    try:
        _parse_note(text)
        return True
    except InputError:
        return False


def member_origins(members: Mapping[str, ed25519.Ed25519PublicKey]) -> dict[str, tuple[str, ed25519.Ed25519PublicKey]]:
    """origin -> (member, key) for every member whose audit log is witnessed."""
    return {default_origin(key): (name, key) for name, key in members.items()}


class CheckpointBoard:
    """The coordinator's durable board. It checks a publication is signed by its publisher
    (so nobody fills it with others' names) and extends the last one published for the
    origin by its stated `prev_size`; it does not judge consistency: the witnesses do."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock,
                 members: Mapping[str, ed25519.Ed25519PublicKey], *, page_bytes: int = PAGE_BYTES) -> None:
        self._conn = conn
        self._lock = lock
        self.page_bytes = page_bytes
        self._members = dict(members)
        self._origins = member_origins(members)

    def register(self, name: str, key: ed25519.Ed25519PublicKey) -> None:
        """Add a log that is not a member's (the coordinator's own)."""
        self._members[name] = key
        self._origins[default_origin(key)] = (name, key)

    def _tx(self):
        conn = self._conn

        class _Tx:
            def __enter__(self_inner):
                conn.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, exc, tb):
                conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
                return False
        return _Tx()

    def latest_size(self, origin: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT size FROM published_checkpoints WHERE origin = ? "
                                     "ORDER BY id DESC LIMIT 1", (origin,)).fetchone()
        return int(row[0]) if row else 0

    def publish(self, publisher: str, note: str, prev_size: int, proof: Sequence[bytes]) -> None:
        if len(note.encode()) > MAX_BOARD_TEXT:
            raise InputError(f"the checkpoint note is over {MAX_BOARD_TEXT} bytes", field="note")
        signed, cp = _parse_note(note)
        owner = self._origins.get(cp.origin)
        if owner is None or owner[0] != publisher:
            raise InputError(f"'{publisher}' may publish only its own log's checkpoints", field="note")
        try:
            verify_note(signed, cp.origin, owner[1])
        except VerificationError:
            raise InputError("the checkpoint is not signed by its publisher's key", field="note") from None
        if len(proof) > MAX_PROOF_HASHES or any(len(h) != HASH_SIZE for h in proof):
            raise InputError(f"the proof is at most {MAX_PROOF_HASHES} hashes of 32 bytes", field="proof")
        with self._lock, self._tx():
            last = self.latest_size(cp.origin)
            if prev_size != last or cp.size < prev_size:
                raise InputError(f"prev_size must be the last published size of this log ({last}), "
                                 f"and the checkpoint no smaller", field="prev_size")
            self._conn.execute(
                "INSERT INTO published_checkpoints (origin, size, publisher, note, prev_size, proof, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (cp.origin, cp.size, publisher, note, prev_size,
                 json.dumps([base64.b64encode(h).decode() for h in proof]), time.time()))

    @staticmethod
    def _published(r: Sequence[Any]) -> Published:
        return Published(r[0], r[1], int(r[2]), tuple(base64.b64decode(h) for h in json.loads(r[3])))

    def _range(self, min_size: int, max_size: int) -> tuple[str, tuple[int, ...]]:
        if max_size > 0:
            return "size >= ? AND size <= ?", (max(0, min_size), max_size)
        return "size >= ?", (max(0, min_size),)

    def _last_seq(self, table: str, origin: str) -> int:
        with self._lock:
            row = self._conn.execute(f"SELECT max(id) FROM {table} WHERE origin = ?", (origin,)).fetchone()
        return int(row[0] or 0)

    def checkpoint_page(self, origin: str, *, after: int = 0, min_size: int = 0, max_size: int = 0,
                        limit: int = PAGE_ROWS) -> Page:
        where, args = self._range(min_size, max_size)
        limit = _limit(limit)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT id, publisher, note, prev_size, proof FROM published_checkpoints WHERE origin = ? AND id > ? "
                f"AND {where} ORDER BY id LIMIT ?", (origin, max(0, after), *args, limit + 1)).fetchall()
        page = _bounded([(int(r[0]), self._published(r[1:])) for r in rows], max(0, after), limit, self.page_bytes,
                        self._last_seq("published_checkpoints", origin) if not rows else after)
        return Page(page.rows, page.next_cursor, page.more, self.latest_size(origin))

    def cosignature_page(self, origin: str, *, after: int = 0, min_size: int = 0, max_size: int = 0,
                         limit: int = PAGE_ROWS) -> Page:
        where, args = self._range(min_size, max_size)
        limit = _limit(limit)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT id, witness, body, line FROM checkpoint_cosignatures WHERE origin = ? AND id > ? "
                f"AND {where} ORDER BY id LIMIT ?", (origin, max(0, after), *args, limit + 1)).fetchall()
        page = _bounded([(int(r[0]), Cosignature(*r[1:])) for r in rows], max(0, after), limit, self.page_bytes,
                        self._last_seq("checkpoint_cosignatures", origin) if not rows else after)
        return Page(page.rows, page.next_cursor, page.more, self.latest_size(origin))

    def unpaged(self, origin: str, min_size: int) -> tuple[list[Published], list[Cosignature]]:
        """What a client before paging asks for: up to MAX_FETCH checkpoints from `min_size`
        and every cosignature of the log; refused once that is over PAGE_BYTES."""
        with self._lock:
            pubs = [self._published(r) for r in self._conn.execute(
                "SELECT publisher, note, prev_size, proof FROM published_checkpoints WHERE origin = ? AND size >= ? "
                "ORDER BY id LIMIT ?", (origin, max(0, min_size), MAX_FETCH))]
            size = sum(_row_bytes(p) for p in pubs)
            cosigs: list[Cosignature] = []
            rows = self._conn.execute("SELECT witness, body, line FROM checkpoint_cosignatures WHERE origin = ? "
                                      "ORDER BY size, witness", (origin,))
            while True:
                if size > self.page_bytes:
                    raise UnpagedReadRefused(
                        f"this log's checkpoints and cosignatures are over the {self.page_bytes} bytes one unpaged "
                        "board read may return; upgrade this client to a teenet that pages board reads "
                        "(CheckpointRequest.rows)")
                r = rows.fetchone()
                if r is None:
                    break
                cosigs.append(Cosignature(*r))
                size += _row_bytes(cosigs[-1])
        return pubs, cosigs

    def post_cosignature(self, witness: str, body: str, line: str) -> None:
        if len(body.encode()) + len(line.encode()) > MAX_BOARD_TEXT:
            raise InputError(f"the cosignature is over {MAX_BOARD_TEXT} bytes", field="cosignature")
        key = self._members.get(witness)
        if key is None:
            raise InputError(f"'{witness}' is not a witness of this consortium", field="witness")
        try:
            cp = Checkpoint.parse(body)
            verify_cosignature(SignedNote(body, SignedNote.parse(body + "\n" + line).signatures), witness, key)
        except VerificationError as exc:
            raise InputError(f"the cosignature does not verify under '{witness}''s key ({exc.check})",
                             field="cosignature") from None
        with self._lock, self._tx():
            self._conn.execute(
                "INSERT OR IGNORE INTO checkpoint_cosignatures (origin, size, witness, body, line, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", (cp.origin, cp.size, witness, body, line, time.time()))

    def origins(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT DISTINCT origin FROM published_checkpoints ORDER BY 1")]


class UnpagedReadRefused(TeenetError):
    """An unpaged board read (a client before paging) that no longer fits one reply."""


def publish(log: AuditLog, publisher: str, board: Board) -> int:
    """Publish every tree head of `log` the board does not have yet; returns how many."""
    last = board.latest_size(log.origin)
    count = 0
    for text in log.tree_heads():
        _, cp = _parse_note(text)
        if cp.size <= last:
            continue
        board.publish(publisher, text, last, log.consistency_proof(last, cp.size) if last else [])
        last = cp.size
        count += 1
    return count


@dataclass(frozen=True)
class Equivocation:
    member: str
    origin: str
    kind: str          # "inconsistent" (history rewritten) or "split_view" (two roots at one size)
    ours: str          # the checkpoint (signed note or body) this witness verified
    theirs: str        # the one that contradicts it
    witness: str = ""  # for a split view: whose cosignature showed it

    def evidence(self) -> dict[str, Any]:
        return {"member": self.member, "origin": self.origin, "kind": self.kind, "verified": self.ours,
                "conflicting": self.theirs, "cosigned_by": self.witness}


def count_cosignatures(cosignatures: Iterable[Cosignature], body: str,
                       witnesses: Mapping[str, ed25519.Ed25519PublicKey]) -> int:
    """How many distinct witnesses validly cosigned exactly `body`."""
    names = set()
    for c in cosignatures:
        key = witnesses.get(c.witness)
        if key is None or c.body != body:
            continue
        try:
            verify_cosignature(SignedNote(body, SignedNote.parse(body + "\n" + c.line).signatures), c.witness, key)
        except VerificationError:
            continue
        names.add(c.witness)
    return len(names)


def witnessed(board: Board, origin: str, size: int, members: Mapping[str, ed25519.Ed25519PublicKey],
              quorum: int) -> bool:
    """Does a checkpoint of `origin` at `size`, validly signed by its owner, carry `quorum`
    valid cosignatures of members other than the owner (on one and the same root)?"""
    owner = member_origins(members).get(origin)
    if owner is None:
        return False
    witnesses = {n: k for n, k in members.items() if n != owner[0]}
    cosigs: list[Cosignature] | None = None
    for page in pages(board.checkpoint_page, origin, min_size=size, max_size=max(1, size)):
        for pub in page.rows:
            try:
                signed, cp = _parse_note(pub.note)
                if cp.size != size:
                    continue
                verify_note(signed, origin, owner[1])
            except (InputError, VerificationError):
                continue
            if cosigs is None:
                cosigs = cosignatures_between(board, origin, size, size)
            if count_cosignatures(cosigs, signed.body, witnesses) >= quorum:
                return True
    return False


class Witness:
    """One node's witness: its durable state in `conn` (node.db) and its cosigning key."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock, name: str,
                 key: ed25519.Ed25519PrivateKey | None, members: Mapping[str, ed25519.Ed25519PublicKey],
                 extra_logs: Mapping[str, ed25519.Ed25519PublicKey] | None = None) -> None:
        """`key` signs cosignatures; None for a reader of the state (`teenet audit witness-status`).
        `members` are the witnesses (whose cosignatures count) and own the logs witnessed;
        `extra_logs` are further logs witnessed whose owners do not witness (the coordinator's)."""
        self._conn = conn
        self._lock = lock
        self.name = name
        self._key = key
        self._members = dict(members)
        logs = {**dict(extra_logs or {}), **self._members}
        self._origins = {o: v for o, v in member_origins(logs).items() if v[0] != name}
        with self._lock:
            self._conn.executescript(WITNESS_SCHEMA)

    # --- state ---------------------------------------------------------------------------

    def head(self, origin: str) -> tuple[int, bytes, str] | None:
        with self._lock:
            row = self._conn.execute("SELECT size, root, note FROM witness_heads WHERE origin = ? "
                                     "ORDER BY size DESC LIMIT 1", (origin,)).fetchone()
        return (int(row[0]), bytes.fromhex(row[1]), row[2]) if row else None

    def _root_at(self, origin: str, size: int) -> tuple[bytes, str] | None:
        with self._lock:
            row = self._conn.execute("SELECT root, note FROM witness_heads WHERE origin = ? AND size = ?",
                                     (origin, size)).fetchone()
        return (bytes.fromhex(row[0]), row[1]) if row else None

    def blocked(self, member: str) -> bool:
        """Has this witness an unacknowledged equivocation by `member`?"""
        with self._lock:
            return self._conn.execute("SELECT 1 FROM witness_alarms WHERE member = ? AND acknowledged_at IS NULL",
                                      (member,)).fetchone() is not None

    def alarms(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        sql = "SELECT id, member, origin, kind, evidence, raised_at, acknowledged_by, acknowledged_at FROM witness_alarms"
        with self._lock:
            rows = self._conn.execute(sql + (" WHERE acknowledged_at IS NULL" if open_only else "") + " ORDER BY id")
            return [{"id": r[0], "member": r[1], "origin": r[2], "kind": r[3], "evidence": json.loads(r[4]),
                     "raised_at": r[5], "acknowledged_by": r[6], "acknowledged_at": r[7]} for r in rows.fetchall()]

    def acknowledge(self, member: str, operator: str) -> int:
        """Close `member`'s open alarms and forget its verified heads; returns how many closed."""
        if member not in self._members and member not in {n for n, _ in self._origins.values()}:
            raise InputError(f"'{member}' is not a member of this consortium", field="member")
        origins = [o for o, (n, _) in self._origins.items() if n == member]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                n = self._conn.execute("UPDATE witness_alarms SET acknowledged_by = ?, acknowledged_at = ? "
                                       "WHERE member = ? AND acknowledged_at IS NULL",
                                       (operator, time.time(), member)).rowcount
                for origin in origins:
                    self._conn.execute("DELETE FROM witness_heads WHERE origin = ?", (origin,))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return n

    def _raise(self, e: Equivocation) -> bool:
        """Record `e` durably; False when an alarm for that log is already open."""
        with self._lock:
            if self._conn.execute("SELECT 1 FROM witness_alarms WHERE origin = ? AND acknowledged_at IS NULL",
                                  (e.origin,)).fetchone():
                return False
            self._conn.execute("INSERT INTO witness_alarms (member, origin, kind, evidence, raised_at) "
                               "VALUES (?, ?, ?, ?, ?)",
                               (e.member, e.origin, e.kind, json.dumps(e.evidence(), sort_keys=True), time.time()))
            self._conn.commit()
        return True

    def _accept(self, origin: str, cp: Checkpoint, note: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO witness_heads (origin, size, root, note, cosigned_at) "
                               "VALUES (?, ?, ?, ?, ?)", (origin, cp.size, cp.root_hash.hex(), note, time.time()))
            self._conn.commit()

    # --- one round -------------------------------------------------------------------------

    def cursors(self, origin: str) -> tuple[int, int]:
        """(checkpoints, cosignatures): the board sequence of the last row of each this
        witness is done with, for `origin`."""
        with self._lock:
            row = self._conn.execute("SELECT checkpoints, cosignatures FROM witness_cursors WHERE origin = ?",
                                     (origin,)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _move(self, origin: str, *, checkpoints: int | None = None, cosignatures: int | None = None) -> None:
        """Move a cursor durably (only once everything before it is done)."""
        cp, cs = self.cursors(origin)
        with self._lock:
            self._conn.execute("INSERT INTO witness_cursors (origin, checkpoints, cosignatures) VALUES (?, ?, ?) "
                               "ON CONFLICT (origin) DO UPDATE SET checkpoints = excluded.checkpoints, "
                               "cosignatures = excluded.cosignatures",
                               (origin, cp if checkpoints is None else checkpoints,
                                cs if cosignatures is None else cosignatures))
            self._conn.commit()

    def check_log(self, board: Board, origin: str) -> tuple[int, list[Equivocation]]:
        """Verify and cosign `origin`'s new checkpoints, then judge the others' new cosignatures.

        Returns (how many heads were cosigned, the equivocations newly raised). It reads the
        board in pages past its durable cursors (see "Paged board reads" above). The head is
        stored durably before its cosignature is posted, and the cursor moves past a page
        only once every cosignature of it is posted: a page cut short by a crash is read
        again, and a head already stored is cosigned again (the board keeps one per body).
        """
        member, key = self._origins[origin]
        if self._key is None:
            raise InputError("this witness has no signing key: it reads its state only")
        if self.blocked(member):
            return 0, []
        raised: list[Equivocation] = []
        cosigned = 0
        head = self.head(origin)
        after, after_cosig = self.cursors(origin)
        accepted: list[int] = []  # sizes this round made verified heads
        if head is None:
            # A log this witness has no head of (new to it, or acknowledged): its latest
            # checkpoint is the starting point, trusted on first sight.
            latest = board.latest_size(origin)
            if latest <= 0:
                return 0, []
            last: Published | None = None
            for page in pages(board.checkpoint_page, origin, min_size=latest):
                last = page.rows[-1] if page.rows else last
                after = page.next_cursor
            batches: Iterable[tuple[list[Published], int]] = [([last] if last else [], after)]
        else:
            # (nothing below its head can be judged: min_size skips it, e.g. on a cursor not
            # yet kept, as in a node.db from before paging)
            batches = ((page.rows, page.next_cursor)
                       for page in resumed(board.checkpoint_page, origin, after=after, min_size=head[0]))
        for rows, cursor in batches:
            for pub in rows:
                try:
                    signed, cp = _parse_note(pub.note)
                    verify_note(signed, origin, key)
                except (InputError, VerificationError):
                    continue  # not the member's word: the board's junk, not an equivocation
                if cp.origin != origin:
                    continue
                if head is None:
                    ok = True  # the first head this witness sees is its starting point
                elif cp.size == head[0]:
                    if cp.root_hash == head[1]:
                        # the head verified already: cosign it again (a no-op on the board,
                        # unless a crash came between storing it and posting its cosignature)
                        board.post_cosignature(self.name, signed.body, self._cosignature_line(signed, origin))
                        continue
                    ok = False
                elif cp.size > head[0] and pub.prev_size == head[0]:
                    try:
                        verify_consistency(head[0], cp.size, head[1], cp.root_hash, list(pub.proof))
                        ok = True
                    except VerificationError:
                        ok = False
                else:
                    continue  # a proof from a size this witness never verified: cannot judge it
                if not ok:
                    e = Equivocation(member, origin, "inconsistent", head[2], pub.note)
                    if self._raise(e):
                        raised.append(e)
                    return cosigned, raised
                self._accept(origin, cp, pub.note)
                board.post_cosignature(self.name, signed.body, self._cosignature_line(signed, origin))
                head = (cp.size, cp.root_hash, pub.note)
                accepted.append(cp.size)
                cosigned += 1
            self._move(origin, checkpoints=cursor)
        if head is None:
            return cosigned, raised
        # Split views: the others' cosignatures on the sizes verified just now (those posted
        # before them are behind the cursor), then every cosignature past the cursor.
        recount = bool(accepted)
        if accepted:
            e = self._split_view(cosignatures_between(board, origin, min(accepted), max(accepted)), origin, member)
            if e is not None:
                if self._raise(e):
                    raised.append(e)
                return cosigned, raised
        for page in resumed(board.cosignature_page, origin, after=after_cosig):
            e = self._split_view(page.rows, origin, member)
            if e is not None:
                if self._raise(e):
                    raised.append(e)
                return cosigned, raised
            recount = recount or any(Checkpoint.parse(c.body).size == head[0] for c in page.rows
                                     if _is_checkpoint_body(c.body))
            self._move(origin, cosignatures=page.next_cursor)
        if recount:
            witnesses = {n: k for n, k in self._members.items() if n != member}
            count = count_cosignatures(cosignatures_between(board, origin, head[0], head[0]),
                                       SignedNote.parse(head[2]).body, witnesses)
            with self._lock:
                self._conn.execute("UPDATE witness_heads SET cosignatures = ? WHERE origin = ? AND size = ?",
                                   (count, origin, head[0]))
                self._conn.commit()
        return cosigned, raised

    def _cosignature_line(self, signed: SignedNote, origin: str) -> str:
        """What this witness posts beside a checkpoint body it verified: the log owner's own
        signature line(s) on that body, then this witness's cosignature line. The owner's
        line makes a conflicting cosignature self-contained evidence: a split view is only
        ever judged on a body the owner signed (see `_split_view`)."""
        owner = SignedNote(signed.body, tuple(s for s in signed.signatures if s.name == origin))
        return owner.text()[len(signed.body) + 1:] + cosign(signed.body, self.name, self._key, int(time.time()))

    def _split_view(self, cosigs: Sequence[Cosignature], origin: str, member: str) -> Equivocation | None:
        """A split view: another witness's valid cosignature on a checkpoint of this log, at a
        size this witness verified, with another root, AND carrying the owner's own valid
        signature on that body. Without the owner's signature the conflicting body is the
        cosigning witness's word, not the owner's: one lying member could otherwise frame any
        owner (and block it at every witness) by cosigning a made-up root. Such a cosignature
        is ignored here (it counts towards no quorum either: its body is no checkpoint the
        owner published)."""
        owner_key = self._origins[origin][1]
        for c in cosigs:
            key = self._members.get(c.witness)
            if key is None or c.witness in (self.name, member):
                continue
            try:
                cp = Checkpoint.parse(c.body)
                note = SignedNote(c.body, SignedNote.parse(c.body + "\n" + c.line).signatures)
                verify_cosignature(note, c.witness, key)
                verify_note(note, origin, owner_key)  # the owner's word, not the witness's
            except VerificationError:
                continue
            if cp.origin != origin:
                continue
            ours = self._root_at(origin, cp.size)
            if ours is not None and ours[0] != cp.root_hash:
                return Equivocation(member, origin, "split_view", ours[1], c.body + "\n" + c.line, c.witness)
        return None

    def run_once(self, board: Board) -> tuple[int, list[Equivocation]]:
        """One round over every other member's log the board has."""
        total, raised = 0, []
        for origin in board.origins():
            if origin in self._origins:
                n, r = self.check_log(board, origin)
                total += n
                raised += r
        return total, raised

    def status(self, quorum: int = 1) -> list[dict[str, Any]]:
        """Each witnessed log: its member, the last size this node cosigned, how many valid
        cosignatures the board showed on it (this node's included) and whether that is a quorum."""
        out = []
        for origin, (member, _) in sorted(self._origins.items(), key=lambda kv: kv[1][0]):
            with self._lock:
                row = self._conn.execute("SELECT size, cosignatures FROM witness_heads WHERE origin = ? "
                                         "ORDER BY size DESC LIMIT 1", (origin,)).fetchone()
            size, count = (int(row[0]), int(row[1])) if row else (0, 0)
            out.append({"member": member, "origin": origin, "cosigned_size": size, "cosignatures": count,
                        "witnessed": bool(row) and count >= quorum, "blocked": self.blocked(member)})
        return out


class GrpcBoard:
    """The coordinator's board over its gRPC stub (teenet.v1.Coordinator)."""

    def __init__(self, stub: Any, timeout: float = 10.0) -> None:
        self._stub = stub
        self._timeout = timeout

    def _page(self, origin: str, rows: int, *, after: int = 0, min_size: int = 0, max_size: int = 0,
              limit: int = PAGE_ROWS) -> Any:
        from teenet.proto import teenet_pb2 as pb

        reply = self._stub.GetCheckpoints(pb.CheckpointRequest(origin=origin, min_size=min_size, after=after,
                                                               limit=limit, max_size=max_size, rows=rows),
                                          timeout=self._timeout)
        if reply.rows != rows:
            raise TeenetError("the coordinator's checkpoint board does not page its replies (a teenet before paged "
                              "board reads): upgrade the coordinator; this node reads the board only in bounded pages")
        return reply

    def latest_size(self, origin: str) -> int:
        return int(self._page(origin, ROWS_NONE).latest_size)

    def publish(self, publisher: str, note: str, prev_size: int, proof: Sequence[bytes]) -> None:
        from teenet.proto import teenet_pb2 as pb

        self._stub.PublishCheckpoint(pb.PublishedCheckpoint(publisher=publisher, note=note, prev_size=prev_size,
                                                            proof=list(proof)), timeout=self._timeout)

    def checkpoint_page(self, origin: str, *, after: int = 0, min_size: int = 0, max_size: int = 0,
                        limit: int = PAGE_ROWS) -> Page:
        r = self._page(origin, ROWS_CHECKPOINTS, after=after, min_size=min_size, max_size=max_size, limit=limit)
        return Page([Published(c.publisher, c.note, int(c.prev_size), tuple(c.proof)) for c in r.checkpoints],
                    int(r.next_cursor), bool(r.more), int(r.latest_size))

    def cosignature_page(self, origin: str, *, after: int = 0, min_size: int = 0, max_size: int = 0,
                         limit: int = PAGE_ROWS) -> Page:
        r = self._page(origin, ROWS_COSIGNATURES, after=after, min_size=min_size, max_size=max_size, limit=limit)
        return Page([Cosignature(c.witness, c.body, c.line) for c in r.cosignatures],
                    int(r.next_cursor), bool(r.more), int(r.latest_size))

    def post_cosignature(self, witness: str, body: str, line: str) -> None:
        from teenet.proto import teenet_pb2 as pb

        self._stub.PostCosignature(pb.CheckpointCosignature(witness=witness, body=body, line=line),
                                   timeout=self._timeout)

    def origins(self) -> list[str]:
        from teenet.proto import teenet_pb2 as pb

        return list(self._stub.GetCheckpoints(pb.CheckpointRequest(origin="", rows=ROWS_NONE),
                                              timeout=self._timeout).origins)


def witnessed_members(consortium: Any) -> dict[str, ed25519.Ed25519PublicKey]:
    """The members whose logs are published and witnessed: the data and compute nodes."""
    return {n: m.keys.signing for n, m in consortium.members.items() if m.role in ("data", "compute")}


def coordinator_log(consortium: Any) -> dict[str, ed25519.Ed25519PublicKey]:
    """The coordinator's log as a witnessed log ({name: audit key}), when the consortium file
    names its key (`coordinator.audit_key`); empty otherwise: that log is then unwitnessed."""
    key = getattr(consortium, "coordinator_audit_key", None)
    return {consortium.coordinator_name: key} if key is not None else {}


def node_round(log: AuditLog, name: str, witness: Witness, board: Board, audit: Any) -> tuple[int, int]:
    """A node's witnessing round: sign its own log's head if it grew, publish what the board
    lacks, then witness the others. Each equivocation is audited in this node's own log,
    with both checkpoints as evidence. Returns (published, cosigned)."""
    if log.entries(after=_last_checkpoint(log), limit=1):  # entries past the last signed head
        log.checkpoint()
    published = publish(log, name, board)
    cosigned, raised = witness.run_once(board)
    for e in raised:
        audit("member_equivocated", **e.evidence())
    return published, cosigned


def _last_checkpoint(log: AuditLog) -> int:
    cp = log.latest_checkpoint()
    return cp.seq if cp else 0


# Quorum of a result's log (teenet/lineage.py) --------------------------------------------------

CHECKPOINTS_FILE_FORMAT = "teenet/checkpoints/v1"


@dataclass
class QuorumState:
    """Whether a tree head a result names is covered by a witnessed checkpoint.

    `state` is "witnessed" (a checkpoint at or beyond the head's size, shown consistent
    with it by the owner's own published proofs, carries `quorum` valid cosignatures of
    distinct other members), "unwitnessed" (not yet, the board could not be read, or an
    unsigned consistency proof on it does not verify: `detail` says which) or "inconsistent"
    (the board holds the owner's own signed word contradicting the head: another root at
    its size, which no board can forge).
    """

    log: str
    member: str
    origin: str
    size: int
    quorum: int
    state: str = "unwitnessed"
    detail: str = ""
    cosigned_size: int = 0
    cosignatures: int = 0
    evidence: list[Published] = field(default_factory=list)  # what it was judged on (checkpoints_file)
    evidence_cosignatures: list[Cosignature] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"log": self.log, "member": self.member, "origin": self.origin, "size": self.size,
                "quorum": self.quorum, "state": self.state, "detail": self.detail,
                "cosigned_size": self.cosigned_size, "cosignatures": self.cosignatures}


def quorum_state(board: Board, *, log: str, member: str, key: ed25519.Ed25519PublicKey, head: Checkpoint,
                 witnesses: Mapping[str, ed25519.Ed25519PublicKey], quorum: int) -> QuorumState:
    """Walk the board's checkpoints of `head.origin` from the one at `head.size` (which must
    carry the same root), each later one only if its consistency proof from the previous
    holds, until one carries `quorum` valid cosignatures of `witnesses` (the owner never
    counts). Board errors are the caller's (see cli/lineage.py)."""
    origin = head.origin
    out = QuorumState(log, member, origin, head.size, quorum)
    witnesses = {n: k for n, k in witnesses.items() if n != member}
    cur: tuple[int, bytes] | None = None
    for pub, cosigs in _checkpoints_with_cosignatures(board, origin, head.size):
        try:
            signed, cp = _parse_note(pub.note)
            verify_note(signed, origin, key)
        except (InputError, VerificationError):
            continue  # not the owner's word: the board's junk proves nothing either way
        if cp.origin != origin:
            continue
        if cur is None:
            if cp.size != head.size:
                continue
            if cp.root_hash != head.root_hash:
                out.state, out.detail = "inconsistent", (
                    f"{member} published another tree head of size {cp.size} than the one the result names "
                    "(a split view)")
                out.evidence.append(pub)
                return out
        elif cp.size == cur[0]:
            if cp.root_hash != cur[1]:
                out.state, out.detail = "inconsistent", f"{member} signed two tree heads of size {cp.size}"
                out.evidence.append(pub)
                return out
            continue
        elif pub.prev_size == cur[0] and cp.size > cur[0]:
            try:
                verify_consistency(cur[0], cp.size, cur[1], cp.root_hash, list(pub.proof))
            except VerificationError:
                # The proof is not signed: a rewritten log and a board that altered the proof
                # look the same here, so this is "not witnessed", not the owner's fault (the
                # witnesses, who judge the same proof, raise the alarm if the log was rewritten).
                out.detail = (f"the board's consistency proof from size {cur[0]} to {member}'s checkpoint of size "
                              f"{cp.size} does not verify (a rewritten log, or an altered proof): not witnessed "
                              "past it")
                out.evidence.append(pub)
                return out
        else:
            continue  # a proof from a size not on this chain: cannot judge it
        cur = (cp.size, cp.root_hash)
        out.evidence.append(pub)
        mine = [c for c in cosigs if c.body == signed.body]
        out.evidence_cosignatures += mine
        n = count_cosignatures(mine, signed.body, witnesses)
        if n >= out.cosignatures:
            out.cosigned_size, out.cosignatures = cp.size, n
        if n >= quorum:
            out.state, out.detail = "witnessed", (
                f"checkpoint {cp.size} (>= {head.size}) carries {n} valid cosignature(s) of other members "
                f"(quorum {quorum}), consistent with the result's tree head")
            return out
    if cur is None:
        out.detail = f"the board holds no checkpoint of {member}'s log at size {head.size} yet"
    else:
        out.detail = (f"not yet witnessed: the best checkpoint (size {out.cosigned_size}) carries {out.cosignatures} "
                      f"of the {quorum} cosignature(s) the consortium asks for")
    return out


def _checkpoints_with_cosignatures(board: Board, origin: str, min_size: int
                                   ) -> Iterable[tuple[Published, list[Cosignature]]]:
    """The checkpoints of `origin` from `min_size` on, a few per page, each page with the
    cosignatures of exactly its sizes: a lookup that stops early reads little."""
    for page in pages(board.checkpoint_page, origin, min_size=min_size, limit=QUORUM_PAGE_ROWS):
        sizes = []
        for pub in page.rows:
            try:
                sizes.append(_parse_note(pub.note)[1].size)
            except InputError:
                continue
        cosigs = cosignatures_between(board, origin, min(sizes), max(sizes)) if sizes else []
        for pub in page.rows:
            yield pub, cosigs


def checkpoints_file(states: Iterable[QuorumState]) -> dict[str, Any]:
    """What `job result --out` saves next to the result files (checkpoints.json): the
    checkpoints and cosignatures each state was judged on, so it can be judged again offline."""
    logs: dict[str, dict[str, list]] = {}
    for s in states:
        entry = logs.setdefault(s.origin, {"checkpoints": [], "cosignatures": []})
        for p in s.evidence:
            item = {"publisher": p.publisher, "note": p.note, "prev_size": p.prev_size,
                    "proof": [base64.b64encode(h).decode() for h in p.proof]}
            if item not in entry["checkpoints"]:
                entry["checkpoints"].append(item)
        for c in s.evidence_cosignatures:
            item = {"witness": c.witness, "body": c.body, "line": c.line}
            if item not in entry["cosignatures"]:
                entry["cosignatures"].append(item)
    for entry in logs.values():
        entry["checkpoints"].sort(key=lambda p: Checkpoint.parse(SignedNote.parse(p["note"]).body).size)
    return {"format": CHECKPOINTS_FILE_FORMAT, "logs": logs}


class FileBoard:
    """A read-only board from a checkpoints file (offline verification)."""

    def __init__(self, doc: Mapping[str, Any], source: str = "checkpoints file") -> None:
        if not isinstance(doc, Mapping) or doc.get("format") != CHECKPOINTS_FILE_FORMAT:
            raise InputError(f"not a {CHECKPOINTS_FILE_FORMAT} file", source=source, field="format")
        logs = doc.get("logs")
        if not isinstance(logs, Mapping):
            raise InputError("expected a mapping 'logs' of origin to checkpoints and cosignatures",
                             source=source, field="logs")
        self._pubs: dict[str, list[Published]] = {}
        self._cosigs: dict[str, list[Cosignature]] = {}
        for origin, entry in logs.items():
            where = f"logs.{origin}"
            try:
                self._pubs[str(origin)] = [
                    Published(str(p["publisher"]), str(p["note"]), int(p["prev_size"]),
                              tuple(base64.b64decode(h, validate=True) for h in p["proof"]))
                    for p in entry["checkpoints"]]
                self._cosigs[str(origin)] = [Cosignature(str(c["witness"]), str(c["body"]), str(c["line"]))
                                             for c in entry["cosignatures"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"expected checkpoints (publisher, note, prev_size, proof) and cosignatures "
                                 f"(witness, body, line) ({type(exc).__name__}: {exc})",
                                 source=source, field=where) from None

    def latest_size(self, origin: str) -> int:
        return max((_parse_note(p.note)[1].size for p in self._pubs.get(origin, ()) if _is_note(p.note)), default=0)

    @staticmethod
    def _size(text: str) -> int | None:
        try:
            return Checkpoint.parse(text).size
        except VerificationError:
            return None

    def _page(self, rows: Sequence[Any], sizes: Sequence[int | None], after: int, min_size: int, max_size: int,
              limit: int, latest: int) -> Page:
        # a row's sequence is its 1-based place in the file
        match = [(i + 1, r) for i, (r, n) in enumerate(zip(rows, sizes))
                 if i + 1 > after and n is not None and n >= min_size and (max_size <= 0 or n <= max_size)]
        limit = _limit(limit)
        page = _bounded(match[:limit + 1], after, limit, PAGE_BYTES, len(rows))
        return Page(page.rows, page.next_cursor, page.more, latest)

    def checkpoint_page(self, origin: str, *, after: int = 0, min_size: int = 0, max_size: int = 0,
                        limit: int = PAGE_ROWS) -> Page:
        pubs = self._pubs.get(origin, [])
        sizes = [self._size(SignedNote.parse(p.note).body) if _is_note(p.note) else None for p in pubs]
        return self._page(pubs, sizes, after, min_size, max_size, limit, self.latest_size(origin))

    def cosignature_page(self, origin: str, *, after: int = 0, min_size: int = 0, max_size: int = 0,
                         limit: int = PAGE_ROWS) -> Page:
        cosigs = self._cosigs.get(origin, [])
        return self._page(cosigs, [self._size(c.body) for c in cosigs], after, min_size, max_size, limit,
                          self.latest_size(origin))

    def origins(self) -> list[str]:
        return sorted(self._pubs)

    def publish(self, publisher: str, note: str, prev_size: int, proof: Sequence[bytes]) -> None:
        raise InputError("a checkpoints file is read-only")

    def post_cosignature(self, witness: str, body: str, line: str) -> None:
        raise InputError("a checkpoints file is read-only")
