"""Run the coordinator: open its store and audit chain, serve gRPC over mutual TLS with
health checking, and shut down cleanly on SIGTERM or SIGINT.

The health service reports SERVING for "" and "teenet.v1.Coordinator" while the server
takes requests and NOT_SERVING once it starts to stop. On shutdown the audit chain gets a
signed checkpoint so its tail is pinned too.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, replace
from typing import Any, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from teenet.audit import AuditLog, load_audit_key
from teenet.errors import InputError
from teenet.logformat import use_log_format
from teenet.pki import COORDINATOR_GRPC_OPTIONS, server_credentials
from teenet.proto import teenet_pb2_grpc as rpc

from teenet.coordinator.config import CoordinatorConfig
from teenet.witness import CheckpointBoard, publish
from teenet.coordinator.service import CoordinatorService
from teenet.coordinator.state import Consortium, Coordinator
from teenet.coordinator.store import CoordinatorStore

log = logging.getLogger("teenet.coordinator")

SERVICE_NAME = "teenet.v1.Coordinator"
# Long polls hold up to service.MAX_LONG_POLLS of these; the rest serve everything else.
MAX_WORKERS = 32
PUBLISH_EVERY = 3.0  # seconds between publications of the coordinator's own log head


@dataclass
class RunningCoordinator:
    """A started coordinator: its bound port, and how to stop it."""

    server: grpc.Server
    port: int
    coordinator: Coordinator
    health: health.HealthServicer
    sweeper: threading.Thread | None = None
    console: Any = None  # the web console (teenet.console), when the config has one
    _stopped: bool = False
    _stop_sweeping: threading.Event | None = None

    def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls, let running ones finish for `grace` seconds, checkpoint, close."""
        if self._stopped:
            return
        self._stopped = True
        if self._stop_sweeping is not None:
            self._stop_sweeping.set()
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.coordinator.store.stop_waiting()  # long polls answer now instead of holding the stop
        self.server.stop(grace).wait()
        if self.console is not None:
            self.console.stop()
        checkpoint = self.coordinator.audit.checkpoint()
        if checkpoint is not None:
            log.info("audit chain checkpointed at entry %d", checkpoint.seq)
        self.coordinator.store.close()

    def wait(self) -> None:
        self.server.wait_for_termination()


def serve(config: CoordinatorConfig, *, consortium: Consortium | None = None,
          interceptors: Sequence[grpc.ServerInterceptor] = ()) -> RunningCoordinator:
    """Start serving `config.listen`; `consortium` overrides the file named in the config.
    `interceptors` see every call (the tests record each message the coordinator handles)."""
    if consortium is None:
        from teenet.config import load_consortium

        loaded = load_consortium(config.consortium)
        if loaded.coordinator_name != config.name:
            raise InputError(f"the consortium file names the coordinator '{loaded.coordinator_name}', "
                             f"this config says '{config.name}'", source=config.source or None, field="name")
        consortium = loaded
    # A new state folder is private (it may hold the audit key); an existing one is the
    # operator's, and the key folder check below says if it is not private enough.
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    protection = config.key_protection.resolve()
    # The key first: its folder is made 0700 before the database's files can appear in it.
    audit_key = load_audit_key(config.audit_key, protection=protection)
    pinned = consortium.coordinator_audit_key
    if pinned is not None and pinned.public_bytes_raw() != audit_key.public_key().public_bytes_raw():
        # The members witness the log under the consortium's key: a log under another one
        # would never be witnessed, and would look like a coordinator hiding its log.
        raise InputError("the consortium file's coordinator.audit_key is not this coordinator's audit key "
                         f"({config.audit_key})", source=consortium.source or None, field="coordinator.audit_key")
    tls = replace(config.tls, protection=protection)
    tls.read()  # a TLS key readable by others, or one that does not decrypt, stops the start here
    store = CoordinatorStore(config.database)
    try:
        audit = AuditLog(store.conn, audit_key, checkpoint_every=config.checkpoint_every, lock=store.lock)
        coordinator = Coordinator(store, audit, consortium, max_result_bytes=config.max_result_bytes,
                                  compute_silence=config.compute_silence)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="coordinator"),
                             options=COORDINATOR_GRPC_OPTIONS, interceptors=list(interceptors))
        board = CheckpointBoard(store.conn, store.lock, {n: m.keys.signing for n, m in consortium.members.items()
                                                         if m.role in ("data", "compute")})
        rpc.add_CoordinatorServicer_to_server(CoordinatorService(coordinator, board=board), server)
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        try:
            port = server.add_secure_port(config.listen, server_credentials(tls))
        except RuntimeError:
            port = 0
        if port == 0:
            raise InputError(f"cannot listen on {config.listen} (address in use or not local?)",
                             source=config.source or None, field="listen")
        server.start()
    except BaseException:
        store.close()
        raise
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("coordinator '%s' serving on %s (port %d), database %s, audit key %s", config.name,
             config.listen, port, config.database,
             audit.public_key.public_bytes_raw().hex()[:16] + "…")
    stop_sweeping = threading.Event()
    sweeper = threading.Thread(target=_sweep_silent_compute, args=(coordinator, stop_sweeping),
                               name="compute-heartbeat", daemon=True)
    sweeper.start()
    # The coordinator's own log heads go on its board like a member's (teenet/witness.py).
    board.register(config.name, audit_key.public_key())
    threading.Thread(target=_publish_own_log, args=(audit, config.name, board, stop_sweeping),
                     name="publish-log", daemon=True).start()
    running = RunningCoordinator(server, port, coordinator, health_servicer, sweeper, _stop_sweeping=stop_sweeping)
    if config.console is not None:
        from teenet.console.server import start_coordinator_console

        try:
            running.console = start_coordinator_console(config.console, coordinator)
        except BaseException:
            running.stop(grace=0)
            raise
    return running


def _publish_own_log(audit: AuditLog, name: str, board: CheckpointBoard, stop: threading.Event) -> None:
    """Sign a new head of the coordinator's log when it grew and publish it, every few seconds."""
    while not stop.wait(PUBLISH_EVERY):
        try:
            latest = audit.latest_checkpoint()
            if audit.entries(after=latest.seq if latest else 0, limit=1):
                audit.checkpoint()
            publish(audit, name, board)
        except Exception as exc:  # a locked or closing store: try again next round
            if not stop.is_set():
                log.warning("publishing the audit log's head failed (%s: %s); retrying", type(exc).__name__, exc)


def _sweep_silent_compute(coordinator: Coordinator, stop: threading.Event) -> None:
    """Fail the jobs of compute nodes that stopped polling, checked a few times per bound."""
    every = max(0.2, min(5.0, coordinator.compute_silence / 4))
    while not stop.wait(every):
        try:
            for job_id in coordinator.fail_silent_compute_jobs():
                log.warning("job %s failed: its compute node stopped heart-beating", job_id[:16])
        except Exception as exc:  # a locked or closing store: try again next round
            if not stop.is_set():
                log.warning("compute heartbeat check failed (%s: %s); retrying", type(exc).__name__, exc)


def run_until_signalled(config: CoordinatorConfig, *, ready: Any = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully. `ready(port)` is called once up."""
    use_log_format(config.log_format)
    running = serve(config)
    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("coordinator: %s received; shutting down", signal.Signals(signum).name)
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if ready is not None:
            ready(running.port)
        while not done.wait(1.0):
            pass
    finally:
        running.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
