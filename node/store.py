"""The node's durable state: jobs it has seen, its decisions, operator actions, uploads,
and each table's privacy-budget ledger.

SQLite in WAL mode with synchronous=FULL: a decision is committed here before it is sent,
so a node never decides twice on one digest, and after a crash it re-sends the same
signed decision rather than making a new one. `teenet approvals` (the operator's command)
writes operator actions into the same database; the daemon picks them up on its next poll.

The budget ledger: what an approval spends on each table is written in the same
transaction as the approval itself, after checking (inside that transaction) that it fits
what is left, so two decisions made at once cannot both spend the last of a budget, and an
approval never leaves the node before its spend is durable. `teenet budget raise` adds to a
table's budget here. This module keeps the numbers; whether a job fits is decided by
`teenet.node.budget`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from teenet.approval import Decision, SignedDecision
from teenet.errors import InputError
from teenet.witness import WITNESS_SCHEMA, Witness

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    canonical_spec BLOB NOT NULL,
    analyst TEXT NOT NULL,
    signature BLOB NOT NULL,
    name TEXT NOT NULL,
    function TEXT NOT NULL,
    status TEXT NOT NULL,         -- pending | approved | rejected | uploaded | failed | stopped | revoked
    reason TEXT NOT NULL DEFAULT '',
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    job_id TEXT PRIMARY KEY REFERENCES jobs(job_id),
    decision BLOB NOT NULL,
    signature BLOB NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS operator_actions (
    job_id TEXT PRIMARY KEY REFERENCES jobs(job_id),
    action TEXT NOT NULL,         -- approve | reject
    operator TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    job_id TEXT NOT NULL,
    party_table TEXT NOT NULL,
    rows INTEGER NOT NULL,
    at REAL NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, party_table)
);
-- A compute node's jobs whose per-job keys it made (offer posted) and that have not ended
-- here. The keys live only in memory: after a restart each open one is reported failed.
-- The privacy-budget ledger: what each approval spends on each of this owner's tables
-- (sequential composition: spends add up), and the operator's raises of a table's budget.
CREATE TABLE IF NOT EXISTS budget_spends (
    job_id TEXT NOT NULL REFERENCES jobs(job_id),
    table_name TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (job_id, table_name)
);
CREATE TABLE IF NOT EXISTS budget_raises (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    table_name TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    operator TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS compute_jobs (
    job_id TEXT PRIMARY KEY,
    accepted_at REAL NOT NULL,
    ended_at REAL
);
-- An operator's withdrawal of this node's approval (`teenet approvals revoke`), and its
-- signed form once the daemon made it. Never after a table key of the job was sealed.
CREATE TABLE IF NOT EXISTS revocations (
    job_id TEXT PRIMARY KEY REFERENCES jobs(job_id),
    operator TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    revocation BLOB,
    signature BLOB,
    sent INTEGER NOT NULL DEFAULT 0
);
-- The first time a table key of a job is about to be sealed: from then on the approval
-- cannot be withdrawn (the enclave may already hold the key).
CREATE TABLE IF NOT EXISTS sealing (
    job_id TEXT PRIMARY KEY REFERENCES jobs(job_id),
    at REAL NOT NULL
);
-- Jobs a compute enclave refused (a bad signature, approval or id): never taken later.
-- With compute_jobs, the durable "seen" set: no restart runs or re-keys a digest twice.
CREATE TABLE IF NOT EXISTS compute_refused (
    job_id TEXT PRIMARY KEY,
    refused_at REAL NOT NULL
);
"""
SCHEMA_VERSION = "1"

# Floating-point sums of spends must not refuse a job that spends exactly what is left.
_BUDGET_SLACK = 1e-9


def budget_fits(remaining: float, spend: float) -> bool:
    """Whether `spend` fits in `remaining` (up to rounding in the sums)."""
    return spend <= remaining + _BUDGET_SLACK * max(1.0, abs(remaining))


class BudgetExceeded(Exception):
    """A spend did not fit what was left of a table's budget (checked inside the transaction)."""

    def __init__(self, table: str, ledger: "BudgetLedger") -> None:
        super().__init__(table)
        self.table = table
        self.ledger = ledger


@dataclass(frozen=True)
class BudgetLedger:
    """One table's raises and spends, as recorded (the configured budget is added by the caller)."""

    table: str
    raised_epsilon: float
    raised_delta: float
    spent_epsilon: float
    spent_delta: float
    jobs: int


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    canonical_spec: bytes
    analyst: str
    signature: bytes
    name: str
    function: str
    status: str
    reason: str
    received_at: float
    updated_at: float


class NodeStore:
    """Thread-safe access to one node's state database."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(SCHEMA)
        self._conn.executescript(WITNESS_SCHEMA)  # teenet/witness.py: heads cosigned, alarms raised
        self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self_inner):
                store._lock.acquire()
                store._conn.execute("BEGIN IMMEDIATE")
                return store._conn

            def __exit__(self_inner, exc_type, exc, tb):
                try:
                    store._conn.execute("ROLLBACK" if exc_type else "COMMIT")
                finally:
                    store._lock.release()
                return False

        return _Tx()

    # witnessing (teenet/witness.py) ------------------------------------------------------
    def witness(self, name: str, key: Any, members: Mapping[str, Any],
                extra_logs: Mapping[str, Any] | None = None) -> "Witness":
        """This node's witness of the other members' logs (and `extra_logs`: the coordinator's),
        its state in this database."""
        return Witness(self._conn, self._lock, name, key, members, extra_logs)

    def equivocated(self, members: Iterable[str]) -> list[str]:
        """Which of `members` this node caught equivocating and has not acknowledged."""
        wanted = sorted(set(members))
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT member FROM witness_alarms WHERE acknowledged_at IS NULL")
            caught = {r[0] for r in rows.fetchall()}
        return [m for m in wanted if m in caught]

    # jobs ---------------------------------------------------------------------------------
    def remember_job(self, job_id: str, canonical_spec: bytes, analyst: str, signature: bytes,
                     name: str, function: str) -> bool:
        """Record a job the first time it is seen; False if it was already known."""
        now = time.time()
        with self._tx() as c:
            cur = c.execute("INSERT OR IGNORE INTO jobs VALUES (?,?,?,?,?,?,'new','',?,?)",
                            (job_id, canonical_spec, analyst, signature, name, function, now, now))
            return cur.rowcount == 1

    def job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return JobRecord(*row) if row else None

    def jobs(self, status: str | None = None) -> list[JobRecord]:
        with self._lock:
            if status:
                rows = self._conn.execute("SELECT * FROM jobs WHERE status=? ORDER BY received_at", (status,))
            else:
                rows = self._conn.execute("SELECT * FROM jobs ORDER BY received_at")
            return [JobRecord(*r) for r in rows.fetchall()]

    def set_status(self, job_id: str, status: str, reason: str = "") -> None:
        with self._tx() as c:
            c.execute("UPDATE jobs SET status=?, reason=?, updated_at=? WHERE job_id=?",
                      (status, reason, time.time(), job_id))

    # decisions ----------------------------------------------------------------------------
    def store_decision(self, signed: SignedDecision, status: str, reason: str, *,
                       spends: Sequence[tuple[str, float, float]] = (),
                       budgets: Mapping[str, tuple[float, float]] | None = None) -> SignedDecision:
        """Keep the first signed decision for a job (durably) and return whichever is kept.

        `spends` are (table, epsilon, delta) this decision spends, recorded in the same
        transaction, and only if this decision is the one kept; each must fit
        `budgets[table]` (configured epsilon, delta) plus the raises less what was spent,
        else BudgetExceeded and nothing is stored.
        """
        with self._tx() as c:
            kept = c.execute("SELECT 1 FROM decisions WHERE job_id=?", (signed.job_id,)).fetchone()
            if kept is None and spends:
                for table, epsilon, delta in spends:
                    ledger = self._ledger(c, table)
                    total_e, total_d = (budgets or {}).get(table, (0.0, 0.0))
                    if not budget_fits(total_e + ledger.raised_epsilon - ledger.spent_epsilon, epsilon) \
                            or not budget_fits(total_d + ledger.raised_delta - ledger.spent_delta, delta):
                        raise BudgetExceeded(table, ledger)
                now = time.time()
                c.executemany("INSERT INTO budget_spends VALUES (?,?,?,?,?)",
                              [(signed.job_id, t, float(e), float(d), now) for t, e, d in spends])
            c.execute("INSERT OR IGNORE INTO decisions (job_id, decision, signature) VALUES (?,?,?)",
                      (signed.job_id, signed.decision, signed.signature))
            c.execute("UPDATE jobs SET status=?, reason=?, updated_at=? WHERE job_id=? AND status IN ('new','pending')",
                      (status, reason, time.time(), signed.job_id))
            row = c.execute("SELECT decision, signature FROM decisions WHERE job_id=?", (signed.job_id,)).fetchone()
        return SignedDecision(signed.job_id, signed.party, row[0], row[1])

    def decision(self, job_id: str, party: str) -> SignedDecision | None:
        with self._lock:
            row = self._conn.execute("SELECT decision, signature FROM decisions WHERE job_id=?", (job_id,)).fetchone()
        return SignedDecision(job_id, party, row[0], row[1]) if row else None

    def mark_decision_sent(self, job_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE decisions SET sent=1 WHERE job_id=?", (job_id,))

    # privacy budget ---------------------------------------------------------------------
    def _ledger(self, c: sqlite3.Connection, table: str) -> BudgetLedger:
        re_, rd = c.execute("SELECT COALESCE(SUM(epsilon),0), COALESCE(SUM(delta),0) FROM budget_raises "
                            "WHERE table_name=?", (table,)).fetchone()
        se, sd, n = c.execute("SELECT COALESCE(SUM(epsilon),0), COALESCE(SUM(delta),0), COUNT(*) "
                              "FROM budget_spends WHERE table_name=? AND epsilon+delta > 0", (table,)).fetchone()
        return BudgetLedger(table, float(re_), float(rd), float(se), float(sd), int(n))

    def budget_ledger(self, table: str) -> BudgetLedger:
        with self._lock:
            return self._ledger(self._conn, table)

    def budget_spends(self, table: str) -> list[tuple[str, float, float, float]]:
        """(job_id, epsilon, delta, at) of every approval that spent on `table`, oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT job_id, epsilon, delta, at FROM budget_spends WHERE table_name=? "
                                      "AND epsilon+delta > 0 ORDER BY at", (table,))
            return [(r[0], float(r[1]), float(r[2]), float(r[3])) for r in rows.fetchall()]

    def raise_budget(self, table: str, epsilon: float, delta: float, operator: str, reason: str) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO budget_raises (table_name, epsilon, delta, operator, reason, at) "
                      "VALUES (?,?,?,?,?,?)", (table, float(epsilon), float(delta), operator, reason, time.time()))

    # operator -----------------------------------------------------------------------------
    def record_operator_action(self, job_id: str, action: str, operator: str, reason: str) -> None:
        with self._tx() as c:
            row = c.execute("SELECT status FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            c.execute("INSERT OR IGNORE INTO operator_actions VALUES (?,?,?,?,?)",
                      (job_id, action, operator, reason, time.time()))

    def operator_action(self, job_id: str) -> tuple[str, str, str] | None:
        with self._lock:
            row = self._conn.execute("SELECT action, operator, reason FROM operator_actions WHERE job_id=?",
                                     (job_id,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    # revocations -------------------------------------------------------------------------
    def revoke(self, job_id: str, operator: str, reason: str) -> None:
        """Withdraw this node's approval of `job_id`, atomically with the check that no table
        key of it was sealed (`begin_sealing` takes the same lock): InputError otherwise."""
        with self._tx() as c:
            row = c.execute("SELECT status FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            decision = c.execute("SELECT decision FROM decisions WHERE job_id=?", (job_id,)).fetchone()
            if decision is None or not Decision.from_canonical(bytes(decision[0])).approved:
                raise InputError(f"job {job_id[:12]} was not approved by this node; there is nothing to withdraw")
            sealed = c.execute("SELECT at FROM sealing WHERE job_id=?", (job_id,)).fetchone()
            if sealed is not None:
                raise InputError(f"job {job_id[:12]}: a table key was already sealed to the compute enclave "
                                 f"at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(sealed[0]))}; "
                                 "an approval can be withdrawn only before that")
            if c.execute("SELECT 1 FROM revocations WHERE job_id=?", (job_id,)).fetchone():
                raise InputError(f"job {job_id[:12]}: the approval was already withdrawn")
            c.execute("INSERT INTO revocations (job_id, operator, reason, at) VALUES (?,?,?,?)",
                      (job_id, operator, reason, time.time()))
            c.execute("UPDATE jobs SET status='revoked', reason=?, updated_at=? WHERE job_id=?",
                      (f"approval withdrawn by operator:{operator}", time.time(), job_id))

    def revoked(self, job_id: str) -> bool:
        with self._lock:
            return bool(self._conn.execute("SELECT 1 FROM revocations WHERE job_id=?", (job_id,)).fetchone())

    def revocations_to_sign(self) -> list[tuple[str, str, str]]:
        """(job_id, operator, reason) of withdrawals the daemon has not signed yet."""
        with self._lock:
            rows = self._conn.execute("SELECT job_id, operator, reason FROM revocations WHERE revocation IS NULL")
            return [(r[0], r[1], r[2]) for r in rows.fetchall()]

    def store_signed_revocation(self, job_id: str, revocation: bytes, signature: bytes) -> tuple[bytes, bytes]:
        """Keep the first signed form (durably) and return whichever is kept."""
        with self._tx() as c:
            c.execute("UPDATE revocations SET revocation=?, signature=? WHERE job_id=? AND revocation IS NULL",
                      (revocation, signature, job_id))
            row = c.execute("SELECT revocation, signature FROM revocations WHERE job_id=?", (job_id,)).fetchone()
        return bytes(row[0]), bytes(row[1])

    def unsent_revocations(self) -> list[tuple[str, bytes, bytes]]:
        with self._lock:
            rows = self._conn.execute("SELECT job_id, revocation, signature FROM revocations "
                                      "WHERE revocation IS NOT NULL AND sent=0")
            return [(r[0], bytes(r[1]), bytes(r[2])) for r in rows.fetchall()]

    def mark_revocation_sent(self, job_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE revocations SET sent=1 WHERE job_id=?", (job_id,))

    def begin_sealing(self, job_id: str) -> bool:
        """Note, durably, that a table key of `job_id` is about to be sealed; False (and
        nothing noted) if the approval was withdrawn. From here on it cannot be."""
        with self._tx() as c:
            if c.execute("SELECT 1 FROM revocations WHERE job_id=?", (job_id,)).fetchone():
                return False
            c.execute("INSERT OR IGNORE INTO sealing VALUES (?,?)", (job_id, time.time()))
            return True

    # uploads ------------------------------------------------------------------------------
    def record_upload(self, job_id: str, party_table: str, rows: int) -> None:
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO uploads (job_id, party_table, rows, at) VALUES (?,?,?,?)",
                      (job_id, party_table, rows, time.time()))

    def uploads(self, job_id: str) -> dict[str, bool]:
        with self._lock:
            rows = self._conn.execute("SELECT party_table, reported FROM uploads WHERE job_id=?", (job_id,))
            return {r[0]: bool(r[1]) for r in rows.fetchall()}

    def mark_upload_reported(self, job_id: str, party_table: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE uploads SET reported=1 WHERE job_id=? AND party_table=?", (job_id, party_table))

    # compute jobs -------------------------------------------------------------------------
    def remember_compute_job(self, job_id: str) -> bool:
        """Durably note that this compute node makes keys for `job_id` (before it makes or
        offers them). False if the digest was ever taken or refused before: it is not taken again."""
        with self._tx() as c:
            if c.execute("SELECT 1 FROM compute_refused WHERE job_id=?", (job_id,)).fetchone():
                return False
            cur = c.execute("INSERT OR IGNORE INTO compute_jobs (job_id, accepted_at) VALUES (?,?)",
                            (job_id, time.time()))
            return cur.rowcount == 1

    def refuse_compute_job(self, job_id: str) -> None:
        """Durably note that this compute node refused `job_id`; it is never taken later."""
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO compute_refused VALUES (?,?)", (job_id, time.time()))

    def compute_job_seen(self, job_id: str) -> bool:
        """Whether this compute node ever took (made keys for) or refused `job_id`."""
        with self._lock:
            return bool(self._conn.execute(
                "SELECT 1 FROM compute_jobs WHERE job_id=? UNION SELECT 1 FROM compute_refused WHERE job_id=?",
                (job_id, job_id)).fetchone())

    def end_compute_job(self, job_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE compute_jobs SET ended_at=? WHERE job_id=? AND ended_at IS NULL", (time.time(), job_id))

    def open_compute_jobs(self) -> list[str]:
        """Jobs this compute node made keys for and never saw end (oldest first)."""
        with self._lock:
            rows = self._conn.execute("SELECT job_id FROM compute_jobs WHERE ended_at IS NULL ORDER BY accepted_at")
            return [r[0] for r in rows.fetchall()]

    def iter_ids(self) -> Iterator[str]:
        with self._lock:
            return iter([r[0] for r in self._conn.execute("SELECT job_id FROM jobs").fetchall()])
