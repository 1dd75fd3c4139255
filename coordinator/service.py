"""The Coordinator gRPC service: thin over `Coordinator`, with authentication and error mapping.

Each RPC first checks that the caller's mTLS name (`peer_name`) is the member the message
claims to come from, converts protobuf to plain values, calls the state machine, and
converts back. Errors are mapped once, in `_rpc`: bad input is INVALID_ARGUMENT, a caller
acting for someone else or a bad signature is PERMISSION_DENIED, an unknown job is
NOT_FOUND, a message the job's state does not allow is FAILED_PRECONDITION. Anything
unexpected is logged here and answered INTERNAL without detail: the service never dies on
a request and never tells a caller more than a one-line reason.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import grpc

from teenet.audit import AuditCheckpoint
from teenet.errors import InputError, TeenetError, VerificationError
from teenet.pki import peer_name
from teenet.proto import teenet_pb2 as pb
from teenet.proto import teenet_pb2_grpc as rpc

from teenet.coordinator.state import (Coordinator, JobNotFound, JobView, PermissionRefused, SealedResultIn,
                                      TransitionRefused, WorkItem)
from teenet.coordinator.store import DecisionRecord, JobRecord, OfferRecord
from teenet.witness import (ROWS_CHECKPOINTS, ROWS_COSIGNATURES, ROWS_NONE, CheckpointBoard, Cosignature,
                            Published, UnpagedReadRefused)

log = logging.getLogger("teenet.coordinator")

MAX_AUDIT_PAGE = 1000
# Long polls: how long one may wait, and how many may wait at once (each holds a server
# thread; past this many, a poll answers at once and the caller falls back to its interval).
MAX_WAIT_SECONDS = 20.0
MAX_LONG_POLLS = 16
R = TypeVar("R")

_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (JobNotFound, grpc.StatusCode.NOT_FOUND),
    (PermissionRefused, grpc.StatusCode.PERMISSION_DENIED),
    (VerificationError, grpc.StatusCode.PERMISSION_DENIED),
    (TransitionRefused, grpc.StatusCode.FAILED_PRECONDITION),
    (InputError, grpc.StatusCode.INVALID_ARGUMENT),
    (TeenetError, grpc.StatusCode.INVALID_ARGUMENT),
)


def _rpc(method: Callable[..., R]) -> Callable[..., R]:
    """Run an RPC body; turn every failure into one status code and a one-line message."""

    @functools.wraps(method)
    def handler(self: "CoordinatorService", request: Any, context: grpc.ServicerContext) -> R:
        try:
            return method(self, request, context)
        except TeenetError as exc:
            code = next(c for t, c in _CODES if isinstance(exc, t))
            log.info("%s refused (%s) for %s: %s", method.__name__, code.name, _clip(peer_name(context)), exc)
            status, detail = code, str(exc)
        except sqlite3.OperationalError as exc:  # e.g. disk full or locked: the caller may retry
            log.error("%s: database unavailable: %s", method.__name__, exc)
            status, detail = grpc.StatusCode.UNAVAILABLE, "coordinator store unavailable; retry later"
        except Exception:
            log.exception("%s: internal error", method.__name__)
            status, detail = grpc.StatusCode.INTERNAL, "internal error in the coordinator"
        context.abort(status, detail)
        raise AssertionError("unreachable")  # context.abort raises

    return handler


def _clip(text: str, limit: int = 64) -> str:
    flat = text.encode("unicode_escape").decode("ascii")
    return flat if len(flat) <= limit else flat[:limit] + "..."


def caller_of(context: grpc.ServicerContext) -> str:
    """The caller's consortium name from its client certificate, or PERMISSION_DENIED."""
    name = peer_name(context)
    if not name:
        raise PermissionRefused("no consortium name in the client certificate")
    return name


def require_caller(context: grpc.ServicerContext, claimed: str, field: str) -> str:
    caller = caller_of(context)
    if claimed != caller:
        raise PermissionRefused(f"authenticated as '{_clip(caller)}' but the message's {field} is "
                                f"'{_clip(claimed)}'; a member speaks only for itself")
    return caller


class CoordinatorService(rpc.CoordinatorServicer):
    """teenet.v1.Coordinator over a `Coordinator`."""

    def __init__(self, coordinator: Coordinator, *, max_long_polls: int | None = None,
                 board: CheckpointBoard | None = None) -> None:
        self.coordinator = coordinator
        self.board = board
        self._wait_slots = threading.BoundedSemaphore(MAX_LONG_POLLS if max_long_polls is None else max_long_polls)

    @contextmanager
    def _long_poll(self, wait_ms: int) -> Iterator[float]:
        """Seconds this call may wait: 0 when not asked, or when every wait slot is taken."""
        seconds = min(wait_ms / 1000.0, MAX_WAIT_SECONDS)
        if seconds <= 0 or not self._wait_slots.acquire(blocking=False):
            yield 0.0
            return
        try:
            yield seconds
        finally:
            self._wait_slots.release()

    @_rpc
    def SubmitJob(self, request: pb.SignedJob, context: grpc.ServicerContext) -> pb.SubmitJobReply:
        require_caller(context, request.analyst, "analyst")
        out = self.coordinator.submit_job(request.canonical_spec, request.analyst, request.signature)
        return pb.SubmitJobReply(job_id=out.job_id, state=out.state.value, duplicate=out.duplicate)

    @_rpc
    def GetJob(self, request: pb.JobRef, context: grpc.ServicerContext) -> pb.JobStatus:
        viewer = caller_of(context)
        view = self.coordinator.view(request.job_id, viewer=viewer)  # may this caller see it at all?
        if request.wait_ms and not view.state.terminal and view.job.updated_at <= request.updated_after:
            with self._long_poll(request.wait_ms) as seconds:
                if seconds:
                    self.coordinator.wait_for_job(request.job_id, request.updated_after, seconds)
                    view = self.coordinator.view(request.job_id, viewer=viewer)
        return job_status(view)

    @_rpc
    def ListJobs(self, request: pb.ListJobsRequest, context: grpc.ServicerContext) -> pb.ListJobsReply:
        views = self.coordinator.list_jobs(viewer=caller_of(context), state=request.state or None,
                                           limit=request.limit)
        return pb.ListJobsReply(jobs=[job_status(v) for v in views])

    @_rpc
    def CancelJob(self, request: pb.CancelRequest, context: grpc.ServicerContext) -> pb.JobStatus:
        require_caller(context, request.analyst, "analyst")
        return job_status(self.coordinator.cancel(request.job_id, request.analyst, request.reason,
                                                  request.signature))

    @_rpc
    def Poll(self, request: pb.PollRequest, context: grpc.ServicerContext) -> pb.PollReply:
        require_caller(context, request.node, "node")
        # A compute node's poll is its heartbeat, and so is a long poll it still holds open.
        compute = self.coordinator.member(request.node, what="poller").role == "compute"
        if compute:
            self.coordinator.record_poll(request.node)
        generation = self.coordinator.generation
        if request.wait_ms and request.since == generation:
            with self._long_poll(request.wait_ms) as seconds:
                deadline = time.monotonic() + seconds
                while seconds and context.is_active():
                    generation = self.coordinator.wait_for_change(request.since, min(1.0, seconds))
                    if compute:
                        self.coordinator.record_poll(request.node)
                    seconds = deadline - time.monotonic()
                    if generation != request.since or seconds <= 0 or self.coordinator.store.waits_stopped:
                        break
        # Read after the generation: anything committed meanwhile makes the next poll answer at once.
        return pb.PollReply(items=[work_item(i) for i in self.coordinator.poll(request.node)],
                            generation=generation)

    @_rpc
    def SubmitDecision(self, request: pb.SignedDecision, context: grpc.ServicerContext) -> pb.Ack:
        require_caller(context, request.party, "party")
        detail = self.coordinator.submit_decision(request.job_id, request.party, request.decision,
                                                  request.signature)
        return pb.Ack(ok=True, detail=detail)

    @_rpc
    def WithdrawApproval(self, request: pb.SignedApprovalRevocation, context: grpc.ServicerContext) -> pb.Ack:
        require_caller(context, request.party, "party")
        detail = self.coordinator.withdraw_approval(request.job_id, request.party, request.revocation,
                                                    request.signature)
        return pb.Ack(ok=True, detail=detail)

    @_rpc
    def PostOffer(self, request: pb.ComputeOffer, context: grpc.ServicerContext) -> pb.Ack:
        require_caller(context, request.compute, "compute")
        detail = self.coordinator.post_offer(
            job_id=request.job_id, compute=request.compute, hpke_suite=request.hpke_suite,
            hpke_public_key=request.hpke_public_key, signing_public_key=request.signing_public_key,
            evidence=request.evidence, endpoint=request.endpoint,
            cluster=request.cluster.SerializeToString() if request.HasField("cluster") else b"")
        return pb.Ack(ok=True, detail=detail)

    @_rpc
    def ReportStatus(self, request: pb.StatusReport, context: grpc.ServicerContext) -> pb.Ack:
        require_caller(context, request.node, "node")
        detail = self.coordinator.report_status(request.job_id, request.node, request.event, request.detail)
        return pb.Ack(ok=True, detail=detail)

    @_rpc
    def PostResultStream(self, request_iterator: Iterator[pb.ResultStreamPart],
                         context: grpc.ServicerContext) -> pb.Ack:
        compute = caller_of(context)
        upload = None
        heads: list[SealedResultIn] = []
        for part in request_iterator:
            if upload is None:
                upload = self.coordinator.begin_result_stream(part.job_id, compute)
            if part.job_id != upload.job_id:
                raise InputError("every part of a result stream names the same job", field="job_id")
            which = part.WhichOneof("part")
            if which == "head":
                h = part.head
                head = SealedResultIn(h.job_id, h.recipient, h.kind, h.key_envelope, h.signature, h.statement)
                self.coordinator.add_result_head(upload, head)
                heads.append(head)
            elif which == "message":
                if not heads:
                    raise InputError("a stream message must follow its result's head", field="message")
                self.coordinator.add_result_message(upload, heads[-1].kind, heads[-1].recipient, part.message)
            elif which == "end":
                detail = self.coordinator.post_results(upload.job_id, compute, heads, upload=upload)
                return pb.Ack(ok=True, detail=detail)
            else:
                raise InputError("empty result stream part", field="part")
        raise InputError("the result stream ended before `end`; nothing was stored", field="end")

    def FetchResultStream(self, request: pb.FetchResultsRequest,
                          context: grpc.ServicerContext) -> Iterator[pb.ResultFetchPart]:
        # A server stream: errors are mapped like _rpc's, but while iterating.
        try:
            require_caller(context, request.recipient, "recipient")
            found = self.coordinator.fetch_results(request.job_id, request.recipient)
            opening = pb.ResultFetchOpening(job=signed_job(found.job), status=job_status(found.view))
            if found.offer is not None:
                opening.offer.CopyFrom(compute_offer(found.offer))
            yield pb.ResultFetchPart(opening=opening)
            for r in found.results:
                yield pb.ResultFetchPart(head=pb.SealedResultHead(
                    job_id=r.job_id, recipient=r.recipient, kind=r.kind, key_envelope=r.envelope,
                    statement=r.statement, signature=r.signature))
                for data in self.coordinator.result_messages(r):
                    yield pb.ResultFetchPart(message=data)
        except TeenetError as exc:
            code = next(c for t, c in _CODES if isinstance(exc, t))
            log.info("FetchResultStream refused (%s) for %s: %s", code.name, _clip(peer_name(context)), exc)
            context.abort(code, str(exc))
        except sqlite3.OperationalError as exc:
            log.error("FetchResultStream: database unavailable: %s", exc)
            context.abort(grpc.StatusCode.UNAVAILABLE, "coordinator store unavailable; retry later")

    @_rpc
    def GetAudit(self, request: pb.AuditRequest, context: grpc.ServicerContext) -> pb.AuditReply:
        limit = request.limit if 0 < request.limit <= MAX_AUDIT_PAGE else MAX_AUDIT_PAGE
        audit = self.coordinator.audit
        # Only the entries of the caller's own jobs, each with its chain hashes (a member checks
        # each link it holds; the whole chain is the coordinator operator's `teenet audit verify`).
        reply = pb.AuditReply(entries=[
            pb.AuditEntry(seq=e.seq, prev_hash=e.prev_hash.hex(), entry_hash=e.entry_hash.hex(),
                          payload=e.payload.decode("utf-8"))
            for e in self.coordinator.audit_for(caller_of(context), after=max(0, request.after_seq), limit=limit)])
        checkpoint = audit.latest_checkpoint()
        if checkpoint is not None:
            reply.checkpoint.CopyFrom(audit_checkpoint(checkpoint))
        return reply

    # The checkpoint board (teenet/witness.py): a member publishes only its own log's
    # checkpoints and posts only its own cosignatures; every member reads them all.

    def _board(self) -> CheckpointBoard:
        if self.board is None:
            raise TransitionRefused("this coordinator keeps no checkpoint board")
        return self.board

    @_rpc
    def PublishCheckpoint(self, request: pb.PublishedCheckpoint, context: grpc.ServicerContext) -> pb.Ack:
        publisher = require_caller(context, request.publisher, "publisher")
        self._board().publish(publisher, request.note, request.prev_size, list(request.proof))
        return pb.Ack(ok=True)

    @_rpc
    def GetCheckpoints(self, request: pb.CheckpointRequest, context: grpc.ServicerContext) -> pb.CheckpointsReply:
        caller_of(context)
        board = self._board()
        if not request.origin:
            return pb.CheckpointsReply(origins=board.origins(), rows=request.rows)
        return board_reply(board, request)

    @_rpc
    def PostCosignature(self, request: pb.CheckpointCosignature, context: grpc.ServicerContext) -> pb.Ack:
        witness = require_caller(context, request.witness, "witness")
        self._board().post_cosignature(witness, request.body, request.line)
        return pb.Ack(ok=True)


# protobuf from plain records: one function per message

def signed_job(job: JobRecord) -> pb.SignedJob:
    return pb.SignedJob(canonical_spec=job.canonical_spec, analyst=job.analyst, signature=job.signature)


def signed_decision(d: DecisionRecord) -> pb.SignedDecision:
    return pb.SignedDecision(job_id=d.job_id, party=d.party, decision=d.canonical, signature=d.signature)


def compute_offer(o: OfferRecord) -> pb.ComputeOffer:
    out = pb.ComputeOffer(job_id=o.job_id, compute=o.compute, hpke_suite=o.hpke_suite,
                          hpke_public_key=o.hpke_public_key, signing_public_key=o.signing_public_key,
                          evidence=o.evidence, endpoint=o.endpoint)
    if o.cluster:  # a compute cluster's signed worker list, relayed as the leader sent it
        out.cluster.ParseFromString(o.cluster)
    return out


def job_status(view: JobView) -> pb.JobStatus:
    job = view.job
    return pb.JobStatus(job_id=job.job_id, name=job.name, state=job.state, reason=job.reason,
                        analyst=job.analyst, function=job.function, compute=job.compute,
                        decisions=[pb.PartyDecision(party=d.party, decision=d.decision, reason=d.reason)
                                   for d in view.decisions],
                        uploaded=list(view.uploaded), created_at=job.created_at, updated_at=job.updated_at,
                        results=list(view.results))


def work_item(item: WorkItem) -> pb.WorkItem:
    out = pb.WorkItem(kind=item.kind, job_id=item.job.job_id, job=signed_job(item.job),
                      decisions=[signed_decision(d) for d in item.decisions], reason=item.reason,
                      revocations=[pb.SignedApprovalRevocation(job_id=r.job_id, party=r.party, revocation=r.canonical,
                                                               signature=r.signature) for r in item.revocations])
    if item.offer is not None:
        out.offer.CopyFrom(compute_offer(item.offer))
    return out


def board_reply(board: CheckpointBoard, request: pb.CheckpointRequest) -> pb.CheckpointsReply:
    """One GetCheckpoints reply: a bounded page (teenet/witness.py "Paged board reads"), or
    for a client before paging (rows = 0) the old reply while it fits one page."""
    def published(c: Published) -> pb.PublishedCheckpoint:
        return pb.PublishedCheckpoint(publisher=c.publisher, note=c.note, prev_size=c.prev_size, proof=list(c.proof))

    def cosignature(c: Cosignature) -> pb.CheckpointCosignature:
        return pb.CheckpointCosignature(witness=c.witness, body=c.body, line=c.line)

    origin, rows = request.origin, request.rows
    if rows == 0:
        try:
            pubs, cosigs = board.unpaged(origin, max(0, request.min_size))
        except UnpagedReadRefused as exc:
            raise TransitionRefused(str(exc)) from None
        return pb.CheckpointsReply(checkpoints=[published(c) for c in pubs],
                                   cosignatures=[cosignature(c) for c in cosigs], latest_size=board.latest_size(origin))
    if rows == ROWS_NONE:
        return pb.CheckpointsReply(latest_size=board.latest_size(origin), next_cursor=max(0, request.after),
                                   rows=rows)
    if rows not in (ROWS_CHECKPOINTS, ROWS_COSIGNATURES):
        raise InputError(f"rows must be {ROWS_CHECKPOINTS} (checkpoints), {ROWS_COSIGNATURES} (cosignatures) or "
                         f"{ROWS_NONE} (none)", field="rows")
    read = board.checkpoint_page if rows == ROWS_CHECKPOINTS else board.cosignature_page
    page = read(origin, after=request.after, min_size=request.min_size, max_size=request.max_size,
                limit=request.limit)
    reply = pb.CheckpointsReply(latest_size=page.latest_size, next_cursor=page.next_cursor, more=page.more,
                                rows=rows)
    if rows == ROWS_CHECKPOINTS:
        reply.checkpoints.extend(published(c) for c in page.rows)
    else:
        reply.cosignatures.extend(cosignature(c) for c in page.rows)
    return reply


def audit_checkpoint(cp: AuditCheckpoint) -> pb.AuditCheckpoint:
    return pb.AuditCheckpoint(seq=cp.seq, entry_hash=cp.entry_hash.hex(), signature=cp.signature,
                              signer_public_key=cp.signer_b64)
