"""A hash-chained, append-only audit log in SQLite, with signed checkpoints.

The coordinator keeps one of every state change; each data node keeps one of what it
approved and released. Anyone holding the log file (or the entries from GetAudit) and the
owner's public key can check it offline with `verify_chain`.

Entry format (version 1), exactly:

    payload    = canonical_json({"at": <UTC time, "YYYY-MM-DDTHH:MM:SS.ffffffZ">,
                                 "event": <the event, a JSON object>})
    entry_hash = SHA-256( "teenet/audit/v1" || 0x00 || prev_hash || seq || payload )

where `prev_hash` is the previous entry's 32-byte `entry_hash` (32 zero bytes for the
first entry), `seq` is the entry's sequence number as an 8-byte unsigned big-endian
integer, starting at 1 with no gaps, and `payload` is the UTF-8 canonical JSON above. The
time lives inside the payload so that it is covered by the hash and travels in the wire
`AuditEntry` (which has no separate time field).

Checkpoint: an Ed25519 signature by the log owner's key over

    "teenet/audit-checkpoint/v1" || 0x00 || seq (8 bytes, big-endian) || entry_hash

made every `checkpoint_every` entries and on demand (`AuditLog.checkpoint`). A checkpoint
pins the whole chain up to its entry: rewriting history and recomputing the hashes after
it no longer verifies. Entries appended after the last checkpoint are protected by the
chain only; checkpoint before handing a log over.

Signed tree heads (teenet/tlog.py): the same entries are also the leaves of an RFC 9162
Merkle tree, leaf i (from 0) being the 32-byte `entry_hash` of entry seq i + 1. With every
checkpoint the owner also signs the tree head of the first `seq` entries as a C2SP
tlog-checkpoint in a signed note (origin `AuditLog.origin`, by default
"teenet/audit/<first 8 bytes of SHA-256 of the owner's public key, hex>", which is also the
note's key name). A tree head lets anyone check that one entry is in the log
(`inclusion_proof`) and that a later head only appended to an earlier one
(`consistency_proof`) without reading the whole log: the form in which other members can
witness (cosign) it. Logs written before tree heads existed need no migration: the tree
is derived from the entries, and the next checkpoint signs its head.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.canonical import canonical_json, domain_digest, domain_message
from teenet.errors import InputError, TeenetError
from teenet.identity import verify_ed25519
from teenet.keyfiles import NO_PROTECTION, KeyProtection, read_private_key, write_private_key
from teenet.tlog import Checkpoint, MerkleTree, SignedNote, leaf_hash, sign_note, verify_note

ENTRY_DOMAIN = "teenet/audit/v1"
CHECKPOINT_DOMAIN = "teenet/audit-checkpoint/v1"
GENESIS_HASH = bytes(32)
DEFAULT_CHECKPOINT_EVERY = 64
MAX_EVENT_BYTES = 64 * 1024
MAX_PAGE = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_entries (
    seq        INTEGER PRIMARY KEY,
    prev_hash  TEXT NOT NULL,
    entry_hash TEXT NOT NULL,
    payload    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    entry_hash TEXT NOT NULL,
    signature  TEXT NOT NULL,
    signer     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_tree_heads (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL
);
"""


def entry_hash_of(seq: int, prev_hash: bytes, payload: bytes) -> bytes:
    """The hash an entry must carry (see the module docstring)."""
    return domain_digest(ENTRY_DOMAIN, prev_hash, seq.to_bytes(8, "big"), payload)


def checkpoint_message(seq: int, entry_hash: bytes) -> bytes:
    """The bytes a checkpoint signature covers."""
    return domain_message(CHECKPOINT_DOMAIN, seq.to_bytes(8, "big"), entry_hash)


def default_origin(public_key: ed25519.Ed25519PublicKey) -> str:
    """The log's C2SP origin (and note key name) when its owner names none."""
    import hashlib

    return "teenet/audit/" + hashlib.sha256(public_key.public_bytes_raw()).digest()[:8].hex()


def tree_of(entries: Sequence["AuditEntry"]) -> MerkleTree:
    """The Merkle tree whose leaves are the entries' hashes, in seq order."""
    return MerkleTree(leaf_hash(e.entry_hash) for e in sorted(entries, key=lambda e: e.seq))


@dataclass(frozen=True)
class AuditEntry:
    """One link of the chain, as stored."""

    seq: int
    prev_hash: bytes
    entry_hash: bytes
    payload: bytes

    def record(self) -> Mapping[str, Any]:
        """The parsed payload: {"at": ..., "event": {...}} (raises InputError if malformed)."""
        try:
            value = json.loads(self.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise InputError(f"audit entry {self.seq}: payload is not UTF-8 JSON") from None
        if not isinstance(value, dict):
            raise InputError(f"audit entry {self.seq}: payload is not a JSON object")
        return value

    @property
    def event(self) -> Mapping[str, Any]:
        event = self.record().get("event")
        return event if isinstance(event, dict) else {}

    @property
    def at(self) -> str:
        return str(self.record().get("at", ""))

    def to_json(self) -> dict[str, Any]:
        record = self.record()
        return {"seq": self.seq, "at": record.get("at"), "event": record.get("event"),
                "prev_hash": self.prev_hash.hex(), "entry_hash": self.entry_hash.hex()}


@dataclass(frozen=True)
class AuditCheckpoint:
    """A signature by the log owner over (seq, entry_hash)."""

    seq: int
    entry_hash: bytes
    signature: bytes
    signer: bytes  # raw 32-byte Ed25519 public key

    @property
    def signer_b64(self) -> str:
        return base64.b64encode(self.signer).decode()


@dataclass(frozen=True)
class ChainBreak:
    """The first thing wrong in a chain."""

    seq: int
    problem: str  # hash mismatch | prev mismatch | gap | bad payload | bad checkpoint signature | checkpoint mismatch | truncated
    detail: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.problem}: {self.detail}"


@dataclass(frozen=True)
class ChainReport:
    """What `verify_chain` found. `ok` is False exactly when `first_break` is set."""

    entries: int
    checkpoints: int
    last_seq: int
    last_hash: bytes
    signer: str | None          # base64 of the key checkpoints were checked against
    first_break: ChainBreak | None
    signed_through: int = 0     # the last entry a verified checkpoint covers; later ones are chained only
    tree_heads: int = 0         # signed tree heads checked
    tree_head: str | None = None  # the largest verified tree head (C2SP checkpoint body), if any

    @property
    def ok(self) -> bool:
        return self.first_break is None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "entries": self.entries, "checkpoints": self.checkpoints,
                               "last_seq": self.last_seq, "last_hash": self.last_hash.hex(),
                               "signer": self.signer, "signed_through": self.signed_through,
                               "tree_heads": self.tree_heads, "tree_head": self.tree_head}
        if self.first_break is not None:
            out["first_break"] = {"seq": self.first_break.seq, "problem": self.first_break.problem,
                                  "detail": self.first_break.detail}
        return out


def verify_chain(entries: Sequence[AuditEntry], checkpoints: Sequence[AuditCheckpoint],
                 public_key: ed25519.Ed25519PublicKey | None,
                 tree_heads: Sequence[str] = ()) -> ChainReport:
    """Check a whole chain from seq 1, its checkpoints and its signed tree heads; name the
    first broken entry.

    Every checkpoint and tree head must be signed by `public_key`. With `public_key=None`
    they are checked against the key the checkpoints name, which proves integrity only
    against someone who could not re-sign: pin the owner's key to prove more.
    """
    report = _verify_links(entries, checkpoints, public_key)
    if not report.ok or not tree_heads:
        return report
    signer_key = _signer_key(public_key, checkpoints)
    tree = tree_of(entries)
    largest: tuple[int, str] | None = None
    for text in tree_heads:
        size, problem = _check_tree_head(text, tree, signer_key)
        if problem is not None:
            return replace(report, first_break=ChainBreak(size, "bad tree head", problem), tree_heads=len(tree_heads))
        if largest is None or size > largest[0]:
            largest = (size, SignedNote.parse(text).body)
    return replace(report, tree_heads=len(tree_heads), tree_head=largest[1] if largest else None)


def _signer_key(public_key: ed25519.Ed25519PublicKey | None,
                checkpoints: Sequence[AuditCheckpoint]) -> ed25519.Ed25519PublicKey | None:
    if public_key is not None:
        return public_key
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(checkpoints[0].signer) if checkpoints else None
    except ValueError:
        return None


def _check_tree_head(text: str, tree: MerkleTree, key: ed25519.Ed25519PublicKey | None) -> tuple[int, str | None]:
    """(size, None) for a good signed tree head, else (size or 0, what is wrong)."""
    try:
        note = SignedNote.parse(text)
        head = Checkpoint.parse(note.body)
    except TeenetError as exc:
        return 0, str(exc)
    if key is None:
        return head.size, "no key to check the tree head's signature against"
    try:
        verify_note(note, head.origin, key)
    except TeenetError as exc:
        return head.size, str(exc)
    if head.size > tree.size:
        return head.size, f"a signed tree head covers {head.size} entries but the log holds {tree.size}"
    if head.root_hash != tree.root(head.size):
        return head.size, (f"the signed root of the first {head.size} entries differs from the entries' "
                           "(history rewritten)")
    return head.size, None


def _verify_links(entries: Sequence[AuditEntry], checkpoints: Sequence[AuditCheckpoint],
                  public_key: ed25519.Ed25519PublicKey | None) -> ChainReport:
    """The chain and its checkpoints (see verify_chain)."""
    signer = public_key.public_bytes_raw() if public_key is not None else None
    by_seq = {c.seq: c for c in checkpoints}
    if signer is None and checkpoints:
        signer = checkpoints[0].signer
    signer_key = None
    if signer is not None:
        try:
            signer_key = ed25519.Ed25519PublicKey.from_public_bytes(signer)
        except ValueError:
            signer_key = None  # a mangled signer column: every checkpoint then fails
    signer_b64 = base64.b64encode(signer).decode() if signer is not None else None

    signed_through = 0

    def report(last_seq: int, last_hash: bytes, brk: ChainBreak | None) -> ChainReport:
        return ChainReport(len(entries), len(checkpoints), last_seq, last_hash, signer_b64, brk, signed_through)

    prev = GENESIS_HASH
    expected_seq = 1
    for entry in sorted(entries, key=lambda e: e.seq):
        if entry.seq != expected_seq:
            return report(expected_seq - 1, prev, ChainBreak(
                expected_seq, "gap", f"expected entry {expected_seq}, found entry {entry.seq} next"))
        if entry.prev_hash != prev:
            return report(expected_seq - 1, prev, ChainBreak(
                entry.seq, "prev mismatch",
                f"prev_hash {entry.prev_hash.hex()[:16]}… does not match entry {entry.seq - 1}'s hash {prev.hex()[:16]}…"))
        computed = entry_hash_of(entry.seq, entry.prev_hash, entry.payload)
        if computed != entry.entry_hash:
            return report(expected_seq - 1, prev, ChainBreak(
                entry.seq, "hash mismatch",
                f"stored {entry.entry_hash.hex()[:16]}…, computed {computed.hex()[:16]}… (entry altered)"))
        try:
            record = entry.record()
            if canonical_json(record) != entry.payload or not isinstance(record.get("event"), dict):
                raise InputError("payload is not the canonical {at, event} object")
        except InputError as exc:
            return report(expected_seq - 1, prev, ChainBreak(entry.seq, "bad payload", str(exc)))
        cp = by_seq.get(entry.seq)
        if cp is not None:
            brk = _check_checkpoint(cp, entry, signer, signer_key)
            if brk is not None:
                return report(expected_seq - 1, prev, brk)
            signed_through = entry.seq
        prev = entry.entry_hash
        expected_seq += 1
    last = expected_seq - 1
    beyond = sorted(seq for seq in by_seq if seq > last or seq < 1)
    if beyond:
        return report(last, prev, ChainBreak(
            beyond[0], "truncated", f"a signed checkpoint names entry {beyond[0]} but the log ends at {last}"))
    return report(last, prev, None)


def _check_checkpoint(cp: AuditCheckpoint, entry: AuditEntry, signer: bytes | None,
                      signer_key: ed25519.Ed25519PublicKey | None) -> ChainBreak | None:
    if cp.entry_hash != entry.entry_hash:
        return ChainBreak(entry.seq, "checkpoint mismatch",
                          f"signed hash {cp.entry_hash.hex()[:16]}… differs from the chain's "
                          f"{entry.entry_hash.hex()[:16]}… (history rewritten)")
    if signer_key is None or cp.signer != signer:
        return ChainBreak(entry.seq, "bad checkpoint signature",
                          f"checkpoint signed by {cp.signer_b64}, expected {base64.b64encode(signer or b'').decode() or '-'}")
    if not verify_ed25519(signer_key, cp.signature, checkpoint_message(cp.seq, cp.entry_hash)):
        return ChainBreak(entry.seq, "bad checkpoint signature", "signature does not verify")
    return None


class AuditLog:
    """An append-only chained log in SQLite, signed at checkpoints with `signing_key`.

    Give it a path (it opens its own connection) or a connection shared with other
    tables. On a shared connection, an `append` inside the caller's open transaction
    commits with it, so a state change and its audit entry land together or not at all;
    outside a transaction, `append` commits before it returns. Pass the lock that guards
    a shared connection as `lock`.
    """

    def __init__(self, conn_or_path: sqlite3.Connection | str | Path,
                 signing_key: ed25519.Ed25519PrivateKey, *,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
                 lock: threading.RLock | None = None, origin: str | None = None) -> None:
        if checkpoint_every < 1:
            raise InputError("checkpoint_every must be at least 1", field="checkpoint_every")
        if isinstance(conn_or_path, sqlite3.Connection):
            self._conn = conn_or_path
            self._owns_conn = False
        else:
            self._conn = open_database(Path(conn_or_path))
            self._owns_conn = True
        self._key = signing_key
        self._signer = signing_key.public_key().public_bytes_raw()
        self._every = checkpoint_every
        self._lock = lock or threading.RLock()
        self.origin = origin or default_origin(signing_key.public_key())
        Checkpoint(self.origin, 0, bytes(32))  # refuse an origin a checkpoint cannot carry, now
        self._tree = MerkleTree()
        with self._lock:
            self._conn.executescript(SCHEMA)

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._key.public_key()

    def close(self) -> None:
        if self._owns_conn:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """Join the caller's transaction if one is open, else make and commit our own."""
        with self._lock:
            if self._conn.in_transaction:
                yield
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def append(self, event: Mapping[str, Any]) -> AuditEntry:
        """Add `event` (a JSON object) at the end of the chain; durable when this returns."""
        if not isinstance(event, Mapping):
            raise InputError("an audit event must be a JSON object")
        at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        payload = canonical_json({"at": at, "event": dict(event)})
        if len(payload) > MAX_EVENT_BYTES:
            raise InputError(f"audit event is {len(payload)} bytes, more than {MAX_EVENT_BYTES}")
        with self._write():
            row = self._conn.execute(
                "SELECT seq, entry_hash FROM audit_entries ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (1, GENESIS_HASH) if row is None else (row[0] + 1, bytes.fromhex(row[1]))
            digest = entry_hash_of(seq, prev, payload)
            self._conn.execute(
                "INSERT INTO audit_entries (seq, prev_hash, entry_hash, payload) VALUES (?, ?, ?, ?)",
                (seq, prev.hex(), digest.hex(), payload.decode("utf-8")))
            if seq % self._every == 0:
                self._sign(seq, digest)
        return AuditEntry(seq, prev, digest, payload)

    def checkpoint(self) -> AuditCheckpoint | None:
        """Sign the latest entry now (None if the log is empty); returns the checkpoint."""
        with self._write():
            row = self._conn.execute(
                "SELECT seq, entry_hash FROM audit_entries ORDER BY seq DESC LIMIT 1").fetchone()
            if row is None:
                return None
            return self._sign(row[0], bytes.fromhex(row[1]))

    def _sign(self, seq: int, digest: bytes) -> AuditCheckpoint:
        signature = self._key.sign(checkpoint_message(seq, digest))
        self._conn.execute(
            "INSERT OR REPLACE INTO audit_checkpoints (seq, entry_hash, signature, signer) VALUES (?, ?, ?, ?)",
            (seq, digest.hex(), signature.hex(), self._signer.hex()))
        tree = self._synced_tree()
        note = sign_note(Checkpoint(self.origin, seq, tree.root(seq)).body(), self.origin, self._key)
        self._conn.execute("INSERT OR REPLACE INTO audit_tree_heads (size, note) VALUES (?, ?)", (seq, note))
        return AuditCheckpoint(seq, digest, signature, self._signer)

    def _synced_tree(self) -> MerkleTree:
        """The tree over every entry this connection sees, brought up to date.

        Kept in memory and extended from the database; rebuilt when it no longer matches
        (a caller's transaction that held an entry rolled back).
        """
        tree = self._tree
        if tree.size:
            row = self._conn.execute("SELECT entry_hash FROM audit_entries WHERE seq = ?", (tree.size,)).fetchone()
            if row is None or tree.leaf(tree.size - 1) != leaf_hash(_hex(row[0], seq=tree.size, column="entry_hash")):
                tree = self._tree = MerkleTree()
        for (digest,) in self._conn.execute("SELECT entry_hash FROM audit_entries WHERE seq > ? ORDER BY seq",
                                            (tree.size,)):
            tree.append_hash(leaf_hash(_hex(digest, seq=tree.size + 1, column="entry_hash")))
        return tree

    def tree_heads(self) -> list[str]:
        """Every signed tree head (C2SP signed notes), smallest first."""
        with self._lock:
            return _read_tree_heads(self._conn)

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        """RFC 9162 proof that entry `seq` is in the tree head of the first `size` entries."""
        with self._lock:
            return self._synced_tree().inclusion_proof(seq - 1, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 proof that the head of `new_size` entries extends the head of `old_size`."""
        with self._lock:
            return self._synced_tree().consistency_proof(old_size, new_size)

    def entries(self, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        """Entries with seq > `after`, oldest first, at most `limit` (capped at 10 000)."""
        with self._lock:
            return _read_entries(self._conn, after, max(0, min(limit, MAX_PAGE)))

    def checkpoints(self) -> list[AuditCheckpoint]:
        with self._lock:
            return _read_checkpoints(self._conn)

    def latest_checkpoint(self) -> AuditCheckpoint | None:
        with self._lock:
            cps = _read_checkpoints(self._conn, latest_only=True)
        return cps[0] if cps else None

    def verify(self) -> ChainReport:
        """Verify this log against its own key."""
        with self._lock:
            entries = _read_entries(self._conn, 0, None)
            checkpoints = _read_checkpoints(self._conn)
            heads = _read_tree_heads(self._conn)
        return verify_chain(entries, checkpoints, self.public_key, heads)


def open_database(path: Path) -> sqlite3.Connection:
    """A SQLite connection for durable logs: WAL, fsync on every commit, explicit transactions."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except (sqlite3.Error, OSError) as exc:
        raise InputError(f"cannot open database: {exc}", source=str(path)) from None
    return conn


def read_log(path: Path) -> tuple[list[AuditEntry], list[AuditCheckpoint]]:
    """Read every entry and checkpoint of the audit log in the SQLite file `path`, read-only."""
    if not path.is_file():
        raise InputError("no such audit log file", source=str(path))
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputError(f"cannot open audit log: {exc}", source=str(path)) from None
    try:
        return _read_entries(conn, 0, None), _read_checkpoints(conn)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"not a teenet audit log ({exc})", source=str(path)) from None
    finally:
        conn.close()


def read_tree_heads(path: Path) -> list[str]:
    """The signed tree heads of the audit log in `path` (none for a log older than them)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputError(f"cannot open audit log: {exc}", source=str(path)) from None
    try:
        return _read_tree_heads(conn)
    except sqlite3.OperationalError:
        return []  # written before tree heads existed
    except sqlite3.DatabaseError as exc:
        raise InputError(f"not a teenet audit log ({exc})", source=str(path)) from None
    finally:
        conn.close()


def _read_tree_heads(conn: sqlite3.Connection) -> list[str]:
    return [str(note) for _, note in conn.execute("SELECT size, note FROM audit_tree_heads ORDER BY size")]


def _hex(value: object, *, seq: int, column: str) -> bytes:
    try:
        if not isinstance(value, str):
            raise ValueError
        return bytes.fromhex(value)
    except ValueError:
        # A malformed cell is tampering too; a hash of the wrong length fails verification.
        return b"<malformed " + column.encode() + b" at " + str(seq).encode() + b">"


def _read_entries(conn: sqlite3.Connection, after: int, limit: int | None) -> list[AuditEntry]:
    sql = "SELECT seq, prev_hash, entry_hash, payload FROM audit_entries WHERE seq > ? ORDER BY seq"
    args: tuple[int, ...] = (after,)
    if limit is not None:
        sql += " LIMIT ?"
        args = (after, limit)
    out = []
    for seq, prev, digest, payload in conn.execute(sql, args):
        raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload or b"")
        out.append(AuditEntry(int(seq), _hex(prev, seq=seq, column="prev_hash"),
                              _hex(digest, seq=seq, column="entry_hash"), raw))
    return out


def _read_checkpoints(conn: sqlite3.Connection, *, latest_only: bool = False) -> list[AuditCheckpoint]:
    sql = "SELECT seq, entry_hash, signature, signer FROM audit_checkpoints ORDER BY seq"
    if latest_only:
        sql += " DESC LIMIT 1"
    return [AuditCheckpoint(int(seq), _hex(h, seq=seq, column="entry_hash"),
                            _hex(s, seq=seq, column="signature"), _hex(k, seq=seq, column="signer"))
            for seq, h, s, k in conn.execute(sql)]


def load_audit_key(path: Path, *, create: bool = True,
                   protection: KeyProtection = NO_PROTECTION) -> ed25519.Ed25519PrivateKey:
    """The log owner's Ed25519 key (teenet.keyfiles rules), made under `protection` if absent."""
    if not os.path.lexists(path):
        if not create:
            raise InputError("audit key file does not exist", source=str(path))
        key = ed25519.Ed25519PrivateKey.generate()
        write_private_key(path, key, protection)
        return key
    loaded = read_private_key(path, protection)
    if not isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise InputError("expected an Ed25519 private key", source=str(path))
    return loaded
