"""The job state machine: every rule of the job flow, as plain classes tests drive directly.

`TRANSITIONS` is the one table of allowed state changes. `Coordinator` takes each
message of the flow (submit, decide, offer, status, results, cancel), checks it (size,
shape, signature where the coordinator can check one, who may send it, the job's state),
writes it and the state change it causes in ONE SQLite transaction with the audit entries,
so an acknowledged message is durable and audited, and a refused one leaves no trace.

The coordinator is untrusted: these checks refuse junk early, they protect nothing the
nodes do not check again. Who is calling is the transport's business (service.py
compares the mTLS name with the name in the message); which member may do what to which
job is decided here.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

from teenet.audit import AuditEntry, AuditLog
from teenet.canonical import domain_digest, domain_message, parse_canonical_json
from teenet.errors import InputError, TeenetError, VerificationError
from teenet.identity import MemberPublicKeys, verify_ed25519

from teenet.coordinator.config import DEFAULT_COMPUTE_SILENCE, DEFAULT_MAX_RESULT_BYTES
from teenet.coordinator.store import (CoordinatorStore, DecisionRecord, JobRecord, OfferRecord,
                                      ResultRecord, RevocationRecord, StatusEvent)

log = logging.getLogger("teenet.coordinator")

JOB_DOMAIN = "teenet/job/v1"
JOB_SIGNATURE_DOMAIN = "teenet/job-signature/v1"
DECISION_DOMAIN = "teenet/decision/v1"
CANCEL_DOMAIN = "teenet/cancel/v1"
REVOCATION_DOMAIN = "teenet/approval-revocation/v1"
MAX_REVOCATION_BYTES = 4096

MAX_SPEC_BYTES = 256 * 1024
MAX_NAME_CHARS = 128
MAX_REASON_CHARS = 1024
MAX_DECISION_BYTES = 64 * 1024
MAX_RESULT_HEAD_BYTES = 8 * 1024  # key envelope, statement: small by construction
RESULT_FLUSH_BYTES = 8 << 20
MAX_EVIDENCE_BYTES = 1024 * 1024
MAX_CLUSTER_OFFER_BYTES = 3 * 1024 * 1024  # a cluster offer: each worker with its evidence and certificate
MAX_HPKE_KEY_BYTES = 4096
MAX_INPUTS = 64
MAX_RELEASES = 64
MAX_WORK_ITEMS = 64
STOP_WINDOW_SECONDS = 3600.0

_JOB_ID = re.compile(r"[0-9a-f]{64}")
_ENDPOINT = re.compile(r"[A-Za-z0-9.\-\[\]:]{1,253}:[0-9]{1,5}")


class JobState(str, enum.Enum):
    SUBMITTED = "submitted"
    AWAITING_APPROVALS = "awaiting_approvals"
    APPROVED = "approved"
    NEGOTIATING_KEYS = "negotiating_keys"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return not TRANSITIONS[self]


_ENDINGS = frozenset({JobState.FAILED, JobState.CANCELLED})

# The one table of allowed state changes. Terminal states have no way out.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.SUBMITTED: frozenset({JobState.AWAITING_APPROVALS}) | _ENDINGS,
    JobState.AWAITING_APPROVALS: frozenset({JobState.APPROVED}) | _ENDINGS,
    JobState.APPROVED: frozenset({JobState.NEGOTIATING_KEYS}) | _ENDINGS,
    JobState.NEGOTIATING_KEYS: frozenset({JobState.RUNNING}) | _ENDINGS,
    JobState.RUNNING: frozenset({JobState.SUCCEEDED}) | _ENDINGS,
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class JobNotFound(TeenetError):
    """No job with that id is stored."""


class PermissionRefused(TeenetError):
    """The caller is not the member this message may come from, or has no part in the job."""


class TransitionRefused(TeenetError):
    """The message is not allowed in the job's current state (an illegal transition)."""


class Member(Protocol):
    """A consortium member as teenet.config describes it."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...  # data | compute | analyst
    @property
    def keys(self) -> MemberPublicKeys: ...


class Consortium(Protocol):
    @property
    def members(self) -> Mapping[str, Member]: ...


@dataclass(frozen=True)
class JobSpecView:
    """The few fields of a canonical job spec the coordinator routes on."""

    name: str
    function: str
    compute: str
    analyst: str
    consortium: str
    inputs: tuple[tuple[str, str], ...]              # (party, table)
    release: tuple[tuple[str, tuple[str, ...]], ...]  # (kind, recipients)

    @property
    def parties(self) -> tuple[str, ...]:
        return tuple(sorted({p for p, _ in self.inputs}))

    @property
    def recipients(self) -> frozenset[str]:
        return frozenset(r for _, to in self.release for r in to)

    def release_pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset((kind, r) for kind, to in self.release for r in to)


def parse_spec_view(spec: Mapping[str, Any]) -> JobSpecView:
    """Read the routing fields of a parsed job spec; InputError names the field."""
    if not isinstance(spec, Mapping):
        raise InputError("job spec must be a JSON object")

    def text(value: Any, field: str) -> str:
        return check_name(value, field=field)

    inputs_raw = spec.get("inputs")
    if not isinstance(inputs_raw, list) or not inputs_raw:
        raise InputError("expected a non-empty list of inputs", field="inputs")
    if len(inputs_raw) > MAX_INPUTS:
        raise InputError(f"at most {MAX_INPUTS} inputs, found {len(inputs_raw)}", field="inputs")
    inputs: list[tuple[str, str]] = []
    for i, item in enumerate(inputs_raw):
        if not isinstance(item, Mapping):
            raise InputError("expected a mapping with party and table", field=f"inputs[{i}]")
        pair = (text(item.get("party"), f"inputs[{i}].party"), text(item.get("table"), f"inputs[{i}].table"))
        if pair in inputs:
            raise InputError(f"table '{pair[1]}' of '{pair[0]}' is listed twice", field=f"inputs[{i}]")
        inputs.append(pair)
    release_raw = spec.get("release", [])
    if not isinstance(release_raw, list) or len(release_raw) > MAX_RELEASES:
        raise InputError(f"expected a list of at most {MAX_RELEASES} releases", field="release")
    release: list[tuple[str, tuple[str, ...]]] = []
    for i, item in enumerate(release_raw):
        if not isinstance(item, Mapping):
            raise InputError("expected a mapping with kind and to", field=f"release[{i}]")
        to = item.get("to")
        to_list = [to] if isinstance(to, str) else to
        if not isinstance(to_list, list) or not to_list:
            raise InputError("expected a recipient or a list of recipients", field=f"release[{i}].to")
        release.append((text(item.get("kind"), f"release[{i}].kind"),
                        tuple(text(r, f"release[{i}].to") for r in to_list)))
    consortium = spec.get("consortium", "")
    return JobSpecView(name=text(spec.get("name"), "name"), function=text(spec.get("function"), "function"),
                       compute=text(spec.get("compute"), "compute"), analyst=text(spec.get("analyst"), "analyst"),
                       consortium=consortium if isinstance(consortium, str) else "",
                       inputs=tuple(inputs), release=tuple(release))


def check_name(value: Any, *, field: str) -> str:
    """A member, table, kind or job name: 1..128 printable characters."""
    if not isinstance(value, str) or not value:
        raise InputError("expected a non-empty name", field=field)
    if len(value) > MAX_NAME_CHARS:
        raise InputError(f"name is {len(value)} characters, at most {MAX_NAME_CHARS}", field=field)
    if not value.isprintable():
        raise InputError("name has control characters", field=field)
    return value


def check_text(value: Any, *, field: str, limit: int = MAX_REASON_CHARS) -> str:
    """Free human text (a reason, a status detail): bounded, may be empty."""
    if not isinstance(value, str):
        raise InputError("expected text", field=field)
    if len(value) > limit:
        raise InputError(f"text is {len(value)} characters, at most {limit}", field=field)
    return value


def check_job_id(value: Any) -> str:
    if not isinstance(value, str) or not _JOB_ID.fullmatch(value):
        raise InputError("expected 64 lowercase hex characters (the job digest)", field="job_id")
    return value


def job_digest(canonical_spec: bytes) -> bytes:
    return domain_digest(JOB_DOMAIN, canonical_spec)


@dataclass(frozen=True)
class SubmitOutcome:
    job_id: str
    state: JobState
    duplicate: bool


@dataclass(frozen=True)
class PartyStatus:
    party: str
    decision: str  # pending | approved | rejected
    reason: str


@dataclass(frozen=True)
class JobView:
    """What GetJob shows: the job, each owner's decision, uploads, the mailbox index."""

    job: JobRecord
    spec: JobSpecView
    decisions: tuple[PartyStatus, ...]
    uploaded: tuple[str, ...]  # "party/table"
    results: tuple[str, ...]   # "kind->recipient"

    @property
    def state(self) -> JobState:
        return JobState(self.job.state)


@dataclass(frozen=True)
class WorkItem:
    """One thing a polling node should do."""

    kind: str  # decide | compute | upload | stop
    job: JobRecord
    decisions: tuple[DecisionRecord, ...] = ()
    offer: OfferRecord | None = None
    reason: str = ""
    revocations: tuple[RevocationRecord, ...] = ()


@dataclass(frozen=True)
class SealedResultIn:
    """A sealed result's head as the compute node posts it (opaque to the coordinator); its
    stream messages arrive separately (`add_result_message`)."""

    job_id: str
    recipient: str
    kind: str
    envelope: bytes  # the HPKE-sealed result key
    signature: bytes
    statement: bytes = b""


@dataclass
class ResultUpload:
    """One PostResultStream in progress: what it has stored so far, against the job's cap."""

    job_id: str
    compute: str
    heads: dict[tuple[str, str], SealedResultIn]
    messages: dict[tuple[str, str], int]
    stored: int = 0
    # Messages not yet written: flushed in one transaction per RESULT_FLUSH_BYTES, or with the
    # commit, so a small result costs no extra fsync and a large one never holds the lock long.
    pending: list[tuple[str, str, int, bytes]] = field(default_factory=list)
    pending_bytes: int = 0


@dataclass(frozen=True)
class ResultsForRecipient:
    job: JobRecord
    offer: OfferRecord | None
    results: tuple[ResultRecord, ...]
    view: JobView


class Coordinator:
    """The job flow over a store, an audit log and the consortium's members."""

    def __init__(self, store: CoordinatorStore, audit: AuditLog, consortium: Consortium, *,
                 clock: Callable[[], float] = time.time, max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
                 compute_silence: float = DEFAULT_COMPUTE_SILENCE) -> None:
        self.store = store
        self.audit = audit
        self.consortium = consortium
        self._clock = clock
        self.max_result_bytes = max_result_bytes
        self.compute_silence = compute_silence
        # When each compute node last polled. In memory on purpose: a poll is the heartbeat, and
        # an fsync per poll would cost more than the rest of the poll; after a restart every
        # compute node gets a full `compute_silence` from the restart (never a false failure).
        self._started = clock()
        self._last_poll: dict[str, float] = {}

    # who is who

    def member(self, name: str, *, role: str | None = None, what: str = "member") -> Member:
        found = self.consortium.members.get(name)
        if found is None:
            raise PermissionRefused(f"'{name}' is not a member of this consortium")
        if role is not None and found.role != role:
            raise PermissionRefused(f"'{name}' is a {found.role} member, not a {role} ({what})")
        return found

    def spec_of(self, job: JobRecord) -> JobSpecView:
        return parse_spec_view(parse_canonical_json(job.canonical_spec, what="stored job spec"))

    def _job(self, job_id: str) -> JobRecord:
        job = self.store.get_job(check_job_id(job_id))
        if job is None:
            raise JobNotFound(f"no job {job_id[:16]}… on this coordinator")
        return job

    def _involved(self, job: JobRecord, spec: JobSpecView, name: str) -> bool:
        return name in (job.analyst, job.compute) or name in spec.parties or name in spec.recipients

    # the one place a state changes

    def _transition(self, job: JobRecord, to: JobState, reason: str, *, by: str) -> JobRecord:
        """Move `job` to `to` inside the caller's transaction; audit it; refuse if illegal."""
        current = JobState(job.state)
        if to not in TRANSITIONS[current]:
            raise TransitionRefused(f"job {job.job_id[:16]}… cannot go from {current.value} to {to.value}")
        now = self._clock()
        self.store.set_state(job.job_id, to.value, reason, now, approved=to is JobState.APPROVED,
                             terminal=to.terminal)
        self.audit.append({"type": "job.state", "job_id": job.job_id, "from": current.value,
                           "to": to.value, "reason": reason, "by": by})
        log.info("job %s: %s -> %s%s (by %s)", job.job_id[:16], current.value, to.value,
                 f" ({reason})" if reason else "", by)
        updated = self.store.get_job(job.job_id)
        assert updated is not None
        return updated

    def _require_state(self, job: JobRecord, allowed: set[JobState], what: str) -> None:
        if JobState(job.state) not in allowed:
            wanted = " or ".join(sorted(s.value for s in allowed))
            reason = f" ({job.reason})" if job.reason else ""
            raise TransitionRefused(f"{what} refused: job {job.job_id[:16]}… is {job.state}{reason}, "
                                    f"expected {wanted}")

    def _refuse_if_ended(self, job: JobRecord, what: str) -> None:
        if JobState(job.state).terminal:
            reason = f" ({job.reason})" if job.reason else ""
            raise TransitionRefused(f"{what} refused: job {job.job_id[:16]}… already ended: {job.state}{reason}")

    # 1-2: submit

    def submit_job(self, canonical_spec: bytes, analyst: str, signature: bytes) -> SubmitOutcome:
        """Check and store an analyst's signed job; the same digest twice is a duplicate."""
        if len(canonical_spec) > MAX_SPEC_BYTES:
            raise InputError(f"job spec is {len(canonical_spec)} bytes, at most {MAX_SPEC_BYTES}",
                             field="canonical_spec")
        check_name(analyst, field="analyst")
        spec = parse_spec_view(parse_canonical_json(canonical_spec, what="job spec"))
        if spec.analyst != analyst:
            raise InputError(f"spec names analyst '{spec.analyst}' but was submitted as '{analyst}'",
                             field="analyst")
        signer = self.member(analyst, role="analyst", what="job submitter")
        digest = job_digest(canonical_spec)
        if not verify_ed25519(signer.keys.signing, signature, domain_message(JOB_SIGNATURE_DOMAIN, digest)):
            raise VerificationError("job.signature", f"the job is not signed by analyst '{analyst}'s key")
        own_name = getattr(self.consortium, "name", None)
        if own_name and spec.consortium != own_name:
            raise InputError(f"job is for consortium '{spec.consortium}', this is '{own_name}'",
                             field="consortium")
        self.member(spec.compute, role="compute", what="the job's compute")
        for party in spec.parties:
            self.member(party, role="data", what="an input party")
        for recipient in sorted(spec.recipients):
            self.member(recipient, what="a release recipient")
        job_id = digest.hex()
        with self.store.transaction():
            existing = self.store.get_job(job_id)
            if existing is not None:
                return SubmitOutcome(job_id, JobState(existing.state), True)
            now = self._clock()
            job = JobRecord(job_id, canonical_spec, analyst, signature, spec.name, spec.function,
                            spec.compute, JobState.SUBMITTED.value, "", now, now)
            self.store.insert_job(job, spec.inputs)
            self.audit.append({"type": "job.submitted", "job_id": job_id, "analyst": analyst,
                               "name": spec.name, "function": spec.function, "compute": spec.compute,
                               "parties": list(spec.parties)})
            job = self._transition(job, JobState.AWAITING_APPROVALS, "", by="coordinator")
        return SubmitOutcome(job_id, JobState(job.state), False)

    # 3: decisions

    def submit_decision(self, job_id: str, party: str, decision: bytes, signature: bytes) -> str:
        """Record a data owner's signed decision; a reject fails the job, the last approve
        approves it. Returns a short human detail for the Ack."""
        job = self._job(job_id)
        check_name(party, field="party")
        spec = self.spec_of(job)
        if party not in spec.parties:
            raise PermissionRefused(f"'{party}' is not an input party of job {job_id[:16]}…")
        signer = self.member(party, role="data", what="decision signer")
        if len(decision) > MAX_DECISION_BYTES:
            raise InputError(f"decision is {len(decision)} bytes, at most {MAX_DECISION_BYTES}", field="decision")
        if not verify_ed25519(signer.keys.signing, signature, domain_message(DECISION_DOMAIN, decision)):
            raise VerificationError("decision.signature", f"the decision is not signed by '{party}'s key")
        body = parse_canonical_json(decision, what="decision")
        if not isinstance(body, dict):
            raise InputError("decision must be a JSON object", field="decision")
        if body.get("job_id") != job_id or body.get("party") != party:
            raise InputError("decision body names another job or party than its envelope", field="decision")
        verdict = body.get("decision")
        if verdict not in ("approve", "reject"):
            raise InputError("expected 'approve' or 'reject'", field="decision.decision")
        reason = check_text(body.get("reason", ""), field="decision.reason")
        with self.store.transaction():
            job = self._job(job_id)
            previous = {d.party: d for d in self.store.decisions(job_id)}
            if party in previous:
                if previous[party].canonical == decision:
                    return "decision already recorded"
                raise TransitionRefused(f"'{party}' already decided on job {job_id[:16]}… "
                                        f"({previous[party].decision}); a decision is final")
            self._require_state(job, {JobState.AWAITING_APPROVALS}, "decision")
            now = self._clock()
            self.store.insert_decision(DecisionRecord(job_id, party, verdict, reason, decision, signature, now))
            self.store.touch_job(job_id, now)
            self.audit.append({"type": "decision", "job_id": job_id, "party": party, "decision": verdict,
                               "reason": reason, "decision_sha256": hashlib.sha256(decision).hexdigest()})
            if verdict == "reject":
                self._transition(job, JobState.FAILED, f"rejected by {party}: {reason}", by=party)
                return "job rejected"
            approved = {p for p, d in previous.items() if d.decision == "approve"} | {party}
            if approved >= set(spec.parties):
                self._transition(job, JobState.APPROVED, "", by=party)
                return "job approved by every input party"
        return "decision recorded"

    # 3b: an owner withdraws its approval

    def withdraw_approval(self, job_id: str, party: str, revocation: bytes, signature: bytes) -> str:
        """Record an owner's signed withdrawal of its approval and fail the job if it still runs.

        The owner's node never seals a table key after revoking, whatever happens here; this
        stops the job for everyone at once, and the compute enclave gets the revocation with
        the job's approvals (an enclave that has it refuses to run)."""
        job = self._job(job_id)
        check_name(party, field="party")
        spec = self.spec_of(job)
        if party not in spec.parties:
            raise PermissionRefused(f"'{party}' is not an input party of job {job_id[:16]}…")
        signer = self.member(party, role="data", what="revocation signer")
        if len(revocation) > MAX_REVOCATION_BYTES:
            raise InputError(f"revocation is {len(revocation)} bytes, at most {MAX_REVOCATION_BYTES}",
                             field="revocation")
        if not verify_ed25519(signer.keys.signing, signature, domain_message(REVOCATION_DOMAIN, revocation)):
            raise VerificationError("revocation.signature", f"the revocation is not signed by '{party}'s key")
        body = parse_canonical_json(revocation, what="revocation")
        if not isinstance(body, dict) or body.get("job_id") != job_id or body.get("party") != party:
            raise InputError("revocation body names another job or party than its envelope", field="revocation")
        with self.store.transaction():
            job = self._job(job_id)
            now = self._clock()
            if not self.store.insert_revocation(RevocationRecord(job_id, party, revocation, signature, now)):
                return "revocation already recorded"
            self.store.touch_job(job_id, now)
            self.audit.append({"type": "approval.revoked", "job_id": job_id, "party": party,
                               "revocation_sha256": hashlib.sha256(revocation).hexdigest()})
            if not JobState(job.state).terminal:
                self._transition(job, JobState.FAILED, f"{party} withdrew its approval", by=party)
                return "approval withdrawn; job failed"
        return "approval withdrawn"

    # 4: the compute node's offer

    def post_offer(self, *, job_id: str, compute: str, hpke_suite: str, hpke_public_key: bytes,
                   signing_public_key: bytes, evidence: bytes, endpoint: str, cluster: bytes = b"") -> str:
        job = self._job(job_id)
        check_name(compute, field="compute")
        if compute != job.compute:
            raise PermissionRefused(f"'{compute}' is not the compute node of job {job_id[:16]}… ({job.compute} is)")
        check_name(hpke_suite, field="hpke_suite")
        if not 0 < len(hpke_public_key) <= MAX_HPKE_KEY_BYTES:
            raise InputError(f"expected 1..{MAX_HPKE_KEY_BYTES} bytes, found {len(hpke_public_key)}",
                             field="hpke_public_key")
        if len(signing_public_key) != 32:
            raise InputError(f"expected a raw 32-byte Ed25519 key, found {len(signing_public_key)} bytes",
                             field="signing_public_key")
        if not 0 < len(evidence) <= MAX_EVIDENCE_BYTES:
            raise InputError(f"expected 1..{MAX_EVIDENCE_BYTES} bytes of evidence, found {len(evidence)}",
                             field="evidence")
        if not isinstance(endpoint, str) or not _ENDPOINT.fullmatch(endpoint):
            raise InputError("expected host:port", field="endpoint")
        if len(cluster) > MAX_CLUSTER_OFFER_BYTES:  # a cluster's workers (docs/deploy-cluster.md)
            raise InputError(f"expected at most {MAX_CLUSTER_OFFER_BYTES} bytes, found {len(cluster)}",
                             field="cluster")
        offer = OfferRecord(job_id, compute, hpke_suite, hpke_public_key, signing_public_key, evidence,
                            endpoint, self._clock(), cluster)
        with self.store.transaction():
            job = self._job(job_id)
            existing = self.store.offer(job_id)
            if existing is not None:
                if _same_offer(existing, offer):
                    return "offer already recorded"
                raise TransitionRefused(f"job {job_id[:16]}… already has an offer; an offer is final")
            self._require_state(job, {JobState.APPROVED}, "offer")
            self.store.insert_offer(offer)
            self.audit.append({"type": "offer", "job_id": job_id, "compute": compute, "endpoint": endpoint,
                               "hpke_suite": hpke_suite,
                               "hpke_public_key_sha256": hashlib.sha256(hpke_public_key).hexdigest(),
                               "signing_public_key": signing_public_key.hex(),
                               "evidence_sha256": hashlib.sha256(evidence).hexdigest(),
                               **({"cluster_sha256": hashlib.sha256(cluster).hexdigest()} if cluster else {})})
            self._transition(job, JobState.NEGOTIATING_KEYS, "", by=compute)
        return "offer recorded"

    # 5-6: status reports

    def report_status(self, job_id: str, node: str, event: str, detail: str) -> str:
        job = self._job(job_id)
        check_name(node, field="node")
        detail = check_text(detail, field="detail")
        spec = self.spec_of(job)
        is_compute = node == job.compute
        is_party = node in spec.parties
        if not (is_compute or is_party):
            raise PermissionRefused(f"'{node}' has no part in job {job_id[:16]}…")
        with self.store.transaction():
            job = self._job(job_id)
            state = JobState(job.state)
            now = self._clock()
            if event == "uploaded":
                if not is_party:
                    raise PermissionRefused(f"only an input party reports an upload; '{node}' is not one")
                party, _, table = detail.partition("/")
                if party != node or (party, table) not in spec.inputs:
                    raise InputError(f"expected '<party>/<table>' naming one of {node}'s input tables",
                                     field="detail")
                # A fast job may finish before the last owner's report arrives; recording it is harmless.
                self._require_state(job, {JobState.NEGOTIATING_KEYS, JobState.RUNNING, JobState.SUCCEEDED},
                                    "upload report")
                if self.store.insert_upload(job_id, party, table, now):
                    self.store.insert_status_event(StatusEvent(job_id, node, event, detail, now))
                    if not state.terminal:
                        self.store.touch_job(job_id, now)
                    self.audit.append({"type": "upload", "job_id": job_id, "party": party, "table": table})
                return "upload recorded"
            if event == "running":
                if not is_compute:
                    raise PermissionRefused(f"only the job's compute node reports running; '{node}' is not it")
                if state is JobState.RUNNING:
                    return "already running"
                self._require_state(job, {JobState.NEGOTIATING_KEYS}, "running report")
                self.store.insert_status_event(StatusEvent(job_id, node, event, detail, now))
                self._transition(job, JobState.RUNNING, "", by=node)
                return "job running"
            if event == "failed":
                self._refuse_if_ended(job, "failure report")
                self.store.insert_status_event(StatusEvent(job_id, node, event, detail, now))
                self._transition(job, JobState.FAILED, detail or f"failed at {node}", by=node)
                return "job failed"
            if event == "waiting":  # an owner's operator must decide: the analyst should see whose, and why
                if not is_party:
                    raise PermissionRefused(f"only an input party waits for its operator; '{node}' is not one")
                self._require_state(job, {JobState.AWAITING_APPROVALS}, "waiting report")
                self.store.insert_status_event(StatusEvent(job_id, node, event, detail, now))
                self.store.touch_job(job_id, now)
                self.audit.append({"type": "status", "job_id": job_id, "node": node, "event": event,
                                   "detail": detail})
                return "waiting recorded"
            if event == "progress":
                self._refuse_if_ended(job, "progress report")
                self.store.insert_status_event(StatusEvent(job_id, node, event, detail, now))
                self.audit.append({"type": "status", "job_id": job_id, "node": node, "event": event,
                                   "detail": detail})
                return "progress recorded"
        raise InputError(f"unknown event '{event[:32]}'; expected uploaded, running, failed, waiting or progress",
                         field="event")

    # 6: results into the mailbox, streamed

    def begin_result_stream(self, job_id: str, compute: str) -> ResultUpload:
        """Start taking a job's results; drops the chunks of an earlier post that broke off."""
        job = self._job(job_id)
        if compute != job.compute:
            raise PermissionRefused(f"'{compute}' is not the compute node of job {job_id[:16]}…")
        with self.store.transaction(notify=False):
            self._require_state(self._job(job_id), {JobState.RUNNING}, "results")
            self.store.clear_result_chunks(job_id)
        return ResultUpload(job_id, compute, {}, {})

    def add_result_head(self, upload: ResultUpload, r: SealedResultIn) -> None:
        job = self._job(upload.job_id)
        allowed = self.spec_of(job).release_pairs()
        i = len(upload.heads)
        if r.job_id != upload.job_id:
            raise InputError("result is for another job", field=f"results[{i}].job_id")
        pair = (check_name(r.kind, field=f"results[{i}].kind"),
                check_name(r.recipient, field=f"results[{i}].recipient"))
        if pair not in allowed:
            raise PermissionRefused(f"the job does not release '{pair[0]}' to '{pair[1]}'")
        if pair in upload.heads:
            raise InputError(f"two results for '{pair[0]}' to '{pair[1]}'", field=f"results[{i}]")
        if not r.envelope or len(r.signature) != 64:
            raise InputError("expected a non-empty key envelope and a 64-byte signature", field=f"results[{i}]")
        if len(r.envelope) + len(r.statement) > MAX_RESULT_HEAD_BYTES:
            raise InputError(f"a result head is at most {MAX_RESULT_HEAD_BYTES} bytes", field=f"results[{i}]")
        upload.heads[pair] = r
        upload.messages[pair] = 0
        self._charge(upload, len(r.envelope) + len(r.signature) + len(r.statement))

    def add_result_message(self, upload: ResultUpload, kind: str, recipient: str, data: bytes) -> None:
        """Store one message of a result's sealed stream durably (invisible until the commit)."""
        pair = (kind, recipient)
        if pair not in upload.messages:
            raise InputError("a stream message must follow its result's head", field="message")
        if not data:
            raise InputError("empty stream message", field="message")
        self._charge(upload, len(data))
        upload.pending.append((kind, recipient, upload.messages[pair], data))
        upload.pending_bytes += len(data)
        upload.messages[pair] += 1
        if upload.pending_bytes >= RESULT_FLUSH_BYTES:
            with self.store.transaction(notify=False):
                self._flush(upload)

    def _flush(self, upload: ResultUpload) -> None:
        """Write the upload's pending messages inside the caller's transaction."""
        for kind, recipient, seq, data in upload.pending:
            self.store.insert_result_chunk(upload.job_id, kind, recipient, seq, data)
        upload.pending.clear()
        upload.pending_bytes = 0

    def _charge(self, upload: ResultUpload, size: int) -> None:
        upload.stored += size
        if upload.stored > self.max_result_bytes:
            raise InputError(f"results exceed {self.max_result_bytes} bytes, this coordinator's cap per job "
                             "(max_result_bytes)", field="results")

    def post_results(self, job_id: str, compute: str, results: Sequence[SealedResultIn], *,
                     upload: ResultUpload | None = None) -> str:
        """Commit a job's results: each head with the stream messages stored for it (`upload`:
        the stream that brought them), the audit entry and the job's success, in one transaction."""
        job = self._job(job_id)
        if compute != job.compute:
            raise PermissionRefused(f"'{compute}' is not the compute node of job {job_id[:16]}…")
        if upload is None:
            upload = ResultUpload(job_id, compute, {}, {})
            for r in results:
                self.add_result_head(upload, r)
        elif upload.job_id != job_id or upload.compute != compute or list(upload.heads.values()) != list(results):
            raise InputError("the results committed are not the ones this stream brought", field="results")
        with self.store.transaction():
            job = self._job(job_id)
            self._require_state(job, {JobState.RUNNING}, "results")
            self._flush(upload)
            stored = self.store.result_chunk_counts(job_id)
            stray = set(stored) - set(upload.heads)
            if stray:
                raise InputError("stream messages for a result without a head", field="results")
            total = upload.stored + sum(b for _, b in stored.values())
            if total > self.max_result_bytes:
                raise InputError(f"results total {total} bytes, at most {self.max_result_bytes} per job "
                                 "(max_result_bytes)", field="results")
            now = self._clock()
            for pair, r in upload.heads.items():
                count, size = stored.get(pair, (0, 0))
                self.store.insert_result(ResultRecord(job_id, r.kind, r.recipient, r.envelope, r.signature, now,
                                                      r.statement, count, size))
            self.audit.append({"type": "results", "job_id": job_id, "compute": compute,
                               "results": [{"kind": r.kind, "recipient": r.recipient,
                                            "key_envelope_sha256": hashlib.sha256(r.envelope).hexdigest(),
                                            "statement_sha256": hashlib.sha256(r.statement).hexdigest(),
                                            "messages": stored.get(pair, (0, 0))[0],
                                            "bytes": stored.get(pair, (0, 0))[1]}
                                           for pair, r in upload.heads.items()]})
            self._transition(job, JobState.SUCCEEDED, "", by=compute)
        return f"{len(results)} result(s) stored"

    def result_messages(self, result: ResultRecord) -> Iterator[bytes]:
        """A stored result's stream messages, in order, read one at a time."""
        for seq in range(result.messages):
            data = self.store.result_chunk(result.job_id, result.kind, result.recipient, seq)
            if data is None:  # the store lost a row: say so rather than send a short stream
                raise TeenetError(f"result {result.kind}->{result.recipient} is incomplete in the store")
            yield data

    # heartbeat: a compute node's poll

    def record_poll(self, node: str) -> None:
        self._last_poll[node] = self._clock()

    def fail_silent_compute_jobs(self) -> list[str]:
        """Fail each approved, negotiating or running job whose compute node has not polled for
        longer than `compute_silence` seconds: its enclave, and the job's keys, are presumed gone
        (an approved job would wait for it forever). The reason is the fixed `compute.silent`
        plus the two numbers the coordinator itself measured."""
        from teenet.reasons import Reason

        now = self._clock()
        failed = []
        for state in (JobState.APPROVED, JobState.NEGOTIATING_KEYS, JobState.RUNNING):
            for job in self.store.jobs_in_state(state.value, MAX_WORK_ITEMS):
                last = max(self._last_poll.get(job.compute, self._started), self._started)
                silent = now - last
                if silent <= self.compute_silence:
                    continue
                reason = (Reason("compute.silent", party=job.compute).text()
                          + f"; no poll for {silent:.0f} s, limit {self.compute_silence:.0f} s")
                with self.store.transaction():
                    current = self.store.get_job(job.job_id)
                    if current is None or JobState(current.state) is not state:
                        continue
                    self._transition(current, JobState.FAILED, reason, by="coordinator")
                failed.append(job.job_id)
        return failed

    # 7: cancel

    def cancel(self, job_id: str, analyst: str, reason: str, signature: bytes) -> JobView:
        job = self._job(job_id)
        check_name(analyst, field="analyst")
        reason = check_text(reason, field="reason")
        if analyst != job.analyst:
            raise PermissionRefused(f"only the job's analyst ({job.analyst}) may cancel it, not '{analyst}'")
        signer = self.member(analyst, role="analyst", what="canceller")
        message = domain_message(CANCEL_DOMAIN, bytes.fromhex(job_id), reason.encode("utf-8"))
        if not verify_ed25519(signer.keys.signing, signature, message):
            raise VerificationError("cancel.signature", f"the cancellation is not signed by '{analyst}'s key")
        with self.store.transaction():
            job = self._job(job_id)
            self._refuse_if_ended(job, "cancel")
            self._transition(job, JobState.CANCELLED, reason or "cancelled by the analyst", by=analyst)
        return self.view(job_id, viewer=analyst)

    # reading

    # long polls

    @property
    def generation(self) -> int:
        return self.store.generation

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Wait until anything is committed after generation `since`; see CoordinatorStore."""
        return self.store.wait_for_change(since, timeout)

    def wait_for_job(self, job_id: str, updated_after: float, timeout: float) -> None:
        """Return once job `job_id` changed after `updated_after` (its updated_at), has ended,
        does not exist, or `timeout` seconds passed."""
        deadline = time.monotonic() + timeout
        while True:
            generation = self.store.generation  # before the read: a change after it ends the wait
            job = self.store.get_job(job_id)
            if job is None or JobState(job.state).terminal or job.updated_at > updated_after:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.store.wait_for_change(generation, remaining)

    def poll(self, node: str) -> list[WorkItem]:
        """The work waiting for `node`, at most MAX_WORK_ITEMS items."""
        member = self.member(node, what="poller")
        if member.role == "compute":
            self.record_poll(node)
        items: list[WorkItem] = []
        room = MAX_WORK_ITEMS
        for job in self.store.jobs_with_input_party(JobState.AWAITING_APPROVALS.value, node, room):
            if all(d.party != node for d in self.store.decisions(job.job_id)):
                items.append(WorkItem("decide", job))
        for job in self.store.jobs_for_compute(JobState.APPROVED.value, node, room):
            items.append(WorkItem("compute", job, decisions=tuple(self.store.decisions(job.job_id)),
                                  revocations=tuple(self.store.revocations(job.job_id))))
        for job in self.store.jobs_with_input_party(JobState.NEGOTIATING_KEYS.value, node, room):
            mine = {t for p, t in self.store.inputs(job.job_id) if p == node}
            done = {t for p, t in self.store.uploads(job.job_id) if p == node}
            if mine - done:
                items.append(WorkItem("upload", job, offer=self.store.offer(job.job_id)))
        since = self._clock() - STOP_WINDOW_SECONDS
        for job in self.store.jobs_stopped_since(since, node, room):
            items.append(WorkItem("stop", job, reason=job.reason))
        return items[:MAX_WORK_ITEMS]

    def view(self, job_id: str, *, viewer: str | None) -> JobView:
        """The job's status; `viewer` (None = local operator) must have a part in it."""
        job = self._job(job_id)
        spec = self.spec_of(job)
        if viewer is not None and not self._involved(job, spec, viewer):
            raise PermissionRefused(f"'{viewer}' has no part in job {job_id[:16]}…")
        return self._view(job, spec)

    def _view(self, job: JobRecord, spec: JobSpecView) -> JobView:
        by_party = {d.party: d for d in self.store.decisions(job.job_id)}
        waiting = {e.node: e.detail for e in self.store.status_events(job.job_id) if e.event == "waiting"} \
            if len(by_party) < len(spec.parties) else {}
        decisions = tuple(
            PartyStatus(p, "pending", waiting.get(p, "")) if p not in by_party else
            PartyStatus(p, "approved" if by_party[p].decision == "approve" else "rejected", by_party[p].reason)
            for p in spec.parties)
        uploaded = tuple(f"{p}/{t}" for p, t in self.store.uploads(job.job_id))
        results = tuple(f"{k}->{r}" for k, r in self.store.result_index(job.job_id))
        return JobView(job, spec, decisions, uploaded, results)

    def list_jobs(self, *, viewer: str | None, state: str | None = None, limit: int = 100) -> list[JobView]:
        if state:
            try:
                JobState(state)
            except ValueError:
                raise InputError(f"unknown state '{state[:32]}'", field="state") from None
        limit = max(1, min(limit or 100, 1000))
        jobs = self.store.list_jobs(state=state or None, member=viewer, limit=limit)
        return [self._view(job, self.spec_of(job)) for job in jobs]

    def audit_for(self, viewer: str, *, after: int, limit: int) -> list[AuditEntry]:
        """The audit entries, after seq `after`, of the jobs `viewer` takes part in (at most
        `limit`). A reason, an approval or an upload of a job is its members' business: a
        member outside the job reads none of it. Entries that name no job are the operator's."""
        self.member(viewer, what="audit reader")
        involved: dict[str, bool] = {}
        out: list[AuditEntry] = []
        cursor = after
        while len(out) < limit:
            page = self.audit.entries(after=cursor, limit=max(limit, 100))
            if not page:
                break
            for entry in page:
                cursor = entry.seq
                try:
                    job_id = entry.event.get("job_id")
                except InputError:
                    continue
                if not isinstance(job_id, str):
                    continue
                if job_id not in involved:
                    job = self.store.get_job(job_id) if _JOB_ID.fullmatch(job_id) else None
                    involved[job_id] = job is not None and self._involved(job, self.spec_of(job), viewer)
                if involved[job_id]:
                    out.append(entry)
                    if len(out) >= limit:
                        break
        return out

    def fetch_results(self, job_id: str, recipient: str) -> ResultsForRecipient:
        """The sealed results addressed to `recipient`, with what they need to verify them."""
        job = self._job(job_id)
        check_name(recipient, field="recipient")
        spec = self.spec_of(job)
        if not self._involved(job, spec, recipient):
            raise PermissionRefused(f"'{recipient}' has no part in job {job_id[:16]}…")
        results = tuple(self.store.results(job_id, recipient))
        if results:
            with self.store.transaction():
                self.audit.append({"type": "results.fetched", "job_id": job_id, "recipient": recipient,
                                   "kinds": [r.kind for r in results]})
        return ResultsForRecipient(job, self.store.offer(job_id), results, self._view(job, spec))


def _same_offer(a: OfferRecord, b: OfferRecord) -> bool:
    return (a.compute, a.hpke_suite, a.hpke_public_key, a.signing_public_key, a.evidence, a.endpoint, a.cluster) == \
        (b.compute, b.hpke_suite, b.hpke_public_key, b.signing_public_key, b.evidence, b.endpoint, b.cluster)

