"""A worker's per-job state, and the tasks the leader pins to the worker (Dask, pure=False).

The leader calls these functions with `client.submit(fn, ..., workers=[address])`; they run
in the worker process, on state kept here, keyed by job id:

- `open_job`: make this worker's own per-job ComputeEnclaveSession (fresh HPKE and signing
  keys, evidence from the worker's own attester binding the job and both keys, exactly as
  the leader's offer), remember the partition it holds, the partition key, the job's
  inputs and the owners' data policy; answer the public half for the offer.
- `wait_arrivals`: block (seceded from Dask's thread pool) until a partition more than the
  leader knows of has arrived, or a short timeout; answer (party, table, rows, root) only.
- `partition_table`: the opened partition of one input, for `models.cluster` tasks; it
  resolves on this worker and never leaves the cluster's workers.
- `drop_job`: drop the job's partitions and keys.

Arguments and results travel over the cluster's mutual TLS among attested peers only
(docs/threat-model.md); nothing here is reachable from outside the cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from teenet.errors import TeenetError, VerificationError

log = logging.getLogger("teenet.cluster.jobs")
MAX_WAIT = 5.0


@dataclass
class WorkerContext:
    """What the worker process is: set once by teenet.cluster.worker after admission."""

    name: str
    attester: Any
    roots: Any
    certificate_der: bytes
    upload: Any = None  # teenet.cluster.upload.UploadService


@dataclass
class WorkerJob:
    job_id: str
    session: Any  # teenet.negotiation.ComputeEnclaveSession
    partition: int
    partitions: int
    partition_key: bytes
    normalise: Any  # teenet.models.tables.KeyNormalisation
    inputs: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]]  # (party, table) -> (keys, columns)
    data_policy: Any
    tables: dict[tuple[str, str], Any] = field(default_factory=dict)
    arrivals: list[dict[str, Any]] = field(default_factory=list)


CONTEXT: WorkerContext | None = None
_JOBS: dict[str, WorkerJob] = {}
_DONE: set[str] = set()  # jobs this worker made keys for once: never again
_CHANGED = threading.Condition()


def set_context(context: WorkerContext) -> None:
    global CONTEXT
    CONTEXT = context


def _context() -> WorkerContext:
    if CONTEXT is None:
        raise TeenetError("this process is not an admitted compute-worker")
    return CONTEXT


def job(job_id: str) -> WorkerJob | None:
    with _CHANGED:
        return _JOBS.get(job_id)


def open_job(job_id: str, partition: int, partitions: int, partition_key: bytes, normalise: Any,
             inputs: Sequence[tuple[str, str, Sequence[str], Sequence[str]]], data_policy: Any,
             consortium_ca: bytes, suite: str) -> dict[str, Any]:
    """Make this worker's per-job keys and evidence; answer the public half for the offer."""
    from teenet.negotiation import ComputeEnclaveSession, HpkeSuite

    ctx = _context()
    with _CHANGED:
        if job_id in _JOBS or job_id in _DONE:
            raise VerificationError("cluster.session", "this worker already made keys for this job")
        _DONE.add(job_id)
    session = ComputeEnclaveSession(bytes.fromhex(job_id), ctx.attester, HpkeSuite(suite))
    ctx.upload.trust(consortium_ca)
    state = WorkerJob(job_id, session, int(partition), int(partitions), bytes(partition_key), normalise,
                      {(p, t): (tuple(k), tuple(c)) for p, t, k, c in inputs}, data_policy)
    with _CHANGED:
        _JOBS[job_id] = state
    log.info("job %s: worker %s holds partition %d of %d (per-job keys made)", job_id[:16], ctx.name,
             partition, partitions)
    return {"name": ctx.name, "endpoint": ctx.upload.endpoint, "hpke_public_key": session.hpke_public_key,
            "signing_public_key": session.signing_public_key, "evidence": session.evidence.to_bytes(),
            "certificate": ctx.certificate_der}


def register(job_id: str, party: str, table: str, data: Any, rows: int, root: bytes, shipped: bytes = b"") -> str:
    """A verified partition arrived: "registered"; "dropped" if the job was dropped meanwhile,
    "already" if another upload of it registered first (nothing kept in either case). A
    partition is registered once and never replaced: only a stream verified whole gets here,
    so an upload that broke part-way left nothing and its retry is taken."""
    with _CHANGED:
        state = _JOBS.get(job_id)
        if state is None:
            return "dropped"
        if (party, table) in state.tables:
            return "already"
        state.tables[(party, table)] = data
        # `shipped`: the owner's LineageFingerprint message, whose signed shipped record names
        # the clustered fingerprint; the leader verifies it once every partition is in.
        state.arrivals.append({"party": party, "table": table, "rows": int(rows), "root": root.hex(),
                               "shipped": bytes(shipped)})
        _CHANGED.notify_all()
    return "registered"


def wait_arrivals(job_id: str, known: int, timeout: float = 1.0) -> list[dict[str, Any]]:
    """Every arrival of the job once there are more than `known`, or after `timeout`."""
    try:
        from distributed import secede

        secede()  # do not hold the worker's one task thread while waiting
    except (ImportError, ValueError):
        pass
    deadline = time.monotonic() + min(float(timeout), MAX_WAIT)
    with _CHANGED:
        while True:
            state = _JOBS.get(job_id)
            if state is None:
                raise VerificationError("cluster.session", "this worker holds no session for that job")
            left = deadline - time.monotonic()
            if len(state.arrivals) > known or left <= 0:
                return list(state.arrivals)
            _CHANGED.wait(left)


def partition_table(job_id: str, party: str, table: str) -> Any:
    """The opened partition (pyarrow.Table) of party/table on this worker."""
    with _CHANGED:
        state = _JOBS.get(job_id)
        if state is None or (party, table) not in state.tables:
            raise VerificationError("cluster.session", f"this worker holds no partition of {party}/{table} "
                                    "for that job")
        return state.tables[(party, table)]


def drop_job(job_id: str) -> bool:
    """Drop the job's partitions and per-job keys; True if this worker held any."""
    with _CHANGED:
        state = _JOBS.pop(job_id, None)
        _CHANGED.notify_all()
    if state is None:
        return False
    state.tables.clear()
    state.session._hpke_private = None
    state.session._signing = None
    state.partition_key = b""
    log.info("job %s: partitions and keys dropped on this worker", job_id[:16])
    return True


def held_jobs() -> list[str]:
    with _CHANGED:
        return sorted(_JOBS)
