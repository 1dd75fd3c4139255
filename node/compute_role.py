"""A compute node's work: check every owner's approval, attest, receive sealed tables, run, release.

The enclave refuses a job unless every input owner's signed approval matches it, trusts
this enclave's measurement, and carries the owner's analysis rule for each of its tables
(and a privacy spend at least what the job's params spend). Those rules, all of them at once
(the strictest wins), go to the function with the release rules, which checks the job
against them again before it touches data: an approval the owner's node signed without
checking the params (forged by its host, or from an older node) does not get past them. It then makes fresh per-job keys and evidence (the
offer), accepts a table only from the owner's own attested enclave over that owner's
TLS identity, opens it only when the whole sealed stream verifies, runs the function from
`teenet.models` under the combined release rules, and releases each result signed with
its attested key and sealed to each recipient. Inputs and keys are dropped when the job ends.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import grpc
import pyarrow as pa

from teenet.approval import ApprovedTerms, SignedDecision, verify_approvals
from teenet.errors import TeenetError, VerificationError
from teenet.jobspec import SignedJob, verify_signed_job
from teenet.lineage import check_shipped_record, model_input, record_drop
from teenet.negotiation import ComputeEnclaveSession, HpkeSuite, KeyEnvelope
from teenet.pki import peer_name
from teenet.reasons import Reason, check_of, transport_check
from teenet.proto import teenet_pb2 as pb
from teenet.proto import teenet_pb2_grpc as rpc
from teenet.release import SealedResult, seal_result, sealed_size
from teenet.revocation import SignedRevocation, refuse_withdrawn_or_expired
from teenet.sealed_bytes import ResultKey
from teenet.shipped_model import MODEL_INPUT, ModelReference, verify_shipped_model
from teenet.node.cluster_ingress import receive_sealed_table
from teenet.node.links import call_with_retry
from teenet.node.runtime import NodeRuntime

log = logging.getLogger("teenet.node.compute")


@dataclass
class JobRun:
    """One job's state inside the enclave. Dropped when the job ends."""

    job_id: str
    spec: object
    terms: ApprovedTerms
    rules: tuple  # teenet.models.rules.AnalysisRule of every input table, from the approvals
    session: ComputeEnclaveSession
    tables: dict[tuple[str, str], pa.Table] = field(default_factory=dict)
    started: bool = False
    revocations: list[SignedRevocation] = field(default_factory=list)
    model_ref: ModelReference | None = None  # predict: the model a party ships in
    model_onnx: bytes | None = None          # its bytes, once their provenance verified
    fingerprints: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)  # teenet.lineage
    shipped: dict[tuple[str, str], dict] = field(default_factory=dict)  # the owners' shipped records (teenet.lineage)
    model_lineage: dict | None = None  # predict: the shipped model as a lineage input (teenet.lineage)
    signed_spec: bytes = b""
    cluster: object = None  # node/cluster_role.ClusterJob when this node leads a cluster

    def ready(self) -> bool:
        arrived = self.cluster.complete() if self.cluster is not None else len(self.tables) == len(self.spec.inputs)
        return arrived and (self.model_ref is None or self.model_onnx is not None)


def _job_spend(spec) -> tuple[float, float]:
    """(epsilon, delta) the job's params spend, read as the owners' nodes read it."""
    from teenet.models.rules import epsilon_cost

    epsilon, delta = epsilon_cost(spec.function, dict(spec.params))
    return float(epsilon), float(delta)


def _analysis_rules(terms: ApprovedTerms, spec) -> tuple:
    """Every owner's rule for every input table, as the approvals carry them, each bound to
    its owner; the job is checked against all of them here, before any key is made (the
    function checks them again before it touches data)."""
    from teenet.models import InputSpec, ReleaseRequest, validate_job
    from teenet.models.rules import AnalysisRule, check_job

    rules = []
    for party, table, rule in terms.analysis:
        try:
            parsed = AnalysisRule.from_json(rule).for_party(party)
        except TeenetError as exc:
            raise VerificationError("approval.terms", f"the rule '{party}' approved for '{table}' does not read: "
                                    f"{exc}") from None
        if parsed.table != table:
            raise VerificationError("approval.terms", f"'{party}' approved '{table}' with the rule of another table",
                                    expected=table, found=parsed.table)
        rules.append(parsed)
    inputs = [InputSpec(i.party, i.table, tuple(i.keys), tuple(i.columns)) for i in spec.inputs]
    releases = [ReleaseRequest(r.kind, tuple(r.to)) for r in spec.release]
    validate_job(spec.function, inputs, dict(spec.params), releases)  # a DP seed, an unknown field: no keys
    for rule in rules:
        check_job(rule, party=rule.party, function=spec.function, params=dict(spec.params), inputs=inputs,
                  releases=releases)
    return tuple(rules)


class ComputeRole(rpc.ComputeServicer):
    def __init__(self, rt: NodeRuntime, suite: HpkeSuite = HpkeSuite.X25519) -> None:
        self.rt = rt
        self.suite = suite
        self.runs: dict[str, JobRun] = {}
        # Ids this run already answered a refusal for (the durable record is the store's).
        self.replays_noted: set[str] = set()
        self._lock = threading.Lock()
        from teenet.node.cluster_role import start_cluster  # None unless the config has `cluster:`

        self.cluster = start_cluster(rt)

    # poll items ---------------------------------------------------------------------------
    def on_compute(self, item: pb.WorkItem) -> None:
        rt = self.rt
        signed = SignedJob.from_proto(item.job)
        # The one job id: the digest of the signed job, recomputed here. The work item's
        # id is the coordinator's word; an old job and its approvals relabelled with a new
        # job's id would otherwise get the new job's tables shipped to keys bound to it.
        job_id = signed.job_id
        if item.job_id != job_id:
            self._refuse_item(item.job_id, f"job.id: the work item's id is not the digest of its signed job "
                                           f"(expected {job_id[:16]}, found {item.job_id[:16]})")
            return
        revocations = [SignedRevocation(r.job_id, r.party, r.revocation, r.signature) for r in item.revocations]
        with self._lock:
            run = self.runs.get(job_id)
        if run is not None:
            run.revocations.extend(r for r in revocations if r not in run.revocations)
            try:
                self._still_approved(run)
            except TeenetError as exc:
                self._drop(run, Reason.of("job.refused", exc), f"compute enclave refused the job: {exc}")
                return
            self._post_offer(run)  # the coordinator may have lost it; offers are idempotent
            return
        if rt.store.compute_job_seen(job_id):
            # Keys were made for this digest once (or it was refused): never again, whatever
            # restarts came between. A replay is noted once per run of this node.
            with self._lock:
                first = job_id not in self.replays_noted
                self.replays_noted.add(job_id)
            if first:
                rt.audit("job_refused", job_id=job_id, reason="job.replay: this enclave already took or "
                                                              "refused this job; a job runs at most once")
                log.warning("job %s: refused a replay of a job this enclave already took or refused", job_id[:16])
            return
        try:
            spec = verify_signed_job(signed, rt.consortium)
            if spec.compute != rt.name:
                raise TeenetError(f"job names compute '{spec.compute}', this is '{rt.name}'")
            caught = rt.store.equivocated(i.party for i in spec.inputs)  # teenet/witness.py
            if caught:
                raise VerificationError("member.equivocated", f"this node caught {', '.join(caught)} equivocating "
                                                              f"its audit log (`teenet audit acknowledge`)")
            party_keys = {m.name: m.keys.signing for m in rt.consortium.members.values() if m.role == "data"}
            terms = verify_approvals(
                job_id=job_id, function=spec.function, compute=spec.compute,
                inputs=[(i.party, i.table, list(i.keys) + list(i.columns)) for i in spec.inputs],
                release=[(r.kind, list(r.to)) for r in spec.release],
                signed=[SignedDecision(d.job_id, d.party, d.decision, d.signature) for d in item.decisions],
                party_keys=party_keys, own_measurement=rt.enclave.measurement,
                spend=_job_spend(spec))
            refuse_withdrawn_or_expired(job_id=job_id, decisions=terms.decisions, revocations=revocations,
                                        party_keys=party_keys, now=time.time())
            rules = _analysis_rules(terms, spec)
            model_ref = (ModelReference.parse(spec.params, [i.party for i in spec.inputs])
                         if spec.function == "predict" else None)
        except TeenetError as exc:
            rt.store.refuse_compute_job(job_id)  # durable before anyone is told
            self._fail(job_id, Reason.of("job.refused", exc), f"compute enclave refused the job: {exc}")
            return
        if self.cluster is not None and not self.cluster.ready():
            return  # taken once every worker is admitted (the item comes again on the next poll)
        # Written down before the keys exist, let alone the offer: a compute node killed
        # while it holds keys knows on restart which jobs it can no longer finish (see
        # NodeDaemon.settle_orphans), and never makes keys for the same digest again.
        if not rt.store.remember_compute_job(job_id):
            return  # another worker took it meanwhile
        session = ComputeEnclaveSession(bytes.fromhex(job_id), rt.enclave.attester, self.suite)
        run = JobRun(job_id, spec, terms, rules, session, revocations=revocations, model_ref=model_ref,
                     signed_spec=signed.canonical_spec)
        if self.cluster is not None and not self._open_on_cluster(run):
            return
        with self._lock:
            self.runs[job_id] = run
        rt.audit("job_accepted", job_id=job_id, function=spec.function,
                 parties=sorted({i.party for i in spec.inputs}), min_group_size=terms.min_group_size)
        self._post_offer(run)

    def _open_on_cluster(self, run: JobRun) -> bool:
        """Per-job keys on every worker and the signed cluster part of the offer (node/cluster_role.py)."""
        from teenet.node.cluster_role import ClusterFailed

        try:
            run.cluster = self.cluster.open_job(run)
        except TeenetError as exc:
            self.rt.store.end_compute_job(run.job_id)
            reason = exc.reason if isinstance(exc, ClusterFailed) else Reason.of("cluster.failed", exc)
            self._fail(run.job_id, reason, f"{reason.text()}: {exc}")
            return False

        def complete() -> None:
            try:
                shipped = run.cluster.shipped(self.rt.consortium)
            except TeenetError as exc:
                reason = Reason.of("cluster.failed", exc)
                self._drop(run, reason, f"{reason.text()}: {exc}")
                return
            run.fingerprints.update(run.cluster.fingerprints())
            run.shipped.update(shipped)
            self._start_if_ready(run)

        self.cluster.watch(run.cluster, complete,
                           lambda exc: self._lost_on_cluster(run, exc))
        return True

    def _lost_on_cluster(self, run: JobRun, exc) -> None:
        with self._lock:
            running = run.started and run.job_id in self.runs
        if not running and not run.cluster.closed.is_set():  # closed: the job already ended  # still taking partitions: the job ends here; mid-run, _execute fails it
            self._drop(run, exc.reason, f"{exc.reason.text()}: {exc}")

    def _drop_cluster(self, run: JobRun) -> None:
        if run.cluster is not None and not run.cluster.closed.is_set():
            self.cluster.drop_job(run.cluster)

    def _still_approved(self, run: JobRun) -> None:
        """Raise unless every approval of `run` is still in its window and none was withdrawn."""
        party_keys = {m.name: m.keys.signing for m in self.rt.consortium.members.values() if m.role == "data"}
        refuse_withdrawn_or_expired(job_id=run.job_id, decisions=run.terms.decisions, revocations=run.revocations,
                                    party_keys=party_keys, now=time.time())

    def _drop(self, run: JobRun, reason: Reason, detail: str) -> None:
        """End a job this enclave holds keys (and maybe tables) for, before it ran."""
        with self._lock:
            self.runs.pop(run.job_id, None)
            run.started = True  # a table arriving now never starts it
        run.tables.clear()
        self._drop_cluster(run)
        self.rt.store.end_compute_job(run.job_id)
        self.rt.audit("job_dropped", job_id=run.job_id, reason=reason.text())
        self._fail(run.job_id, reason, detail)

    def _refuse_item(self, item_job_id: str, reason: str) -> None:
        """Refuse a work item that does not name its own signed job. Nothing is recorded
        against the signed job's digest (that job may be genuine and still to come); the
        coordinator is told that the id it used failed."""
        with self._lock:
            first = item_job_id not in self.replays_noted
            self.replays_noted.add(item_job_id)
        if first:
            self._fail(item_job_id, Reason("job.refused", "job.id"), f"compute enclave refused the job: {reason}")

    def _post_offer(self, run: JobRun) -> None:
        rt = self.rt
        offer = run.session.offer(rt.name, rt.config.listen or "")
        cluster = None
        if run.cluster is not None:
            from teenet.cluster.offer import cluster_to_proto

            cluster = cluster_to_proto(run.cluster.offer)
        call_with_retry(lambda: rt.coordinator.stub.PostOffer(pb.ComputeOffer(
            job_id=offer.job_id, compute=offer.compute, hpke_suite=offer.suite.value,
            hpke_public_key=offer.hpke_public_key, signing_public_key=offer.signing_public_key,
            evidence=offer.evidence, endpoint=offer.endpoint, cluster=cluster), timeout=10), what="post offer",
            stop=rt.stopping)

    def on_stop(self, item: pb.WorkItem) -> None:
        with self._lock:
            run = self.runs.pop(item.job_id, None)
        if run is not None:
            run.tables.clear()
            run.model_onnx = None
            self._drop_cluster(run)
            self.rt.store.end_compute_job(item.job_id)
            self.rt.audit("job_dropped", job_id=item.job_id, reason=item.reason)
            log.info("job %s stopped (%s); inputs and keys dropped", item.job_id[:16], item.reason)

    # uploads ------------------------------------------------------------------------------
    def UploadTable(self, request_iterator: Iterator[pb.UploadMessage], context: grpc.ServicerContext) -> pb.UploadReply:
        rt = self.rt
        caller = peer_name(context)
        try:
            first = next(request_iterator)
        except StopIteration:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty upload stream")
        if first.WhichOneof("part") != "key":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an upload must start with the key envelope")
        k = first.key
        with self._lock:
            run = self.runs.get(k.job_id)
        if run is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this enclave has no approved job with that id")
        if caller != k.party:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"'{caller}' may not upload a table of '{k.party}'")
        if k.table == MODEL_INPUT:
            return self._receive_model(run, k, request_iterator, context)
        if not any(i.party == k.party and i.table == k.table for i in run.spec.inputs):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{k.party}/{k.table} is not an input of this job")
        if (k.party, k.table) in run.tables:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{k.party}/{k.table} was already received")
        if run.cluster is not None:  # the leader never holds whole tables
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "cluster.whole_table: this compute node is a cluster; "
                          "tables go to its workers, partitioned (the offer's cluster part)")
        try:
            inp = next(i for i in run.spec.inputs if i.party == k.party and i.table == k.table)
            got = receive_sealed_table(session=run.session, k=k, request_iterator=request_iterator,
                                       expected_columns=list(dict.fromkeys(list(inp.keys) + list(inp.columns))),
                                       data_policy=rt.data_policy, roots=rt.enclave.roots)
            table, claims, root, sealed_bytes = got.table, got.claims, got.root, [got.sealed_bytes]
            shipped = check_shipped_record(got.fingerprint, rt.consortium, job_id=run.job_id, party=k.party,
                                           table=k.table, root=root)
        except TeenetError as exc:
            # Named by its check first, so the owner's node can say which check refused it.
            detail = str(exc) if isinstance(exc, VerificationError) else f"{check_of(exc)}: {exc}"
            rt.audit("upload_refused", job_id=k.job_id, party=k.party, table=k.table, reason=detail)
            log.warning("job %s: refused %s/%s: %s", k.job_id[:16], k.party, k.table, detail)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, detail)
        except grpc.RpcError:  # the uploader went away mid-stream; nothing of it is kept
            rt.audit("upload_broken", job_id=k.job_id, party=k.party, table=k.table,
                     reason="stream broke before its last chunk")
            log.warning("job %s: upload of %s/%s broke before its last chunk", k.job_id[:16], k.party, k.table)
            context.abort(grpc.StatusCode.CANCELLED, "upload stream broke before its last chunk")
        with self._lock:
            run.tables[(k.party, k.table)] = table
            run.fingerprints[(k.party, k.table)] = (root.hex(), table.num_rows)
            if shipped is not None:
                run.shipped[(k.party, k.table)] = shipped
        rt.audit("table_received", job_id=k.job_id, party=k.party, table=k.table, rows=table.num_rows,
                 data_enclave=claims.measurement.hex(), sealed_bytes=sealed_bytes[0])
        self._start_if_ready(run)
        return pb.UploadReply(job_id=k.job_id, party=k.party, table=k.table, rows=table.num_rows,
                              sealed_bytes=sealed_bytes[0])

    def _start_if_ready(self, run: JobRun) -> None:
        with self._lock:
            ready = run.ready() and not run.started
            if ready:
                run.started = True
        if ready:
            threading.Thread(target=self._run, args=(run,), name=f"job-{run.job_id[:8]}", daemon=True).start()

    def _receive_model(self, run: JobRun, k: pb.KeyEnvelope, request_iterator: Iterator[pb.UploadMessage],
                       context: grpc.ServicerContext) -> pb.UploadReply:
        """A predict job's model, shipped by the party the spec names: accepted only with the
        releasing enclave's signature over it and its train job's signed spec and evidence."""
        from teenet.node.results import offer_from_proto, result_from_proto

        rt = self.rt
        ref = run.model_ref
        if ref is None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "this job takes no shipped model")
        if k.party != ref.sender:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"the job's model comes from {ref.sender}, not from '{k.party}'")
        if run.model_onnx is not None:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "the job's model was already received")
        envelope = KeyEnvelope(k.job_id, k.party, k.table, k.sealed_key, k.evidence, k.signing_public_key, k.signature)
        try:
            key, claims = run.session.open_key_envelope(envelope, expected_party=k.party, expected_table=MODEL_INPUT,
                                                        data_policy=rt.data_policy, roots=rt.enclave.roots)
            shipped = next(request_iterator, None)
            if shipped is None or shipped.WhichOneof("part") != "model":
                raise TeenetError("a shipped model's key envelope must be followed by the model's provenance")
            messages = []
            for msg in request_iterator:
                if msg.WhichOneof("part") != "chunk":
                    raise TeenetError("a shipped model's provenance must be followed by its stream messages only")
                messages.append(msg.chunk)
            m = shipped.model
            onnx = verify_shipped_model(ref=ref, train_job=SignedJob.from_proto(m.train_job),
                                        train_offer=offer_from_proto(m.train_offer),
                                        result=result_from_proto(m.head, messages),
                                        key=ResultKey(key.secret_bytes()), consortium=rt.consortium,
                                        roots=rt.enclave.roots)
            model_lineage = model_input(ref, m, rt.consortium, rt.enclave.roots)  # teenet.lineage
        except TeenetError as exc:
            # Named by its check first, as a table's refusal is, so the shipper can say which.
            detail = str(exc) if isinstance(exc, VerificationError) else f"{check_of(exc)}: {exc}"
            rt.audit("upload_refused", job_id=k.job_id, party=k.party, table=MODEL_INPUT, reason=detail)
            log.warning("job %s: refused the model shipped by %s: %s", k.job_id[:16], k.party, detail)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, detail)
        except grpc.RpcError:
            context.abort(grpc.StatusCode.CANCELLED, "model stream broke before its end")
        with self._lock:
            run.model_onnx = onnx
            run.model_lineage = model_lineage
        rt.audit("model_received", job_id=k.job_id, party=k.party, train_job=ref.job,
                 data_enclave=claims.measurement.hex())
        self._start_if_ready(run)
        return pb.UploadReply(job_id=k.job_id, party=k.party, table=MODEL_INPUT, rows=0,
                              sealed_bytes=sum(len(x) for x in messages))

    # running ------------------------------------------------------------------------------
    def _run(self, run: JobRun) -> None:
        try:
            self._execute(run)
        finally:
            if not self.rt.stopping():  # results posted or failure reported; else left open for restart
                self.rt.store.end_compute_job(run.job_id)

    def _execute(self, run: JobRun) -> None:
        from teenet.models import PartyInput, ReleaseRequest, ReleaseRules, run_function

        rt = self.rt
        spec = run.spec
        try:  # the approvals held when the keys were made; they must still hold now
            self._still_approved(run)
        except TeenetError as exc:
            self._finish(run)
            self._fail(run.job_id, Reason.of("job.refused", exc), f"compute enclave refused the job: {exc}")
            return
        self._report(run.job_id, "running", f"all {len(spec.inputs)} inputs received; running {spec.function}")
        try:
            rules = ReleaseRules(min_group_size=run.terms.min_group_size,
                                 approved_recipients=dict(run.terms.approved_recipients),
                                 id_owners=frozenset(run.terms.id_recipients),
                                 analysis=run.rules)
            requests = [ReleaseRequest(r.kind, tuple(r.to)) for r in spec.release]
            params = dict(spec.params)
            if run.model_onnx is not None:  # the verified model, placed where teenet.models.predict reads it
                params["model_onnx"] = run.model_onnx
            if run.cluster is not None:  # node/cluster_role.py: over the partitions, where they are
                releases = self.cluster.run_job(run, params, requests, rules)
            else:
                inputs = [PartyInput(i.party, i.table, tuple(i.keys), tuple(i.columns),
                                     run.tables[(i.party, i.table)]) for i in spec.inputs]
                releases = run_function(spec.function, inputs, params, requests, rules)
                del inputs
            self._finish(run)  # the inputs go before the drop is recorded and the results signed
            lineage = record_drop(rt, run, platform=self._platform())
            sealed = []
            for rel in releases:
                for recipient in rel.recipients:
                    member = rt.consortium.member(recipient)
                    sealed.append(seal_result(job_digest=bytes.fromhex(run.job_id), kind=rel.kind,
                                              recipient=recipient, recipient_key=member.keys.hpke,
                                              media_type=rel.media_type, payload=rel.payload,
                                              summary=dict(rel.summary), sign=run.session.sign,
                                              pad_floor=rt.config.result_pad_floor, lineage=lineage))
            del releases
        except TeenetError as exc:
            self._finish(run)
            reason = getattr(exc, "reason", None) if run.cluster is not None else None  # a ClusterFailed
            reason = reason or Reason.of("function.refused", exc, field=spec.function)
            # The function's own words may quote its inputs (a value, a count below k): they
            # stay inside the enclave. Its log and audit, kept by the compute host, get the
            # fixed reason and the error's type only.
            self._fail(run.job_id, reason, f"{reason.text()} ({type(exc).__name__})")
            return
        except Exception as exc:  # a bug in a function must fail the job, not leak its inputs
            log.error("job %s: function crashed (%s)", run.job_id[:16], type(exc).__name__)
            self._finish(run)
            reason = Reason("function.failed", field=spec.function)
            self._fail(run.job_id, reason, f"{reason.text()} ({type(exc).__name__})")
            return
        self._finish(run)
        try:
            # A fresh stream each attempt; the coordinator drops what a broken attempt stored.
            call_with_retry(lambda: rt.coordinator.stub.PostResultStream(_result_stream(run.job_id, sealed),
                                                                         timeout=600),
                            what="post results", stop=rt.stopping)
        except grpc.RpcError as exc:
            self._fail(run.job_id, Reason("results.refused", transport_check(exc.code().name, exc.details() or "")),
                       f"the coordinator did not take the sealed results: {exc.code().name} "
                       f"{(exc.details() or '')[:200]}")
            return
        rt.audit("released_results", job_id=run.job_id,
                 results=[[s.kind, s.recipient, sealed_size(s)] for s in sealed])
        log.info("job %s: released %d sealed result(s)", run.job_id[:16], len(sealed))

    def _platform(self) -> str:
        """This enclave's platform as its evidence names it (for lineage statements)."""
        if not hasattr(self, "_platform_value"):
            from teenet.attestation.verifier import verify_platform_evidence

            claims = verify_platform_evidence(self.rt.enclave.attester.attest(bytes(64)), self.rt.enclave.roots)
            self._platform_value = claims.platform.value
        return self._platform_value

    def _finish(self, run: JobRun) -> None:
        with self._lock:
            self.runs.pop(run.job_id, None)
        run.tables.clear()
        run.model_onnx = None
        self._drop_cluster(run)

    def _fail(self, job_id: str, reason: Reason, detail: str) -> None:
        """Fail a job: `detail` goes to this node's own log and audit, only `reason` leaves."""
        log.warning("job %s: %s", job_id[:16], detail)
        self.rt.audit("job_failed", job_id=job_id, reason=reason.text(), detail=detail)
        self._report(job_id, "failed", reason.text())

    def _report(self, job_id: str, event: str, detail: str) -> None:
        rt = self.rt
        try:
            call_with_retry(lambda: rt.coordinator.stub.ReportStatus(pb.StatusReport(
                job_id=job_id, node=rt.name, event=event, detail=detail), timeout=10),
                what="report status", stop=rt.stopping)
        except grpc.RpcError as exc:
            log.warning("job %s: coordinator refused status %s: %s", job_id[:16], event, exc.details())


def _result_stream(job_id: str, sealed: list[SealedResult]) -> Iterator[pb.ResultStreamPart]:
    """PostResultStream's messages: each result's head, then its sealed stream; then `end`."""
    for s in sealed:
        yield pb.ResultStreamPart(job_id=job_id, head=pb.SealedResultHead(
            job_id=s.job_id, recipient=s.recipient, kind=s.kind, key_envelope=s.key_envelope,
            statement=s.statement, signature=s.signature))
        for message in s.messages:
            yield pb.ResultStreamPart(job_id=job_id, message=message)
    yield pb.ResultStreamPart(job_id=job_id, end=True)
