"""The coordinator's durable store: jobs, decisions, offers, uploads, results, status events.

SQLite in WAL mode with `synchronous=FULL`: a write is on disk when its transaction
commits, and every RPC commits before it replies, so a coordinator killed at any moment
restarts with everything it acknowledged. The store holds only what the untrusted
coordinator may hold: signed specs and decisions, public offers, sealed results. The
schema carries a version; `MIGRATIONS` brings an older database up to date on open.

This module only reads and writes rows; the rules of the job flow live in state.py.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from teenet.audit import open_database
from teenet.errors import InputError

# (version, SQL). Append new versions; never edit a released one.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
    CREATE TABLE jobs (
        job_id         TEXT PRIMARY KEY,
        canonical_spec BLOB NOT NULL,
        analyst        TEXT NOT NULL,
        signature      BLOB NOT NULL,
        name           TEXT NOT NULL,
        function       TEXT NOT NULL,
        compute        TEXT NOT NULL,
        state          TEXT NOT NULL,
        reason         TEXT NOT NULL DEFAULT '',
        created_at     REAL NOT NULL,
        updated_at     REAL NOT NULL,
        approved_at    REAL,
        terminal_at    REAL
    );
    CREATE INDEX jobs_state ON jobs (state);
    CREATE TABLE job_inputs (
        job_id     TEXT NOT NULL REFERENCES jobs (job_id),
        party      TEXT NOT NULL,
        table_name TEXT NOT NULL,
        PRIMARY KEY (job_id, party, table_name)
    );
    CREATE INDEX job_inputs_party ON job_inputs (party);
    CREATE TABLE decisions (
        job_id      TEXT NOT NULL REFERENCES jobs (job_id),
        party       TEXT NOT NULL,
        decision    TEXT NOT NULL,
        reason      TEXT NOT NULL,
        canonical   BLOB NOT NULL,
        signature   BLOB NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (job_id, party)
    );
    CREATE TABLE offers (
        job_id             TEXT PRIMARY KEY REFERENCES jobs (job_id),
        compute            TEXT NOT NULL,
        hpke_suite         TEXT NOT NULL,
        hpke_public_key    BLOB NOT NULL,
        signing_public_key BLOB NOT NULL,
        evidence           BLOB NOT NULL,
        endpoint           TEXT NOT NULL,
        received_at        REAL NOT NULL
    );
    CREATE TABLE uploads (
        job_id      TEXT NOT NULL REFERENCES jobs (job_id),
        party       TEXT NOT NULL,
        table_name  TEXT NOT NULL,
        reported_at REAL NOT NULL,
        PRIMARY KEY (job_id, party, table_name)
    );
    CREATE TABLE results (
        job_id    TEXT NOT NULL REFERENCES jobs (job_id),
        kind      TEXT NOT NULL,
        recipient TEXT NOT NULL,
        envelope  BLOB NOT NULL,
        signature BLOB NOT NULL,
        posted_at REAL NOT NULL,
        PRIMARY KEY (job_id, kind, recipient)
    );
    CREATE TABLE status_events (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs (job_id),
        node   TEXT NOT NULL,
        event  TEXT NOT NULL,
        detail TEXT NOT NULL,
        at     REAL NOT NULL
    );
    """),
    (2, """
    CREATE TABLE revocations (
        job_id      TEXT NOT NULL REFERENCES jobs (job_id),
        party       TEXT NOT NULL,
        canonical   BLOB NOT NULL,
        signature   BLOB NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (job_id, party)
    );
    """),
    # Version 3: results stream in chunks (docs/format.md, "Sealed results"). `envelope` now
    # holds the HPKE-sealed result key; the sealed stream's messages are rows of result_chunks,
    # written as they arrive and visible only once their results row exists.
    (3, """
    CREATE TABLE result_chunks (
        job_id    TEXT NOT NULL REFERENCES jobs (job_id),
        kind      TEXT NOT NULL,
        recipient TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        data      BLOB NOT NULL,
        PRIMARY KEY (job_id, kind, recipient, seq)
    );
    ALTER TABLE results ADD COLUMN statement BLOB NOT NULL DEFAULT x'';
    ALTER TABLE results ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE results ADD COLUMN stream_bytes INTEGER NOT NULL DEFAULT 0
    """),
    # Version 4: the checkpoint board (teenet/witness.py): members' published tree heads and
    # the witnesses' cosignatures.
    (4, """
    CREATE TABLE published_checkpoints (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        origin      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        publisher   TEXT NOT NULL,
        note        TEXT NOT NULL,
        prev_size   INTEGER NOT NULL,
        proof       TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX published_checkpoints_origin ON published_checkpoints (origin, size);
    CREATE TABLE checkpoint_cosignatures (
        origin      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        witness     TEXT NOT NULL,
        body        TEXT NOT NULL,
        line        TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (origin, size, witness, body)
    )
    """),
    # Version 5: a compute cluster's offer carries a cluster part (proto ClusterOffer, the
    # leader-signed worker list), kept as the bytes the leader sent; empty for a single node.
    (5, """
    ALTER TABLE offers ADD COLUMN cluster BLOB NOT NULL DEFAULT x''
    """),
    # Version 6: paged board reads (teenet/witness.py "Paged board reads"). A reader's cursor
    # is a row's sequence number, so each table needs a stable, increasing one indexed per
    # origin: published_checkpoints has `id`; checkpoint_cosignatures had only an implicit
    # rowid (which VACUUM may renumber), so it is rebuilt with an `id`, in arrival order.
    (6, """
    CREATE INDEX published_checkpoints_origin_seq ON published_checkpoints (origin, id);
    CREATE TABLE checkpoint_cosignatures_v6 (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        origin      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        witness     TEXT NOT NULL,
        body        TEXT NOT NULL,
        line        TEXT NOT NULL,
        received_at REAL NOT NULL,
        UNIQUE (origin, size, witness, body)
    );
    INSERT INTO checkpoint_cosignatures_v6 (origin, size, witness, body, line, received_at)
        SELECT origin, size, witness, body, line, received_at FROM checkpoint_cosignatures
        ORDER BY received_at, rowid;
    DROP TABLE checkpoint_cosignatures;
    ALTER TABLE checkpoint_cosignatures_v6 RENAME TO checkpoint_cosignatures;
    CREATE INDEX checkpoint_cosignatures_origin_seq ON checkpoint_cosignatures (origin, id)
    """),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    canonical_spec: bytes
    analyst: str
    signature: bytes
    name: str
    function: str
    compute: str
    state: str
    reason: str
    created_at: float
    updated_at: float
    approved_at: float | None = None
    terminal_at: float | None = None


@dataclass(frozen=True)
class DecisionRecord:
    job_id: str
    party: str
    decision: str  # approve | reject
    reason: str
    canonical: bytes
    signature: bytes
    received_at: float


@dataclass(frozen=True)
class RevocationRecord:
    """An owner's signed withdrawal of its approval (opaque here; the compute enclave checks it)."""

    job_id: str
    party: str
    canonical: bytes
    signature: bytes
    received_at: float


@dataclass(frozen=True)
class OfferRecord:
    job_id: str
    compute: str
    hpke_suite: str
    hpke_public_key: bytes
    signing_public_key: bytes
    evidence: bytes
    endpoint: str
    received_at: float
    cluster: bytes = b""  # serialized ClusterOffer, opaque to the coordinator


@dataclass(frozen=True)
class ResultRecord:
    job_id: str
    kind: str
    recipient: str
    envelope: bytes  # the HPKE-sealed result key
    signature: bytes
    posted_at: float
    statement: bytes = b""
    messages: int = 0  # rows of result_chunks, seq 0 .. messages-1
    stream_bytes: int = 0


@dataclass(frozen=True)
class StatusEvent:
    job_id: str
    node: str
    event: str
    detail: str
    at: float


_JOB_COLUMNS = ("job_id, canonical_spec, analyst, signature, name, function, compute, state, reason, "
                "created_at, updated_at, approved_at, terminal_at")


class CoordinatorStore:
    """Rows of the coordinator's SQLite database. One connection, guarded by `lock`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        # Long polls wait on this: every committed transaction bumps the counter. The epoch
        # (random per process) makes a generation from before a restart never match.
        self._changed = threading.Condition(threading.Lock())
        self._epoch = secrets.randbits(31) + 1
        self._counter = 0
        self._closed = False
        self.conn = open_database(path)
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise InputError(f"not a coordinator database ({exc})", source=str(path)) from None

    def stop_waiting(self) -> None:
        """End every wait_for_change now, and make later ones return at once (shutdown)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def waits_stopped(self) -> bool:
        """True once stop_waiting ran: a long poll must not wait again."""
        with self._changed:
            return self._closed

    def close(self) -> None:
        self.stop_waiting()
        with self.lock:
            self.conn.close()

    @property
    def generation(self) -> int:
        """A number that changes whenever a transaction commits (never 0)."""
        with self._changed:
            return (self._epoch << 32) + self._counter

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until the generation differs from `since` (at once if it already does), the
        store closes, or `timeout` seconds pass; return the generation then."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._closed and (self._epoch << 32) + self._counter == since:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return (self._epoch << 32) + self._counter

    def _migrate(self) -> None:
        with self.transaction():
            self.conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise InputError(f"database schema version {current} is newer than this coordinator "
                                 f"understands ({SCHEMA_VERSION}); upgrade teenet", source=str(self.path))
            for version, sql in MIGRATIONS:
                if version > current:
                    # executescript would COMMIT our transaction; run statement by statement.
                    for statement in sql.split(";"):
                        if statement.strip():
                            self.conn.execute(statement)
                    self.conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def schema_version(self) -> int:
        with self.lock:
            return int(self.conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])

    @contextmanager
    def transaction(self, *, notify: bool = True) -> Iterator[None]:
        """One atomic, durable unit of work: committed (fsynced) on exit, rolled back on error.

        `notify=False` for writes no poller can see (a result chunk before its results row):
        they would only wake every long poll for nothing."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            if not notify:
                return
            with self._changed:
                self._counter += 1
                self._changed.notify_all()

    # jobs

    def insert_job(self, job: JobRecord, inputs: Sequence[tuple[str, str]]) -> None:
        self.conn.execute(
            f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job.job_id, job.canonical_spec, job.analyst, job.signature, job.name, job.function,
             job.compute, job.state, job.reason, job.created_at, job.updated_at, job.approved_at,
             job.terminal_at))
        self.conn.executemany("INSERT INTO job_inputs (job_id, party, table_name) VALUES (?, ?, ?)",
                              [(job.job_id, p, t) for p, t in inputs])

    def get_job(self, job_id: str) -> JobRecord | None:
        with self.lock:
            row = self.conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def set_state(self, job_id: str, state: str, reason: str, at: float, *, approved: bool = False,
                  terminal: bool = False) -> None:
        self.conn.execute(
            "UPDATE jobs SET state = ?, reason = ?, updated_at = ?, "
            "approved_at = CASE WHEN ? THEN ? ELSE approved_at END, "
            "terminal_at = CASE WHEN ? THEN ? ELSE terminal_at END WHERE job_id = ?",
            (state, reason, at, approved, at, terminal, at, job_id))

    def touch_job(self, job_id: str, at: float) -> None:
        """The job's status changed without a change of state (a decision, an upload)."""
        self.conn.execute("UPDATE jobs SET updated_at = max(updated_at, ?) WHERE job_id = ?", (at, job_id))

    def list_jobs(self, *, state: str | None = None, member: str | None = None,
                  limit: int = 100) -> list[JobRecord]:
        """Newest first; `member` keeps jobs that member analyses, computes or feeds."""
        where, args = [], []
        if state:
            where.append("state = ?")
            args.append(state)
        if member is not None:
            where.append("(analyst = ? OR compute = ? OR job_id IN "
                         "(SELECT job_id FROM job_inputs WHERE party = ?))")
            args += [member, member, member]
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, job_id LIMIT ?"
        with self.lock:
            return [_job(r) for r in self.conn.execute(sql, (*args, limit))]

    def jobs_with_input_party(self, state: str, party: str, limit: int) -> list[JobRecord]:
        with self.lock:
            rows = self.conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = ? AND job_id IN "
                "(SELECT job_id FROM job_inputs WHERE party = ?) ORDER BY created_at, job_id LIMIT ?",
                (state, party, limit))
            return [_job(r) for r in rows]

    def jobs_in_state(self, state: str, limit: int) -> list[JobRecord]:
        with self.lock:
            rows = self.conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = ? "
                                     "ORDER BY created_at, job_id LIMIT ?", (state, limit))
            return [_job(r) for r in rows]

    def jobs_for_compute(self, state: str, compute: str, limit: int) -> list[JobRecord]:
        with self.lock:
            rows = self.conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = ? AND compute = ? "
                "ORDER BY created_at, job_id LIMIT ?", (state, compute, limit))
            return [_job(r) for r in rows]

    def jobs_stopped_since(self, since: float, member: str, limit: int) -> list[JobRecord]:
        """Failed or cancelled jobs, ended at or after `since`, that `member` fed or (once
        approved) computed."""
        with self.lock:
            rows = self.conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ('failed', 'cancelled') "
                "AND terminal_at >= ? AND ((compute = ? AND approved_at IS NOT NULL) OR job_id IN "
                "(SELECT job_id FROM job_inputs WHERE party = ?)) ORDER BY terminal_at, job_id LIMIT ?",
                (since, member, member, limit))
            return [_job(r) for r in rows]

    def inputs(self, job_id: str) -> list[tuple[str, str]]:
        with self.lock:
            return [(p, t) for p, t in self.conn.execute(
                "SELECT party, table_name FROM job_inputs WHERE job_id = ? ORDER BY party, table_name",
                (job_id,))]

    # decisions

    def insert_decision(self, d: DecisionRecord) -> None:
        self.conn.execute(
            "INSERT INTO decisions (job_id, party, decision, reason, canonical, signature, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (d.job_id, d.party, d.decision, d.reason, d.canonical, d.signature, d.received_at))

    def decisions(self, job_id: str) -> list[DecisionRecord]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT job_id, party, decision, reason, canonical, signature, received_at "
                "FROM decisions WHERE job_id = ? ORDER BY party", (job_id,))
            return [DecisionRecord(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), r[6]) for r in rows]

    # revocations

    def insert_revocation(self, r: RevocationRecord) -> bool:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO revocations (job_id, party, canonical, signature, received_at) VALUES (?, ?, ?, ?, ?)",
            (r.job_id, r.party, r.canonical, r.signature, r.received_at))
        return cur.rowcount == 1

    def revocations(self, job_id: str) -> list[RevocationRecord]:
        with self.lock:
            rows = self.conn.execute("SELECT job_id, party, canonical, signature, received_at FROM revocations "
                                     "WHERE job_id = ? ORDER BY party", (job_id,))
            return [RevocationRecord(r[0], r[1], bytes(r[2]), bytes(r[3]), r[4]) for r in rows]

    # offers

    def insert_offer(self, o: OfferRecord) -> None:
        self.conn.execute(
            "INSERT INTO offers (job_id, compute, hpke_suite, hpke_public_key, signing_public_key, "
            "evidence, endpoint, received_at, cluster) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (o.job_id, o.compute, o.hpke_suite, o.hpke_public_key, o.signing_public_key, o.evidence,
             o.endpoint, o.received_at, o.cluster))

    def offer(self, job_id: str) -> OfferRecord | None:
        with self.lock:
            r = self.conn.execute(
                "SELECT job_id, compute, hpke_suite, hpke_public_key, signing_public_key, evidence, "
                "endpoint, received_at, cluster FROM offers WHERE job_id = ?", (job_id,)).fetchone()
        return OfferRecord(r[0], r[1], r[2], bytes(r[3]), bytes(r[4]), bytes(r[5]), r[6], r[7],
                           bytes(r[8])) if r else None

    # uploads

    def insert_upload(self, job_id: str, party: str, table: str, at: float) -> bool:
        """Record that `party/table` reached the compute node; False if already recorded."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO uploads (job_id, party, table_name, reported_at) VALUES (?, ?, ?, ?)",
            (job_id, party, table, at))
        return cur.rowcount == 1

    def uploads(self, job_id: str) -> list[tuple[str, str]]:
        with self.lock:
            return [(p, t) for p, t in self.conn.execute(
                "SELECT party, table_name FROM uploads WHERE job_id = ? ORDER BY party, table_name",
                (job_id,))]

    # results

    def insert_result(self, r: ResultRecord) -> None:
        self.conn.execute(
            "INSERT INTO results (job_id, kind, recipient, envelope, signature, posted_at, statement, "
            "messages, stream_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.job_id, r.kind, r.recipient, r.envelope, r.signature, r.posted_at, r.statement, r.messages,
             r.stream_bytes))

    def clear_result_chunks(self, job_id: str) -> None:
        """Drop the chunks of a result post that never finished (the job has no results row)."""
        self.conn.execute("DELETE FROM result_chunks WHERE job_id = ? AND NOT EXISTS "
                          "(SELECT 1 FROM results WHERE results.job_id = result_chunks.job_id)", (job_id,))

    def insert_result_chunk(self, job_id: str, kind: str, recipient: str, seq: int, data: bytes) -> None:
        self.conn.execute("INSERT OR REPLACE INTO result_chunks (job_id, kind, recipient, seq, data) "
                          "VALUES (?, ?, ?, ?, ?)", (job_id, kind, recipient, seq, data))

    def result_chunk_counts(self, job_id: str) -> dict[tuple[str, str], tuple[int, int]]:
        """(kind, recipient) -> (messages, bytes) of the chunks stored for a job."""
        with self.lock:
            return {(k, r): (int(n), int(b)) for k, r, n, b in self.conn.execute(
                "SELECT kind, recipient, count(*), coalesce(sum(length(data)), 0) FROM result_chunks "
                "WHERE job_id = ? GROUP BY kind, recipient", (job_id,))}

    def result_chunk(self, job_id: str, kind: str, recipient: str, seq: int) -> bytes | None:
        """One stored stream message; read one at a time, so a fetch never holds the lock long."""
        with self.lock:
            row = self.conn.execute("SELECT data FROM result_chunks WHERE job_id = ? AND kind = ? AND "
                                    "recipient = ? AND seq = ?", (job_id, kind, recipient, seq)).fetchone()
        return bytes(row[0]) if row else None

    def results(self, job_id: str, recipient: str | None = None) -> list[ResultRecord]:
        sql = ("SELECT job_id, kind, recipient, envelope, signature, posted_at, statement, messages, "
               "stream_bytes FROM results WHERE job_id = ?")
        args: tuple[str, ...] = (job_id,)
        if recipient is not None:
            sql += " AND recipient = ?"
            args = (job_id, recipient)
        with self.lock:
            rows = self.conn.execute(sql + " ORDER BY kind, recipient", args)
            return [ResultRecord(r[0], r[1], r[2], bytes(r[3]), bytes(r[4]), r[5], bytes(r[6]), int(r[7]), int(r[8]))
                    for r in rows]

    def result_index(self, job_id: str) -> list[tuple[str, str]]:
        """(kind, recipient) of every result in the mailbox, without the envelopes."""
        with self.lock:
            return [(k, r) for k, r in self.conn.execute(
                "SELECT kind, recipient FROM results WHERE job_id = ? ORDER BY kind, recipient", (job_id,))]

    def result_bytes(self, job_id: str) -> int:
        with self.lock:
            row = self.conn.execute(
                "SELECT coalesce(sum(length(envelope) + length(signature) + length(statement)), 0) "
                "FROM results WHERE job_id = ?", (job_id,)).fetchone()
            chunks = self.conn.execute("SELECT coalesce(sum(length(data)), 0) FROM result_chunks "
                                       "WHERE job_id = ?", (job_id,)).fetchone()
        return int(row[0]) + int(chunks[0])

    # status events

    def insert_status_event(self, e: StatusEvent) -> None:
        self.conn.execute("INSERT INTO status_events (job_id, node, event, detail, at) VALUES (?, ?, ?, ?, ?)",
                          (e.job_id, e.node, e.event, e.detail, e.at))

    def status_events(self, job_id: str) -> list[StatusEvent]:
        with self.lock:
            return [StatusEvent(*r) for r in self.conn.execute(
                "SELECT job_id, node, event, detail, at FROM status_events WHERE job_id = ? ORDER BY id",
                (job_id,))]


def _job(row: tuple) -> JobRecord:
    return JobRecord(row[0], bytes(row[1]), row[2], bytes(row[3]), row[4], row[5], row[6], row[7],
                     row[8], row[9], row[10], row[11], row[12])
