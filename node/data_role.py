"""A data node's work: decide on jobs by its owner's policy, and ship sealed tables.

For each job it is asked about, the node verifies the analyst's signature itself, decides
once per digest (by rule, or by an operator, never beyond the rules or the tables' privacy
budgets), signs the decision and keeps it, with what it spends of each budget, before it
sends it. When the
compute enclave's offer arrives, it verifies that enclave's evidence against its owner's
policy, then, inside its own enclave, seals a fresh table key to it and streams the
granted columns of its table as a sealed Arrow stream straight to the compute node.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Iterator

import grpc

from teenet.approval import Decision, sign_decision
from teenet.errors import TeenetError, VerificationError
from teenet.jobspec import SignedJob, verify_signed_job
from teenet.cluster.offer import cluster_from_proto
from teenet.lineage import (Fingerprinter, fingerprint_mac, owner_min_group_size, record_shipped, rounded_rows,
                            shipped_fields)
from teenet.negotiation import DataEnclaveSession, HpkeSuite, verify_cluster_offer, verify_compute_offer, ComputeOffer
from teenet.pki import secure_channel
from teenet.reasons import Reason, check_named_in, transport_check
from teenet.revocation import ApprovalRevocation, decision_digest, sign_revocation
from teenet.proto import teenet_pb2 as pb
from teenet.proto import teenet_pb2_grpc as rpc
from teenet.sealing import StreamBinding, TableKey, seal_table
from teenet.shipped_model import MODEL_INPUT, MODEL_KIND, ONNX_MEDIA_TYPE, ModelReference
from teenet.node import budget as owner_budget
from teenet.node import policy as owner_policy
from teenet.node.cluster_ship import ship_partitions
from teenet.node.links import call_with_retry
from teenet.node.runtime import NodeRuntime
from teenet.node.store import BudgetExceeded

log = logging.getLogger("teenet.node.data")

# An upload that fails this many times in a row (compute unreachable, connection broken)
# fails the job with the reason instead of retrying forever.
MAX_UPLOAD_ATTEMPTS = 3

# verify_signed_job checks that fail only after the analyst's signature verified: the job is
# genuine but names something this node's consortium file does not have.
AUTHENTIC_BUT_UNFIT = frozenset({"job.schema", "job.consortium", "job.members"})
# Seconds before the second attempt; doubled for each further one (1 s, 2 s: the third
# attempt comes 3 s after the first), so a short network blip does not fail the job.
UPLOAD_RETRY_DELAY = 1.0
# Only a broken connection is retried; a refusal (PERMISSION_DENIED, FAILED_PRECONDITION,
# ALREADY_EXISTS, ...) is the receiver's answer and fails the job at once.
RETRYABLE_UPLOAD_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def upload_retry_delay(code: grpc.StatusCode, attempts: int) -> float | None:
    """The upload retry policy, shared by a single compute node's upload and each partition of
    a cluster's (node/cluster_ship.py): seconds to wait before the next attempt, after
    `attempts` attempts of which the last failed with `code`; None when it is not retried (a
    refusal, or MAX_UPLOAD_ATTEMPTS spent)."""
    if code not in RETRYABLE_UPLOAD_CODES or attempts >= MAX_UPLOAD_ATTEMPTS:
        return None
    return UPLOAD_RETRY_DELAY * 2 ** (attempts - 1)


class UnreadableTable(TeenetError):
    """A table of this node that its reader cannot open (a malformed file, a failing query).
    Its reason names the party and the table only: the reader's own text may quote a cell."""

    def __init__(self, party: str, table: str) -> None:
        self.reason = Reason("input.unreadable", "input.source", party=party, table=table)
        super().__init__(self.reason.text())


class DataRole:
    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        self._announced: set[str] = set()  # jobs whose wait for the operator the coordinator was told of
        self._uploading: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._withheld: set[str] = set()  # withdrawn jobs whose upload was refused (audited once)
        self._lock = threading.Lock()

    # decisions ----------------------------------------------------------------------------
    def on_decide(self, item: pb.WorkItem) -> None:
        rt = self.rt
        signed = SignedJob.from_proto(item.job)
        try:
            spec = verify_signed_job(signed, rt.consortium)
        except TeenetError as exc:
            log.warning("job %s refused: %s", item.job_id[:16], exc)
            rt.audit("job_refused", job_id=item.job_id, reason=str(exc))
            if getattr(exc, "check", "") in AUTHENTIC_BUT_UNFIT and signed.job_id == item.job_id:
                self._reject_unfit(signed, exc)
            return
        job_id = signed.job_id
        if item.job_id != job_id:  # the coordinator's label; the signed digest is the id
            rt.audit("job_refused", job_id=item.job_id, reason=f"job.id: the work item's id is not the digest "
                                                               f"of its signed job ({job_id[:16]})")
            return
        if rt.store.remember_job(job_id, signed.canonical_spec, signed.analyst, signed.signature,
                                 spec.name, spec.function):
            rt.audit("job_received", job_id=job_id, analyst=spec.analyst, function=spec.function, name=spec.name)
        existing = rt.store.decision(job_id, rt.name)
        caught = rt.store.equivocated([spec.compute, *(i.party for i in spec.inputs)]) if existing is None else []
        if caught:  # teenet/witness.py: no new job with a member whose log this node caught forked
            self._reject_unfit(signed, VerificationError(
                "member.equivocated", f"this node caught {', '.join(caught)} equivocating its audit log; "
                                      f"refused until its operator runs `teenet audit acknowledge`"))
            return
        if existing is None:
            existing = self._decide(job_id, spec)
        if existing is None:
            return  # waiting for an operator
        if rt.store.revoked(job_id):
            return  # withdrawn before it was even sent; the revocation goes out instead
        call_with_retry(lambda: rt.coordinator.stub.SubmitDecision(pb.SignedDecision(
            job_id=existing.job_id, party=existing.party, decision=existing.decision,
            signature=existing.signature), timeout=10), what="submit decision", stop=rt.stopping)
        rt.store.mark_decision_sent(job_id)

    def _reject_unfit(self, signed: SignedJob, exc: TeenetError) -> None:
        """An analyst's genuine job that does not fit this node's view of the consortium (a
        table, column or member it does not know): reject it with the reason, once, so the
        job fails visibly instead of waiting for a decision that never comes."""
        rt = self.rt
        job_id = signed.job_id
        existing = rt.store.decision(job_id, rt.name)
        if existing is None:
            try:
                loose = json.loads(signed.canonical_spec)
                name, function = str(loose.get("name", "?"))[:64], str(loose.get("function", "?"))[:32]
            except (ValueError, AttributeError):
                name, function = "?", "?"
            rt.store.remember_job(job_id, signed.canonical_spec, signed.analyst, signed.signature, name, function)
            # The signed reason leaves the node: the check and the field, not the job's text.
            decision = Decision(job_id=job_id, party=rt.name, decision="reject",
                                reason=Reason.of("job.uncheckable", exc, party=rt.name).text(), function=function)
            existing = rt.store.store_decision(sign_decision(decision, rt.keys.signing), "rejected", decision.reason)
            rt.audit("rejected", job_id=job_id, reason=decision.reason, detail=str(exc), decided_by="policy")
        call_with_retry(lambda: rt.coordinator.stub.SubmitDecision(pb.SignedDecision(
            job_id=existing.job_id, party=existing.party, decision=existing.decision,
            signature=existing.signature), timeout=10), what="submit decision", stop=rt.stopping)
        rt.store.mark_decision_sent(job_id)

    def _decide(self, job_id: str, spec):
        rt = self.rt
        policy = rt.config.policy
        try:
            columns = self._table_columns(spec)
        except UnreadableTable as exc:
            # Decided once, like any rejection: the job fails now with the reason, never loops.
            return self._sign(job_id, spec, approve=False, reason=str(exc), decided_by="policy")
        operator = rt.store.operator_action(job_id)
        outcome = owner_policy.evaluate(spec, policy, rt.name, columns)
        if operator is not None:
            action, who, reason = operator
            approve, decided_by = action == "approve", f"operator:{who}"
            if approve and outcome.outcome == "reject":  # an operator may approve only what the policy allows at all
                approve, reason = False, outcome.reason
            reason = reason or ("approved by operator" if approve else "rejected by operator")
        else:
            approve, reason, decided_by = outcome.outcome == "approve", outcome.reason, "policy"
        if outcome.outcome != "reject" and (approve or operator is None):
            # Within the rules: does it fit what is left of each table's budget? Refused now,
            # naming what remains, rather than left waiting for an operator who could not approve it.
            refusal = owner_budget.first_refusal(rt.store, policy, rt.name, owner_budget.job_spends(spec, rt.name))
            if refusal is not None:
                approve, reason = False, refusal
            elif operator is None and outcome.outcome == "pending":
                if rt.store.job(job_id).status != "pending":
                    status = f"{outcome.reason} (analysis rules matched: {outcome.rules_text})"
                    rt.store.set_status(job_id, "pending", status)
                    rt.audit("approval_pending", job_id=job_id, reason=outcome.reason, rules=list(outcome.rules))
                    log.info("job %s (%s) waits for an operator: teenet approvals list", job_id[:16], spec.name)
                self._announce_waiting(job_id, outcome.reason)
                return None
        return self._sign(job_id, spec, approve=approve, reason=reason, decided_by=decided_by,
                          rules=outcome.rules if approve else ())

    def _sign(self, job_id: str, spec, *, approve: bool, reason: str, decided_by: str, rules: tuple[str, ...] = ()):
        """Sign and keep the decision; an approval's spend of each table's budget is written in
        the same transaction (checked there again), before the decision leaves the node."""
        rt = self.rt
        policy = rt.config.policy
        cost = owner_budget.job_cost(spec) if approve else (0.0, 0.0)
        spends = owner_budget.job_spends(spec, rt.name) if approve else []
        decision = owner_policy.decision_for(spec, job_id, rt.name, policy, rt.compute_measurements,
                                             approve=approve, reason=reason, decided_by=decided_by, spend=cost)
        try:
            signed = rt.store.store_decision(sign_decision(decision, rt.keys.signing),
                                             "approved" if approve else "rejected", reason,
                                             spends=spends, budgets={t: (b.epsilon, b.delta)
                                                                     for t, b in policy.budgets.items()})
        except BudgetExceeded as exc:  # another decision spent the budget since the check in _decide
            reason = owner_budget.table_budget(rt.store, policy, exc.table).refusal(rt.name, *cost)
            approve, spends, rules = False, [], ()
            decision = owner_policy.decision_for(spec, job_id, rt.name, policy, rt.compute_measurements,
                                                 approve=False, reason=reason, decided_by=decided_by)
            signed = rt.store.store_decision(sign_decision(decision, rt.keys.signing), "rejected", reason)
        rt.audit("approved" if approve else "rejected", job_id=job_id, reason=reason, decided_by=decided_by,
                 tables=[t for t, _ in decision.tables], release=[[k, list(r)] for k, r in decision.release],
                 rules=list(rules), spend={"epsilon": decision.epsilon, "delta": decision.delta})
        for table, epsilon, delta in spends:
            left = owner_budget.table_budget(rt.store, policy, table)
            rt.audit("budget_spent", job_id=job_id, table=table, epsilon=epsilon, delta=delta,
                     remaining_epsilon=left.remaining_epsilon, remaining_delta=left.remaining_delta)
        log.info("job %s (%s) %s: %s", job_id[:16], spec.name, "approved" if approve else "rejected", reason)
        return signed

    def _announce_waiting(self, job_id: str, why: str) -> None:
        """Tell the coordinator, once per job, that this owner's operator must decide and why,
        so the analyst's status says whom the job waits for (nothing at the coordinator
        would know otherwise: approvals are recorded on the node)."""
        with self._lock:
            if job_id in self._announced:
                return
        rt = self.rt
        try:
            call_with_retry(lambda: rt.coordinator.stub.ReportStatus(pb.StatusReport(
                job_id=job_id, node=rt.name, event="waiting", detail=f"waiting for {rt.name}'s operator: {why}"),
                timeout=10), what="report waiting", stop=rt.stopping, attempts=3)
        except grpc.RpcError as exc:  # a coordinator without this event: the job still waits, unannounced
            log.info("job %s: coordinator did not take the waiting notice: %s", job_id[:16], exc.details())
        with self._lock:
            self._announced.add(job_id)

    def _table_columns(self, spec) -> dict[str, list[str]]:
        out = {}
        for inp in spec.inputs:
            if inp.party == self.rt.name and inp.table in self.rt.catalog.tables:
                try:
                    out[inp.table] = self.rt.catalog.columns(inp.table)
                except Exception as exc:  # any reader's error: its text may quote a cell, so it stays here
                    log.warning("table %s cannot be read: %s", inp.table, " ".join(str(exc).split())[:300])
                    raise UnreadableTable(self.rt.name, inp.table) from None
        return out

    def next_local_check(self, interval: float) -> float | None:
        """Seconds until this role needs a fresh work list for reasons of its own: an upload
        retry falling due, or `interval` while a job waits for the operator (approvals are
        recorded locally, so no change at the coordinator would wake a long poll). None if
        there is no such reason."""
        now = time.monotonic()
        with self._lock:
            due = [at - now for at in self._retry_at.values() if at > now]
        if self.rt.store.jobs("pending"):
            due.append(interval)
        if self.rt.store.revocations_to_sign() or self.rt.store.unsent_revocations():
            due.append(interval)
        return max(0.05, min(due)) if due else None

    # uploads ------------------------------------------------------------------------------
    def on_upload(self, item: pb.WorkItem) -> None:
        job_id = item.job_id
        with self._lock:
            if job_id in self._uploading or time.monotonic() < self._retry_at.get(job_id, 0.0):
                return
            self._uploading.add(job_id)
        try:
            self._upload(item)
        finally:
            with self._lock:
                self._uploading.discard(job_id)

    def _upload(self, item: pb.WorkItem) -> None:
        rt = self.rt
        job_id = item.job_id
        record = rt.store.job(job_id)
        if record is None or record.status not in ("approved", "uploaded", "revoked"):
            return  # never approved here: ship nothing
        signed = SignedJob(record.canonical_spec, record.analyst, record.signature)
        if signed.job_id != job_id:  # the record is keyed by the digest it was stored under
            raise TeenetError(f"job.id: stored job {job_id[:16]} does not hash to its id")
        spec = verify_signed_job(signed, rt.consortium)
        mine = [inp for inp in spec.inputs if inp.party == rt.name]
        done = rt.store.uploads(job_id)
        pending = [inp for inp in mine if f"{rt.name}/{inp.table}" not in done]
        for key, reported in done.items():
            if not reported and not key.endswith("/" + MODEL_INPUT):  # the coordinator knows only tables
                self._report(job_id, "uploaded", key)
        if not pending:
            return
        o = item.offer
        try:
            offer = ComputeOffer(o.job_id, o.compute, HpkeSuite.parse(o.hpke_suite), o.hpke_public_key,
                                 o.signing_public_key, o.evidence, o.endpoint, cluster_from_proto(o))
            if offer.job_id != job_id:  # the offer must be for the very record this node ships for
                raise VerificationError("offer.job", "the compute offer is for another job",
                                        expected=job_id[:16], found=offer.job_id[:16])
            if offer.compute != spec.compute:
                raise VerificationError("offer.compute", "the offer comes from another compute node",
                                        expected=spec.compute, found=offer.compute)
            verified = verify_compute_offer(offer, bytes.fromhex(job_id), rt.compute_policy, rt.enclave.roots)
            # A cluster: the leader's signature over its workers, and each worker's evidence
            # against this owner's policy, before anything is sealed to any of them.
            vcluster = None if offer.cluster is None else verify_cluster_offer(
                verified, party=rt.name, party_hpke=rt.keys.hpke, policy=rt.compute_policy, roots=rt.enclave.roots)
        except TeenetError as exc:
            reason = Reason.of("compute.refused", exc, party=rt.name).text()
            log.warning("job %s: %s: %s", job_id[:16], reason, exc)
            rt.store.set_status(job_id, "failed", f"{rt.name} refused the compute enclave: {exc}")
            rt.audit("compute_refused", job_id=job_id, reason=str(exc))
            self._report(job_id, "failed", reason)
            return
        if not rt.store.begin_sealing(job_id):
            # The owner withdrew its approval: no key of this job is ever sealed, whatever the
            # coordinator relays or hides (the same transaction as `teenet approvals revoke`).
            with self._lock:
                first = job_id not in self._withheld
                self._withheld.add(job_id)
            if first:
                rt.audit("upload_withheld", job_id=job_id, reason="approval.revoked: the owner withdrew its approval")
                log.info("job %s: approval withdrawn; nothing is sealed or shipped", job_id[:16])
            return
        endpoint = rt.consortium.member(spec.compute).endpoint  # from the consortium file, not the coordinator
        session = DataEnclaveSession(bytes.fromhex(job_id), rt.enclave.attester)
        channel = secure_channel(endpoint, rt.tls, server_name=spec.compute)
        try:
            stub = rpc.ComputeStub(channel)
            if not self._ship_model_if_mine(job_id, spec, verified, session, stub, done):
                return
            for inp in pending:
                columns = list(dict.fromkeys(list(inp.keys) + list(inp.columns)))
                if vcluster is not None:  # partitioned, straight to the workers (node/cluster_ship.py)
                    shipped = ship_partitions(self, job_id, spec, inp, columns, session, vcluster)
                    if shipped is None:
                        return
                    self._shipped(job_id, spec, inp, columns, verified, shipped.rows, shipped.sealed_bytes)
                    continue
                key = TableKey.generate()
                envelope = session.seal_table_key(verified, rt.name, inp.table, key)
                binding = StreamBinding(bytes.fromhex(job_id), rt.name, inp.table)
                batches = rt.catalog.batches(inp.table, columns)
                fingerprint = Fingerprinter()  # teenet.lineage: over exactly the chunks sealed
                sealed_header: list[bytes] = []
                rows = [0]
                read_error: list[TeenetError] = []  # the table failed on this side, mid-stream

                def counted(it: Iterator) -> Iterator:
                    for b in it:
                        rows[0] += b.num_rows
                        yield b

                def messages() -> Iterator[pb.UploadMessage]:
                    yield pb.UploadMessage(key=pb.KeyEnvelope(
                        job_id=envelope.job_id, party=envelope.party, table=envelope.table,
                        sealed_key=envelope.sealed_key, evidence=envelope.evidence,
                        signing_public_key=envelope.signing_public_key, signature=envelope.signature))
                    first = True
                    try:
                        for msg in seal_table(counted(batches), key, binding, on_chunk=fingerprint.add_chunk):
                            if first:
                                sealed_header.append(msg)
                            yield pb.UploadMessage(header=msg) if first else pb.UploadMessage(chunk=msg)
                            first = False
                        # `shipped` in this node's audit as the stream ends, with a signed head and
                        # its proof, so the result's lineage names it (teenet.lineage)
                        shipped = record_shipped(rt, job_id, inp.table, fingerprint.root(),
                                                 rounded_rows(rows[0], owner_min_group_size(rt, job_id)))
                        yield pb.UploadMessage(fingerprint=pb.LineageFingerprint(
                            root=fingerprint.root(), chunks=fingerprint.chunks,
                            mac=fingerprint_mac(key.secret_bytes(), sealed_header[0], fingerprint.root(),
                                                fingerprint.chunks), **shipped_fields(shipped)))
                    except TeenetError as exc:
                        # End the stream here: without its final chunk the enclave refuses it
                        # as truncated, and this side reports why.
                        read_error.append(exc)

                def failed_to_read() -> bool:
                    if not read_error:
                        return False
                    # The reader's text may quote the bad cell: it stays in this owner's own
                    # audit and log; the reason that leaves names the table and column only.
                    reason = Reason.of("input.unreadable", read_error[0], party=rt.name, table=inp.table).text()
                    detail = f"{rt.name} could not read {inp.table}: {read_error[0]}"
                    log.warning("job %s: %s", job_id[:16], detail)
                    rt.store.set_status(job_id, "failed", detail)
                    rt.audit("upload_failed", job_id=job_id, table=inp.table, reason=reason, detail=detail)
                    self._report(job_id, "failed", reason)
                    return True

                try:
                    reply = stub.UploadTable(messages(), timeout=3600)
                except grpc.RpcError as exc:
                    if failed_to_read():
                        return
                    if exc.code() in RETRYABLE_UPLOAD_CODES:
                        attempts = self._attempts[job_id] = self._attempts.get(job_id, 0) + 1
                        delay = upload_retry_delay(exc.code(), attempts)
                        if delay is not None:
                            with self._lock:
                                self._retry_at[job_id] = time.monotonic() + delay
                            log.info("job %s: upload to %s broke (%s: %s); attempt %d of %d", job_id[:16],
                                     spec.compute, exc.code().name, (exc.details() or "")[:200], attempts,
                                     MAX_UPLOAD_ATTEMPTS)
                            return
                        detail = " ".join((exc.details() or "").split())[:200]
                        reason = Reason("input.unshippable", transport_check(exc.code().name, detail),
                                        party=rt.name, table=inp.table, field=spec.compute).text()
                        full = (f"{rt.name} could not ship {inp.table} to {spec.compute}: the connection "
                                f"failed {attempts} times ({exc.code().name}: {detail})")
                        rt.store.set_status(job_id, "failed", full)
                        rt.audit("upload_failed", job_id=job_id, table=inp.table, reason=reason, detail=full)
                        self._report(job_id, "failed", reason)
                        return
                    reason = Reason("upload.refused", check_named_in(exc.details() or ""), party=rt.name,
                                    table=inp.table).text()
                    rt.store.set_status(job_id, "failed", f"compute node refused {rt.name}/{inp.table}: {exc.details()}")
                    rt.audit("upload_refused", job_id=job_id, table=inp.table, reason=exc.details() or "")
                    self._report(job_id, "failed", reason)
                    return
                if failed_to_read():  # never counted as shipped, whatever the enclave answered
                    return
                self._shipped(job_id, spec, inp, columns, verified, rows[0], reply.sealed_bytes)
        finally:
            channel.close()

    def _shipped(self, job_id: str, spec, inp, columns: list[str], verified, rows: int, sealed_bytes: int) -> None:
        """Record, audit and report a table the compute enclave (or every worker) took."""
        rt = self.rt
        rt.store.record_upload(job_id, f"{rt.name}/{inp.table}", rows)
        rt.store.set_status(job_id, "uploaded")
        rt.audit("released_table", job_id=job_id, table=inp.table, columns=columns, rows=rows,
                 to=spec.compute, enclave_measurement=verified.claims.measurement.hex(),
                 enclave_platform=verified.claims.platform.value, sealed_bytes=sealed_bytes,
                 enclave_tcb=dict(verified.claims.tcb))
        log.info("job %s: shipped %s/%s (%d rows, sealed) to %s", job_id[:16], rt.name, inp.table,
                 rows, spec.compute)
        self._report(job_id, "uploaded", f"{rt.name}/{inp.table}")

    def _ship_model_if_mine(self, job_id: str, spec, verified, session: DataEnclaveSession, stub,
                            done: dict[str, bool]) -> bool:
        """Ship a predict job's model when this node is the party the spec names: fetch the
        model it received from the train job, verify it as `teenet job result` does, and send
        it with its provenance and its result key sealed to the compute enclave. False if the
        job failed here (the reason is reported)."""
        from teenet.node.results import fetch_sealed, head_to_proto, verify_release
        from teenet.release import open_with_key, unwrap_result_key

        rt = self.rt
        if spec.function != "predict":
            return True
        ref = ModelReference.parse(spec.params, [i.party for i in spec.inputs])
        slot = f"{rt.name}/{MODEL_INPUT}"
        if ref.sender != rt.name or slot in done:
            return True
        try:
            own = rt.store.decision(ref.job, rt.name)
            if own is None or not Decision.from_canonical(own.decision).approved:
                raise VerificationError("model.approval", f"{rt.name} ships only a model of a train job it "
                                        f"approved; it has no approval of job {ref.job[:12]}")
            fetched = fetch_sealed(rt.coordinator.stub, ref.job, rt.name)
            if fetched.state != "succeeded":
                raise VerificationError("model.job", f"train job {ref.job[:12]} is {fetched.state or 'unknown'}, "
                                        "not succeeded")
            release = verify_release(fetched, ref.job, rt.name, rt.consortium, rt.enclave.roots)
            model = next((r for r in release.results if r.kind == MODEL_KIND), None)
            if model is None:
                raise VerificationError("model.recipient", f"train job {ref.job[:12]} released no model to {rt.name}")
            key = unwrap_result_key(model, recipient=rt.name, recipient_key=rt.keys.hpke)
            if open_with_key(model, key).media_type != ONNX_MEDIA_TYPE:
                raise VerificationError("model.result", f"the result of train job {ref.job[:12]} is not ONNX")
        except TeenetError as exc:
            return self._fail_model(job_id, Reason.of("model.unshippable", exc, party=rt.name), str(exc))
        envelope = session.seal_table_key(verified, rt.name, MODEL_INPUT, key)
        o = release.offer

        def messages() -> Iterator[pb.UploadMessage]:
            yield pb.UploadMessage(key=pb.KeyEnvelope(
                job_id=envelope.job_id, party=envelope.party, table=envelope.table, sealed_key=envelope.sealed_key,
                evidence=envelope.evidence, signing_public_key=envelope.signing_public_key,
                signature=envelope.signature))
            yield pb.UploadMessage(model=pb.ShippedModel(
                train_job=fetched.job.to_proto(), head=head_to_proto(model),
                train_offer=pb.ComputeOffer(job_id=o.job_id, compute=o.compute, hpke_suite=o.suite.value,
                                            hpke_public_key=o.hpke_public_key,
                                            signing_public_key=o.signing_public_key, evidence=o.evidence,
                                            endpoint=o.endpoint)))
            for m in model.messages:
                yield pb.UploadMessage(chunk=m)

        try:
            stub.UploadTable(messages(), timeout=600)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                details = exc.details() or ""
                check = (check_named_in(details) if exc.code() == grpc.StatusCode.PERMISSION_DENIED
                         else transport_check(exc.code().name, details))
                return self._fail_model(job_id, Reason("model.unshippable", check, party=rt.name),
                                        f"the compute node refused it: {exc.code().name} {details[:200]}")
        rt.store.record_upload(job_id, slot, 0)
        rt.store.mark_upload_reported(job_id, slot)
        rt.audit("released_model", job_id=job_id, train_job=ref.job, to=spec.compute,
                 enclave_measurement=verified.claims.measurement.hex())
        log.info("job %s: shipped the model of train job %s to %s", job_id[:16], ref.job[:16], spec.compute)
        return True

    def _fail_model(self, job_id: str, reason: Reason, detail: str) -> bool:
        """Only `reason` leaves; `detail` stays in this node's log and audit."""
        log.warning("job %s: %s (%s)", job_id[:16], reason.text(), detail)
        self.rt.store.set_status(job_id, "failed", reason.text())
        self.rt.audit("upload_failed", job_id=job_id, table=MODEL_INPUT, reason=reason.text(), detail=detail)
        self._report(job_id, "failed", reason.text())
        return False

    def _report(self, job_id: str, event: str, detail: str) -> None:
        rt = self.rt
        call_with_retry(lambda: rt.coordinator.stub.ReportStatus(pb.StatusReport(
            job_id=job_id, node=rt.name, event=event, detail=detail), timeout=10),
            what="report status", stop=rt.stopping)
        if event == "uploaded":
            rt.store.mark_upload_reported(job_id, detail)

    # revocations --------------------------------------------------------------------------
    def send_revocations(self) -> None:
        """Sign each withdrawal an operator recorded (`teenet approvals revoke`), audit it, and
        send it to the coordinator; retried on every poll until the coordinator takes it."""
        rt = self.rt
        for job_id, operator, reason in rt.store.revocations_to_sign():
            decision = rt.store.decision(job_id, rt.name)
            body = ApprovalRevocation(job_id=job_id, party=rt.name,
                                      decision_sha256=decision_digest(decision.decision if decision else b""),
                                      revoked_at=int(time.time()), reason=reason[:512])
            signed = sign_revocation(body, rt.keys.signing)
            rt.store.store_signed_revocation(job_id, signed.revocation, signed.signature)
            rt.audit("approval_revoked", job_id=job_id, operator=operator, reason=reason)
            log.info("job %s: approval withdrawn by operator:%s", job_id[:16], operator)
        for job_id, revocation, signature in rt.store.unsent_revocations():
            try:
                rt.coordinator.stub.WithdrawApproval(pb.SignedApprovalRevocation(
                    job_id=job_id, party=rt.name, revocation=revocation, signature=signature), timeout=10)
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    log.info("job %s: revocation not delivered yet (%s)", job_id[:16], exc.code().name)
                    continue
                log.warning("job %s: coordinator refused the revocation: %s %s", job_id[:16], exc.code().name,
                            exc.details())
            rt.store.mark_revocation_sent(job_id)

    def on_stop(self, item: pb.WorkItem) -> None:
        record = self.rt.store.job(item.job_id)
        if record is not None and record.status not in ("stopped", "failed", "rejected", "revoked"):
            self.rt.store.set_status(item.job_id, "stopped", item.reason)
            self.rt.audit("job_stopped", job_id=item.job_id, reason=item.reason)
