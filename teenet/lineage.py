"""Lineage: what went into a result, said by the enclave that made it, checkable offline.

Fingerprints. A table shipped to a job is fingerprinted over exactly what its owner sends:
the RFC 9162 Merkle root (teenet.tlog) whose leaves are the sealed stream's plaintext
chunks, in order (each leaf hash = SHA-256(0x00 || chunk plaintext)). The data node
computes it while it seals, records it in its own audit (`shipped`), and sends it after the
last chunk with an HMAC-SHA256 under a key derived from the table key and the stream's
header (so it is bound to the job, the party and the table). The compute enclave
recomputes the root over the chunks it opened and refuses a table whose claimed root, chunk
count or MAC differs (check `input.fingerprint`). The exact definition is in docs/format.md.

Statements. After a job ran, the enclave drops its inputs and per-job decryption keys,
writes `inputs_and_keys_dropped` in the compute node's audit, signs a tree head covering it
and puts a lineage statement (job and spec digests, measurement, platform, each input's
party, table, fingerprint and rounded row count, the function and its version, the release
rules, the drop time, the signed tree head and the inclusion proof of the drop event) into
every result's signed statement. `verify_lineage` checks every link offline.

This module imports no pyarrow: the CLI loads it at start.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from teenet.errors import InputError, TeenetError, VerificationError
from teenet.tlog import MerkleTree, leaf_hash

LINEAGE_FORMAT = "teenet/lineage/v1"
RESULT_FILE_FORMAT = "teenet/result-file/v1"
_FINGERPRINT_KEY_INFO = b"teenet/fingerprint/v1\x00"
DROP_EVENT = "inputs_and_keys_dropped"


# fingerprints -----------------------------------------------------------------------------

class Fingerprinter:
    """Accumulates a stream's plaintext chunks into the RFC 9162 Merkle tree; pass
    `add_chunk` as a sealing `on_chunk` hook.

    A large chunk's leaf hash runs on a worker thread (hashlib releases the GIL while it
    hashes), so hashing chunk i overlaps the encryption or decryption of chunk i + 1 in the
    caller's thread instead of adding to it. At most `_IN_FLIGHT` chunks wait for their
    hash, each holding a reference to its plaintext pieces (never a copy), so memory stays
    at a few chunks. Leaves enter the tree in chunk order; `root()` and `chunks` wait for
    every pending hash. The leaves and the root are those of hashing in line: only when
    the hashing happens changes. The hooks' contract is that a chunk's pieces are not
    modified after the hook returns (sealing hands over views of Arrow buffers and of
    decrypted chunks, which nothing writes again).
    """

    _IN_FLIGHT = 2            # chunks hashed (or waiting) on the worker at once
    _THREAD_MIN_BYTES = 1 << 16  # smaller chunks are hashed in line: a hand-off costs more

    def __init__(self) -> None:
        self._tree = MerkleTree()
        self._pending: collections.deque = collections.deque()

    def add_chunk(self, pieces: Sequence[memoryview | bytes]) -> None:
        pieces = tuple(pieces)
        if not self._pending and sum(memoryview(p).nbytes for p in pieces) < self._THREAD_MIN_BYTES:
            self._tree.append_hash(_chunk_leaf(pieces))
            return
        while len(self._pending) >= self._IN_FLIGHT:
            self._tree.append_hash(self._pending.popleft().result())
        self._pending.append(_hash_pool().submit(_chunk_leaf, pieces))

    def _drain(self) -> None:
        while self._pending:
            self._tree.append_hash(self._pending.popleft().result())

    @property
    def chunks(self) -> int:
        self._drain()
        return self._tree.size

    def root(self) -> bytes:
        self._drain()
        return self._tree.root()


def _chunk_leaf(pieces: Sequence[memoryview | bytes]) -> bytes:
    """RFC 9162 leaf hash of a chunk given as pieces: SHA-256(0x00 || pieces...)."""
    h = hashlib.sha256(b"\x00")
    for piece in pieces:
        h.update(piece)
    return h.digest()


_POOL_LOCK = threading.Lock()
_POOL: Any = None  # concurrent.futures.ThreadPoolExecutor, imported on first use (CLI start-up)


def _hash_pool() -> Any:
    """Worker threads shared by every fingerprint this process computes (each keeps its own
    leaves in order), one per core so that streams fingerprinted at the same time (a
    compute node receiving several uploads) still hash in parallel; started on the first
    large chunk."""
    global _POOL
    if _POOL is None:
        import concurrent.futures

        with _POOL_LOCK:
            if _POOL is None:
                _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1),
                                                              thread_name_prefix="fingerprint")
    return _POOL


def fingerprint_of_chunks(chunks: Sequence[bytes]) -> bytes:
    """The fingerprint of a stream whose plaintext chunks are `chunks` (for tests and docs)."""
    return MerkleTree(leaf_hash(bytes(c)) for c in chunks).root()


def _fingerprint_key(table_key: bytes, header: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), 32, salt=None,
                info=_FINGERPRINT_KEY_INFO + hashlib.sha256(header).digest()).derive(table_key)


def _fingerprint_message(root: bytes, chunks: int) -> bytes:
    return b"teenet/fingerprint/v1\x00" + chunks.to_bytes(8, "big") + root


def fingerprint_mac(table_key: bytes, header: bytes, root: bytes, chunks: int) -> bytes:
    """HMAC-SHA256 binding (root, chunks) to the table key and the stream's header."""
    return hmac.new(_fingerprint_key(table_key, header), _fingerprint_message(root, chunks), "sha256").digest()


def check_fingerprint(*, table_key: bytes, header: bytes, computed: Fingerprinter,
                      claimed_root: bytes, claimed_chunks: int, mac: bytes) -> bytes:
    """The opened stream's fingerprint, if the owner's claim is authentic and matches it."""
    expected_mac = fingerprint_mac(table_key, header, bytes(claimed_root), int(claimed_chunks))
    if not hmac.compare_digest(expected_mac, bytes(mac)):
        raise VerificationError("input.fingerprint", "the table's fingerprint is not authenticated by its table key")
    root = computed.root()
    if claimed_chunks != computed.chunks or not hmac.compare_digest(root, bytes(claimed_root)):
        raise VerificationError("input.fingerprint", "the table's fingerprint differs from the chunks opened",
                                expected=bytes(claimed_root).hex()[:16], found=root.hex()[:16])
    return root


def rounded_rows(rows: int, k: int) -> str:
    """A row count as it may leave a node: rounded down to a multiple of k, "<k" below k."""
    k = max(1, int(k))
    if rows < k:
        return f"<{k}"
    return str(rows - rows % k)


def owner_min_group_size(rt, job_id: str) -> int:
    """The k of this data node's own signed decision for the job (1 if it has none)."""
    from teenet.approval import Decision

    own = rt.store.decision(job_id, rt.name)
    try:
        return max(1, int(Decision.from_canonical(own.decision).min_group_size)) if own is not None else 1
    except Exception:
        return 1


# statements -------------------------------------------------------------------------------

def drop_payload(*, job_id: str, compute: str, at: str) -> bytes:
    """The audit payload of the drop event, as teenet.audit.AuditLog.append writes it."""
    from teenet.canonical import canonical_json

    return canonical_json({"at": at, "event": {"event": DROP_EVENT, "job_id": job_id, "node": compute}})


def record_drop(rt, run, *, platform: str) -> dict[str, Any]:
    """Inside the compute enclave, after the function ran and its inputs were cleared: drop
    the job's HPKE decryption key, write `inputs_and_keys_dropped` in the compute node's
    audit, sign a tree head covering it and build the lineage statement, which every result's
    signed statement then carries. The session's signing key stays until results are signed."""
    import teenet
    from teenet.models.rules import epsilon_cost

    run.session._hpke_private = None  # no table key envelope of this job opens after this
    run.tables.clear()
    entry = rt.audit_log.append({"event": DROP_EVENT, "node": rt.name, "job_id": run.job_id})
    dropped = _entry_proof(rt.audit_log, entry)
    spec = run.spec
    k = int(run.terms.min_group_size)
    try:
        epsilon = float(epsilon_cost(spec.function, dict(spec.params))[0]) or None
    except Exception:
        epsilon = None
    inputs = [{"party": i.party, "table": i.table,
               "fingerprint": run.fingerprints[(i.party, i.table)][0],
               "rows": rounded_rows(run.fingerprints[(i.party, i.table)][1], k)} for i in spec.inputs]
    shipped = getattr(run, "shipped", {})
    for i, item in zip(spec.inputs, inputs):
        if shipped.get((i.party, i.table)):
            item["shipped"] = shipped[(i.party, i.table)]
    lineage = {"format": LINEAGE_FORMAT, "job_id": run.job_id,
               "spec_sha256": hashlib.sha256(run.signed_spec).hexdigest(),
               "enclave": {"measurement": rt.enclave.measurement, "platform": platform, "node": rt.name},
               "inputs": inputs, "function": {"name": spec.function, "version": f"teenet {teenet.__version__}"},
               "release_rules": {"k": k, "epsilon": epsilon}, "dropped": dropped}
    if getattr(run, "model_lineage", None):  # predict: the model it scored with
        lineage["model"] = dict(run.model_lineage)
    return fit_lineage(lineage)


def fit_lineage(lineage: dict[str, Any]) -> dict[str, Any]:
    """Leave shipped records out, from the last input back, until the lineage fits in
    MAX_LINEAGE_BYTES (a statement stays under teenet.release.MAX_STATEMENT_BYTES)."""
    from teenet.canonical import canonical_json

    for item in reversed(lineage.get("inputs") or []):
        if len(canonical_json(lineage)) <= MAX_LINEAGE_BYTES:
            break
        item.pop("shipped", None)
    return lineage


# the owner's `shipped` record, carried with the fingerprint --------------------------------------

SHIPPED_EVENT = "shipped"
# The whole lineage statement's budget: shipped records are left out (from the last input
# back) when they would not fit, so a job of many inputs still gets a statement.
MAX_LINEAGE_BYTES = 5120


def shipped_payload(*, job_id: str, node: str, table: str, fingerprint: str, rows: str, at: str) -> bytes:
    """The audit payload of a `shipped` entry, as teenet.audit.AuditLog.append writes it."""
    from teenet.canonical import canonical_json

    return canonical_json({"at": at, "event": {"event": SHIPPED_EVENT, "fingerprint": fingerprint,
                                               "job_id": job_id, "node": node, "rows": rows, "table": table}})


def _entry_proof(log, entry) -> dict[str, Any]:
    """Sign a tree head covering `entry` now; its note and the entry's inclusion proof."""
    from teenet.tlog import Checkpoint, SignedNote

    cp = log.checkpoint()
    note = next(n for n in reversed(log.tree_heads()) if Checkpoint.parse(SignedNote.parse(n).body).size == cp.seq)
    proof = log.inclusion_proof(entry.seq, cp.seq)
    return {"at": entry.at, "audit_seq": entry.seq, "prev_hash": entry.prev_hash.hex(), "tree_head": note,
            "inclusion_proof": [_b64(p) for p in proof]}


def record_shipped(rt, job_id: str, table: str, root: bytes, rows: str) -> dict[str, Any]:
    """On the data node, as a table's stream ends: write `shipped` (job, table, fingerprint,
    rounded rows) in its own audit and sign a tree head covering it. Returns the record the
    stream's last message carries to the compute enclave (`shipped_fields`)."""
    entry = rt.audit_log.append({"event": SHIPPED_EVENT, "node": rt.name, "job_id": job_id, "table": table,
                                 "fingerprint": root.hex(), "rows": rows})
    return {**_entry_proof(rt.audit_log, entry), "rows": rows}


def shipped_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The LineageFingerprint fields (64-69) of a `record_shipped` record."""
    return {"shipped_seq": int(record["audit_seq"]), "shipped_at": record["at"],
            "shipped_prev_hash": bytes.fromhex(record["prev_hash"]), "shipped_tree_head": record["tree_head"],
            "shipped_proof": [base64.b64decode(p) for p in record["inclusion_proof"]],
            "shipped_rows": record["rows"]}


def verify_shipped(record: Mapping[str, Any], *, job_id: str, party: str, table: str, fingerprint: str,
                   key) -> Any:
    """The owner's `shipped` entry for (job, table, fingerprint) is in a tree head of its log
    signed with its key; returns that tree head (a Checkpoint). VerificationError otherwise."""
    from teenet.audit import default_origin
    from teenet.tlog import Checkpoint, SignedNote, verify_inclusion, verify_note

    try:
        note = SignedNote.parse(str(record["tree_head"]))
        verify_note(note, default_origin(key), key)
        head = Checkpoint.parse(note.body)
        seq = int(record["audit_seq"])
        payload = shipped_payload(job_id=job_id, node=party, table=table, fingerprint=fingerprint,
                                  rows=str(record["rows"]), at=str(record["at"]))
        leaf = leaf_hash(drop_event_payload_hash(seq, bytes.fromhex(str(record["prev_hash"])), payload))
        proof = [_unb64(p, "inclusion_proof") for p in record.get("inclusion_proof") or []]
        verify_inclusion(leaf, seq - 1, head.size, proof, head.root_hash)
    except VerificationError as exc:
        raise VerificationError("input.fingerprint", f"{party}'s shipped record of {table} does not verify "
                                f"({exc.check})") from None
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise VerificationError("input.fingerprint", f"{party}'s shipped record of {table} is malformed "
                                f"({type(exc).__name__})") from None
    return head


def check_shipped_record(msg, consortium, *, job_id: str, party: str, table: str, root: bytes) -> dict | None:
    """In the compute enclave: the shipped record a table's last message carries (None when
    an older data node sent none), verified against the party's key and the fingerprint the
    enclave itself recomputed; a record that does not verify refuses the table."""
    if not msg.shipped_tree_head:
        return None
    record = {"audit_seq": int(msg.shipped_seq), "at": msg.shipped_at, "prev_hash": bytes(msg.shipped_prev_hash).hex(),
              "rows": msg.shipped_rows, "tree_head": msg.shipped_tree_head,
              "inclusion_proof": [_b64(bytes(p)) for p in msg.shipped_proof]}
    verify_shipped(record, job_id=job_id, party=party, table=table, fingerprint=root.hex(),
                   key=consortium.member(party).keys.signing)
    return record


def model_input(ref, shipped_model, consortium, roots) -> dict[str, Any]:
    """In the compute enclave, once a predict job's shipped model verified: the model as a
    lineage input: who shipped it, its train job, the SHA-256 of the train result's signed
    statement (which carries the train job's own lineage) and the measurement and platform
    of the enclave that released it (from its offer's evidence, verified again here)."""
    from teenet.attestation.policy import policy_from_config
    from teenet.negotiation import verify_compute_offer
    from teenet.node.results import offer_from_proto

    policy = policy_from_config(consortium.attestation, source="consortium attestation")
    verified = verify_compute_offer(offer_from_proto(shipped_model.train_offer), bytes.fromhex(ref.job), policy, roots)
    return {"party": ref.sender, "train_job": ref.job,
            "statement_sha256": hashlib.sha256(bytes(shipped_model.head.statement)).hexdigest(),
            "measurement": verified.claims.measurement.hex(), "platform": verified.claims.platform.value}


def drop_event_payload_hash(seq: int, prev_hash: bytes, payload: bytes) -> bytes:
    from teenet.audit import entry_hash_of

    return entry_hash_of(seq, prev_hash, payload)


# verification -----------------------------------------------------------------------------

@dataclass
class LineageReport:
    """What `verify_lineage` found: each link checked, in order; `broken` names the first
    that failed (None when all hold). witness14 may append further links."""

    job_id: str = ""
    links: list[tuple[str, bool, str]] = field(default_factory=list)
    lineage: dict[str, Any] = field(default_factory=dict)
    # Each log the result depends on, judged against a board (teenet.witness.QuorumState);
    # empty when no board was given. An "inconsistent" one is also a failed link.
    witnessing: list[Any] = field(default_factory=list)
    witnessing_note: str = ""  # why witnessing was not judged (no board, the board unreachable)
    model: dict[str, Any] = field(default_factory=dict)  # a predict result's train lineage, when given

    @property
    def broken(self) -> str | None:
        return next((name for name, ok, _ in self.links if not ok), None)

    @property
    def ok(self) -> bool:
        return bool(self.links) and self.broken is None

    @property
    def witnessed(self) -> bool:
        """Every log the result depends on is covered by a checkpoint a quorum cosigned."""
        return self.ok and bool(self.witnessing) and all(w.state == "witnessed" for w in self.witnessing)

    @property
    def status(self) -> str:
        """"broken", "witnessed" or "unwitnessed" (verified, not (yet) shown witnessed)."""
        return "broken" if not self.ok else "witnessed" if self.witnessed else "unwitnessed"

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "ok": self.ok, "broken": self.broken, "status": self.status,
                "links": [{"link": n, "ok": ok, "detail": d} for n, ok, d in self.links],
                "witnessing": [w.to_json() for w in self.witnessing],
                "witnessing_note": self.witnessing_note,
                "lineage": self.lineage, "model": self.model}


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _unb64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except Exception:
        raise InputError(f"{what}: expected base64 text", field=what) from None


def result_file(*, signed_job, offer, result) -> dict[str, Any]:
    """A result file: the signed job, the compute offer (its evidence binds the session key)
    and one sealed result's head (its signed statement carries the lineage). The sealed
    payload is not included; the file proves lineage, it does not carry the data."""
    return {"format": RESULT_FILE_FORMAT,
            "job": {"canonical_spec": _b64(signed_job.canonical_spec), "analyst": signed_job.analyst,
                    "signature": _b64(signed_job.signature)},
            "offer": {"job_id": offer.job_id, "compute": offer.compute, "hpke_suite": offer.suite.value,
                      "hpke_public_key": _b64(offer.hpke_public_key),
                      "signing_public_key": _b64(offer.signing_public_key), "evidence": _b64(offer.evidence),
                      "endpoint": offer.endpoint},
            "result": {"job_id": result.job_id, "recipient": result.recipient, "kind": result.kind,
                       "key_envelope": _b64(result.key_envelope), "statement": _b64(result.statement),
                       "signature": _b64(result.signature),
                       "messages_sha256": [hashlib.sha256(m).hexdigest() for m in result.messages]}}


def statement_lineage(statement: bytes) -> dict[str, Any] | None:
    try:
        st = json.loads(statement)
    except ValueError:
        return None
    lin = st.get("lineage") if isinstance(st, dict) else None
    return lin if isinstance(lin, dict) else None


def verify_lineage(doc: Mapping[str, Any], consortium, roots, board=None,
                   model_doc: Mapping[str, Any] | None = None) -> LineageReport:
    """Verify a result file's lineage offline, link by link (see the module docstring).

    With `board` (teenet.witness.Board: the coordinator's, or a checkpoints file's), also
    judge whether each log the result depends on is witnessed (`report.witnessing`): the
    compute node's log at the tree head covering the drop event, and each owner's log at the
    tree head covering its `shipped` entry where the result names it. For a predict result,
    `model_doc` is the train job's model result file: its own lineage is verified (and
    judged) too, and linked to the model the predict lineage names."""
    from teenet.audit import default_origin
    from teenet.canonical import parse_canonical_json
    from teenet.jobspec import SignedJob, verify_signed_job
    from teenet.negotiation import ComputeOffer, HpkeSuite, verify_compute_offer
    from teenet.release import SealedResult, _signed_message
    from teenet.identity import verify_ed25519
    from teenet.tlog import Checkpoint, SignedNote, verify_inclusion, verify_note

    report = LineageReport()

    def link(name: str, ok: bool, detail: str) -> bool:
        report.links.append((name, ok, detail))
        return ok

    if not isinstance(doc, Mapping) or doc.get("format") != RESULT_FILE_FORMAT:
        link("file.format", False, f"not a {RESULT_FILE_FORMAT} result file")
        return report
    try:
        j, o, r = doc["job"], doc["offer"], doc["result"]
        signed = SignedJob(_unb64(j["canonical_spec"], "job.canonical_spec"), str(j["analyst"]),
                           _unb64(j["signature"], "job.signature"))
        offer = ComputeOffer(job_id=str(o["job_id"]), compute=str(o["compute"]), suite=HpkeSuite(o["hpke_suite"]),
                             hpke_public_key=_unb64(o["hpke_public_key"], "offer.hpke_public_key"),
                             signing_public_key=_unb64(o["signing_public_key"], "offer.signing_public_key"),
                             evidence=_unb64(o["evidence"], "offer.evidence"), endpoint=str(o["endpoint"]))
        statement = _unb64(r["statement"], "result.statement")
        signature = _unb64(r["signature"], "result.signature")
        result = SealedResult(str(r["job_id"]), str(r["recipient"]), str(r["kind"]),
                              _unb64(r["key_envelope"], "result.key_envelope"), statement, signature, ())
    except (KeyError, TypeError, ValueError, InputError) as exc:
        link("file.fields", False, f"the result file is missing or garbles a field ({exc})")
        return report
    report.job_id = signed.job_id
    # 1. the signed job: the analyst's signature, against the consortium file
    try:
        spec = verify_signed_job(signed, consortium)
        link("job.signature", True, f"job {signed.job_id[:16]} signed by {signed.analyst}")
    except Exception as exc:
        link("job.signature", False, str(exc))
        return report
    # 2. the session key's binding to the enclave's evidence and measurement
    try:
        if offer.job_id != signed.job_id:
            raise VerificationError("offer.job", "the offer is for another job")
        if offer.compute != spec.compute:
            raise VerificationError("offer.compute", "the offer comes from another compute node")
        from teenet.attestation.policy import policy_from_config

        policy = policy_from_config(consortium.attestation, source="consortium attestation")
        verified = verify_compute_offer(offer, bytes.fromhex(signed.job_id), policy, roots)
        link("enclave.evidence", True, f"session key bound to measurement {verified.claims.measurement.hex()[:16]}")
    except Exception as exc:
        link("enclave.evidence", False, str(exc))
        return report
    # 3. the statement's signature under that session key
    from teenet.identity import ed25519_public_from_raw

    session_key = ed25519_public_from_raw(offer.signing_public_key, what="compute offer")
    # Not a stop: the links below still run, so an edit is named by every link it breaks.
    link("statement.signature", verify_ed25519(session_key, signature, _signed_message(statement)),
         "signed by the job's attested session key")
    try:
        st = parse_canonical_json(statement, what="result statement")
        lin = st["lineage"]
        report.lineage = lin
    except Exception:
        link("statement.lineage", False, "the signed statement carries no lineage")
        return report
    # 4. digests and the enclave against the signed job and the evidence
    link("lineage.job_digest", lin.get("job_id") == signed.job_id == st.get("job_id"),
         "the lineage names the signed job's digest")
    link("lineage.spec_digest", lin.get("spec_sha256") == hashlib.sha256(signed.canonical_spec).hexdigest(),
         "the lineage names the signed spec's digest")
    enclave = lin.get("enclave") or {}
    link("lineage.measurement", enclave.get("measurement") == verified.claims.measurement.hex()
         and enclave.get("platform") == verified.claims.platform.value,
         "the lineage's measurement and platform are the evidence's")
    k = (lin.get("release_rules") or {}).get("k")
    rows_ok = isinstance(k, int) and k >= 1 and all(
        i.get("rows") == f"<{k}" or (str(i.get("rows")).isdigit() and int(i["rows"]) % k == 0 and int(i["rows"]) >= k)
        for i in lin.get("inputs") or [])
    link("lineage.rows", rows_ok, "every row count is rounded down to a multiple of k, or \"<k\"")
    names = [(i.party, i.table) for i in spec.inputs]
    got = [(i.get("party"), i.get("table")) for i in lin.get("inputs") or []]
    link("lineage.inputs", got == names, "the lineage's inputs are the job's inputs")
    link("lineage.function", (lin.get("function") or {}).get("name") == spec.function,
         "the lineage's function is the job's")
    # 5. the compute node's signed tree head covering the drop event, and its inclusion proof
    dropped = lin.get("dropped") or {}
    try:
        member = consortium.member(spec.compute)
        key = member.keys.signing
        origin = default_origin(key)
        note = SignedNote.parse(str(dropped.get("tree_head", "")))
        verify_note(note, origin, key)
        head = Checkpoint.parse(note.body)
        link("checkpoint.signature", True, f"tree head of {head.size} entries signed by {spec.compute}")
    except Exception as exc:
        link("checkpoint.signature", False, str(exc))
        return report
    try:
        seq = int(dropped["audit_seq"])
        payload = drop_payload(job_id=signed.job_id, compute=spec.compute, at=str(dropped["at"]))
        leaf = leaf_hash(drop_event_payload_hash(seq, bytes.fromhex(dropped["prev_hash"]), payload))
        proof = [_unb64(p, "inclusion_proof") for p in dropped.get("inclusion_proof") or []]
        verify_inclusion(leaf, seq - 1, head.size, proof, head.root_hash)
        link("drop.inclusion", True, f"the drop event (entry {seq}) is in the signed tree head")
    except Exception as exc:
        link("drop.inclusion", False, str(exc) or type(exc).__name__)
        return report
    # 6. each owner's own `shipped` entry, where the result names it: in the owner's signed tree head
    logs = [("drop", spec.compute, key, head)]
    for item in lin.get("inputs") or []:
        record = item.get("shipped") if isinstance(item, Mapping) else None
        if record is None:
            continue
        party, table = str(item.get("party")), str(item.get("table"))
        name = f"{party}/{table}"
        try:
            if not isinstance(record, Mapping):
                raise VerificationError("input.fingerprint", "the shipped record is not an object")
            owner_key = consortium.member(party, "data").keys.signing
            owner_head = verify_shipped(record, job_id=signed.job_id, party=party, table=table,
                                        fingerprint=str(item.get("fingerprint")), key=owner_key)
            link(f"shipped.{name}", True, f"{party}'s own audit entry {record.get('audit_seq')} records shipping "
                 f"this fingerprint, in its signed tree head of {owner_head.size} entries")
            logs.append((f"shipped:{name}", party, owner_key, owner_head))
        except TeenetError as exc:
            link(f"shipped.{name}", False, str(exc))
    sub = _model_links(report, link, spec, lin, model_doc, consortium, roots, board)
    if not report.ok:
        return report
    # 7. witnessing: for each of those logs, a checkpoint at or beyond the tree head, consistent
    # with it, cosigned by a quorum of other members
    if board is None:
        report.witnessing_note = "witnessing not judged: no board or checkpoints file given"
        return report
    judge_witnessing(report, board, consortium, logs)
    if sub is not None:
        report.witnessing += [_renamed(w, f"model/{w.log}") for w in sub.witnessing]
        if sub.witnessing_note and not sub.witnessing:
            report.witnessing_note = f"the model's {sub.witnessing_note}"
            report.witnessing.clear()
    return report


def _renamed(state, log: str):
    from dataclasses import replace

    return replace(state, log=log)


def _model_links(report: LineageReport, link, spec, lin: Mapping[str, Any], model_doc, consortium, roots, board):
    """A predict result: the model it names is the job's, and (given the train result file)
    that file's own lineage verifies and is the model's. Returns the train file's report."""
    if spec.function != "predict":
        return None
    from teenet.shipped_model import ModelReference

    model = lin.get("model") if isinstance(lin.get("model"), Mapping) else {}
    try:
        ref = ModelReference.parse(spec.params, [i.party for i in spec.inputs])
        named = model.get("train_job") == ref.job and model.get("party") == ref.sender
    except TeenetError:
        named = False
    link("model.named", named, f"the lineage names the job's model: train job {str(model.get('train_job'))[:16]} "
         f"shipped by {model.get('party')}")
    if model_doc is None or not named:
        return None
    sub = verify_lineage(model_doc, consortium, roots, board)
    for name, ok, detail in sub.links:
        report.links.append((f"model/{name}", ok, detail))
    try:
        statement = _unb64(model_doc["result"]["statement"], "result.statement")
    except (KeyError, TypeError, InputError):
        statement = b""
    sub_enclave = sub.lineage.get("enclave") or {}
    link("model.lineage", sub.ok and sub.job_id == model.get("train_job")
         and hashlib.sha256(statement).hexdigest() == model.get("statement_sha256")
         and sub_enclave.get("measurement") == model.get("measurement"),
         "the train result file is the model's: its job, statement digest and measurement")
    report.model = sub.to_json()
    return sub


def judge_witnessing(report: LineageReport, board, consortium, logs) -> None:
    """Judge each (log, member, key, tree head) against `board`; an inconsistent one is a
    failed link `witness.LOG`. A board that cannot be read leaves the rest unjudged."""
    from teenet.witness import quorum_state, witnessed_members

    witnesses = witnessed_members(consortium)
    for name, member, key, head in logs:
        try:
            state = quorum_state(board, log=name, member=member, key=key, head=head, witnesses=witnesses,
                                 quorum=consortium.witness_quorum)
        except TeenetError as exc:
            report.witnessing_note = f"witnessing not judged: {exc}"
            report.witnessing.clear()
            return
        report.witnessing.append(state)
        if state.state == "inconsistent":
            report.links.append((f"witness.{name}", False, state.detail))


def render(report: LineageReport) -> str:
    lin = report.lineage
    lines = [f"job {report.job_id}"]
    if lin:
        e, f, rr, d = lin.get("enclave", {}), lin.get("function", {}), lin.get("release_rules", {}), lin.get("dropped", {})
        lines += [f"  spec sha256   {lin.get('spec_sha256')}",
                  f"  enclave       {e.get('node')} {e.get('platform')} {e.get('measurement')}",
                  f"  function      {f.get('name')} {f.get('version')}",
                  f"  release rules k={rr.get('k')} epsilon={rr.get('epsilon')}",
                  "  inputs"]
        for i in lin.get("inputs", []):
            lines.append(f"    {i.get('party')}/{i.get('table')}  rows {i.get('rows')}  fingerprint {i.get('fingerprint')}"
                         + (f"  (shipped: {i.get('party')}'s audit entry {i['shipped'].get('audit_seq')})"
                            if isinstance(i.get("shipped"), Mapping) else ""))
        m = lin.get("model")
        if isinstance(m, Mapping):
            lines.append(f"  model         train job {m.get('train_job')} shipped by {m.get('party')}, statement "
                         f"sha256 {m.get('statement_sha256')}, enclave {m.get('platform')} {m.get('measurement')}")
        lines.append(f"  inputs and keys dropped at {d.get('at')} (audit entry {d.get('audit_seq')})")
    lines.append("  links")
    for name, ok, detail in report.links:
        lines.append(f"    {'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if report.witnessing:
        lines.append("  witnessing")
        for w in report.witnessing:
            mark = {"witnessed": "ok  ", "unwitnessed": "WAIT"}.get(w.state, "FAIL")
            lines.append(f"    {mark} {w.log} ({w.member}'s log, tree head {w.size}): {w.state}: {w.detail}")
    elif report.witnessing_note:
        lines.append(f"  {report.witnessing_note}")
    if not report.ok:
        lines.append(f"lineage BROKEN at {report.broken}")
    elif report.witnessed:
        lines.append("lineage verified and witnessed")
    elif not report.witnessing:
        lines.append("lineage verified; its witnessing was not judged (see above)")
    else:
        lines.append("lineage verified, not yet witnessed by the consortium's quorum")
    return "\n".join(lines)
