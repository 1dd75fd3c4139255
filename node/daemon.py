"""The node daemon: poll the coordinator, do the work, serve the Compute service if a compute node.

Data nodes make outbound connections only. A compute node also listens (mutual TLS) for
sealed uploads. Both run until SIGTERM or SIGINT, and survive the coordinator going away.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from teenet.errors import TeenetError
from teenet.logformat import job_context, use_log_format
from teenet.pki import GRPC_OPTIONS, server_credentials
from teenet.proto import teenet_pb2 as pb
from teenet.proto import teenet_pb2_grpc as rpc
from teenet.node.compute_role import ComputeRole
from teenet.node.data_role import DataRole
from teenet.node.runtime import NodeRuntime, open_runtime
from teenet.witness import GrpcBoard, coordinator_log, node_round, witnessed_members

log = logging.getLogger("teenet.node")

WITNESS_EVERY = 3.0  # seconds between witnessing rounds (teenet/witness.py)
MIN_POLL_GAP = 0.02  # seconds between the starts of two polls, at least
RESTART_REASON = "compute node {node} restarted; its per-job keys died with it (resubmit the job)"
# A job still `approved` is failed too: its keys may have been made, and the enclave never
# makes keys for one digest twice (ComputeRole.on_compute).
_OPEN_STATES = frozenset({"approved", "negotiating_keys", "running"})


class NodeDaemon:
    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        self.data = DataRole(rt) if rt.config.role == "data" else None
        self.compute = ComputeRole(rt) if rt.config.role == "compute" else None
        # Jobs a previous run of this compute node held keys for: settled before the first poll.
        self._orphans: list[str] = rt.store.open_compute_jobs() if self.compute is not None else []
        self._orphans_logged: set[str] = set()
        self.server: grpc.Server | None = None
        self.workers = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="work")
        self._busy: set[tuple[str, str]] = set()
        self._busy_lock = threading.Lock()
        self._poll_call: grpc.Future | None = None
        self.console = None  # the web console (teenet.console), when the config has one
        self.witness_wake = threading.Event()  # set at each job end: witness now

    def start(self) -> None:
        if self.compute is not None:
            # Load the in-enclave functions (scikit-learn, ONNX) now, not in the first job's time.
            threading.Thread(target=_warm_up_functions, name="warm-up", daemon=True).start()
            if not self.rt.config.listen:
                raise TeenetError(f"compute node '{self.rt.name}' needs `listen: host:port` in its config")
            self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=GRPC_OPTIONS)
            rpc.add_ComputeServicer_to_server(self.compute, self.server)
            health_servicer = health.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self.server)
            port = self.server.add_secure_port(self.rt.config.listen, server_credentials(self.rt.tls))
            if port == 0:
                raise TeenetError(f"cannot listen on {self.rt.config.listen}")
            self.server.start()
            for service in ("", "teenet.v1.Compute"):
                health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
            log.info("compute service listening on %s", self.rt.config.listen)
        if self.rt.config.console is not None:
            from teenet.console.server import start_node_console

            self.console = start_node_console(self.rt, workers=self.workers._max_workers)
        threading.Thread(target=self._witness_loop, name="witness", daemon=True).start()
        log.info("node %s (%s) up; enclave %s measurement %s", self.rt.name, self.rt.config.role,
                 self.rt.enclave.backend, self.rt.enclave.measurement[:16])

    def settle_orphans(self) -> None:
        """Fail each job a previous run of this compute node left open (its keys are gone).

        Runs before the first poll, so no job of this run is mistaken for one. An open job is
        failed (this enclave never takes its digest again); an ended or unknown one is closed.
        Raises grpc.RpcError while the coordinator is unreachable (the caller retries).
        """
        rt = self.rt
        while self._orphans:
            job_id = self._orphans[0]
            try:
                state = rt.coordinator.stub.GetJob(pb.JobRef(job_id=job_id), timeout=10).state
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
                                      grpc.StatusCode.INVALID_ARGUMENT):
                    raise
                state = ""
            if state in _OPEN_STATES:
                reason = RESTART_REASON.format(node=rt.name)
                # This node's own log first: the coordinator's "failed" must never be visible
                # before the record of why (a retry after UNAVAILABLE does not log it twice).
                if job_id not in self._orphans_logged:
                    rt.audit("job_failed", job_id=job_id, reason=reason)
                    self._orphans_logged.add(job_id)
                try:
                    rt.coordinator.stub.ReportStatus(pb.StatusReport(job_id=job_id, node=rt.name, event="failed",
                                                                     detail=reason), timeout=10)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # ended meanwhile: nothing to do
                        raise
                log.warning("job %s: %s", job_id[:16], reason)
            rt.store.end_compute_job(job_id)
            self._orphans.pop(0)

    def poll_once(self, since: int = 0, wait: float = 0.0) -> pb.PollReply:
        """One Poll; with `wait` > 0 and `since` the coordinator's current generation, the
        coordinator holds it until something changes (a long poll). Stop() cancels it."""
        if self._orphans:
            self.settle_orphans()
        if self.data is not None:
            self.data.send_revocations()
        call = self.rt.coordinator.stub.Poll.future(
            pb.PollRequest(node=self.rt.name, since=since, wait_ms=int(wait * 1000)), timeout=10 + wait)
        self._poll_call = call  # read by stop() and the signal handler, to cancel it
        try:
            if self.rt.stop_event.is_set():
                call.cancel()
            reply = call.result()
        finally:
            self._poll_call = None
        for item in reply.items:
            self._dispatch(item)
        return reply

    def _poll_wait(self) -> float:
        """How long the next poll may wait at the coordinator: `poll_wait`, shortened while
        this node has its own reason to look again (an upload retry due, a job waiting for
        its operator, whose decision the coordinator cannot announce)."""
        wait = float(self.rt.config.poll_wait)
        if wait and self.data is not None:
            local = self.data.next_local_check(float(self.rt.config.poll_interval))
            if local is not None:
                wait = min(wait, local)
        return max(0.0, wait)

    def _dispatch(self, item: pb.WorkItem) -> None:
        key = (item.kind, item.job_id)
        with self._busy_lock:
            if key in self._busy:
                return
            self._busy.add(key)

        def work() -> None:
            try:
                with job_context(item.job_id):
                    self._handle(item)
            except TeenetError as exc:
                log.warning("job %s: %s", item.job_id[:16], exc)
            except grpc.RpcError as exc:
                log.warning("job %s: %s failed: %s", item.job_id[:16], item.kind, exc.code().name)
            except Exception:
                log.exception("job %s: unexpected error in %s", item.job_id[:16], item.kind)
            finally:
                with self._busy_lock:
                    self._busy.discard(key)
                if item.kind == "stop":
                    self.witness_wake.set()

        self.workers.submit(work)

    def _handle(self, item: pb.WorkItem) -> None:
        if item.kind == "decide" and self.data:
            self.data.on_decide(item)
        elif item.kind == "upload" and self.data:
            self.data.on_upload(item)
        elif item.kind == "compute" and self.compute:
            self.compute.on_compute(item)
        elif item.kind == "stop":
            (self.data or self.compute).on_stop(item)  # type: ignore[union-attr]
        else:
            log.warning("ignoring work item %r for a %s node", item.kind, self.rt.config.role)

    def run(self) -> None:
        interval = float(self.rt.config.poll_interval)
        backoff = interval
        since = 0
        last = 0.0
        while not self.rt.stop_event.is_set():
            try:
                wait = self._poll_wait()
                # On a busy coordinator every poll finds a change: at most one poll per MIN_POLL_GAP.
                self.rt.stop_event.wait(max(0.0, last + MIN_POLL_GAP - time.monotonic()))
                last = time.monotonic()
                reply = self.poll_once(since, wait)
                backoff = interval
                changed, since = reply.generation != since, reply.generation
                if wait and changed and reply.generation:
                    continue  # something moved: look again now; that poll waits for the next change
            except grpc.FutureCancelledError:  # stop() cancelled the long poll in flight
                if self.rt.stop_event.is_set():
                    break
                since = 0
            except grpc.RpcError as exc:
                since = 0
                if exc.code() == grpc.StatusCode.CANCELLED and self.rt.stop_event.is_set():
                    break
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    log.info("coordinator unavailable; retrying in %.1fs", backoff)
                    backoff = min(5.0, backoff * 2)
                else:
                    log.warning("coordinator refused poll: %s %s", exc.code().name, exc.details())
                    backoff = min(5.0, backoff * 2)
            self.rt.stop_event.wait(backoff)

    def _witness_loop(self) -> None:
        """Publish this node's log heads and witness the others' (teenet/witness.py), every
        WITNESS_EVERY seconds and at each job end, until the node stops."""
        rt = self.rt
        witness = rt.store.witness(rt.name, rt.keys.signing, witnessed_members(rt.consortium),
                                   coordinator_log(rt.consortium))
        board = GrpcBoard(rt.coordinator.stub)
        while not rt.stop_event.is_set():
            try:
                node_round(rt.audit_log, rt.name, witness, board, rt.audit)
            except grpc.RpcError as exc:
                log.info("witness round: coordinator %s; retrying", exc.code().name)
            except TeenetError as exc:
                log.warning("witness round refused: %s", exc)
            except Exception:  # a closing store at shutdown, or a bug: never kill the node
                if rt.stop_event.is_set():
                    return
                log.exception("witness round failed")
            self.witness_wake.wait(WITNESS_EVERY)
            self.witness_wake.clear()

    def stop(self) -> None:
        self.rt.stop_event.set()
        self.witness_wake.set()
        call = self._poll_call
        if call is not None:
            call.cancel()
        if self.server is not None:
            self.server.stop(grace=2).wait()
        if self.console is not None:
            self.console.stop()
        self.workers.shutdown(wait=False, cancel_futures=True)
        self.rt.close()


def _warm_up_functions() -> None:
    import importlib

    for module in ("teenet.models", "teenet.models.learning", "teenet.models.onnx_models"):
        try:
            importlib.import_module(module)
        except ImportError:  # reported by the job that needs it
            log.warning("could not preload %s", module)


def serve(config_path: Path) -> None:
    """Run a node until SIGTERM/SIGINT."""
    from teenet.cluster.config import is_worker_config

    if is_worker_config(config_path):  # role: compute-worker (teenet/cluster/worker.py)
        from teenet.cluster.config import load_worker_config
        from teenet.cluster.worker import serve_worker

        rc = serve_worker(load_worker_config(config_path))
        if rc:
            raise SystemExit(rc)
        return
    rt = open_runtime(config_path)
    use_log_format(rt.config.log_format)
    daemon = NodeDaemon(rt)
    daemon.start()

    def handle(signum, frame):  # noqa: ARG001
        rt.stop_event.set()
        # A long poll in flight ends now, not when the coordinator answers. No lock here: the
        # handler runs in the main thread, which may be holding one.
        call = daemon._poll_call
        if call is not None:
            call.cancel()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    try:
        daemon.run()
    finally:
        daemon.stop()
        log.info("node %s stopped", rt.name)
