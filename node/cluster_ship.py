"""A data node's partitioned ingress into a compute cluster (docs/deploy-cluster.md).

After the leader's offer, its signature over the cluster part and every worker's evidence
verified (teenet.negotiation.verify_cluster_offer) and the partition key opened, the table
is read once, batch by batch; each batch is split by the keyed hash of its normalised join
key (teenet.cluster.partition) and each slice is queued (bounded) to the stream of its
partition. Each partition is its own sealed table in today's format, under its own fresh
table key sealed to that worker's per-job key, bound to `<table>#<i>/<N>`, with its own
fingerprint, streamed straight to the worker named in the signed offer over TLS pinned to
the certificate whose hash the leader signed. Partitions stream in parallel (one thread
each); at most QUEUE_BATCHES batches per partition wait in memory.

A partition whose stream breaks is sent again on its own, with the single compute node's
retry policy (node/data_role.py, `upload_retry_delay`): a read of the table of its own,
batch by batch (so no partition is ever held whole for a retry), a fresh table key and
fresh sealing, over a fresh connection. Its fingerprint must come out as it did the first
time it was sealed; `shipped` is written once. A refusal is never retried.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Iterator

import grpc
import pyarrow as pa

from teenet.cluster.partition import clustered_root, job_normalisation, partition_rows, partition_table_name
from teenet.errors import TeenetError, VerificationError
from teenet.lineage import (Fingerprinter, fingerprint_mac, owner_min_group_size, record_shipped, rounded_rows,
                            shipped_fields)
from teenet.pki import GRPC_OPTIONS
from teenet.proto import teenet_pb2 as pb
from teenet.proto import teenet_pb2_grpc as rpc
from teenet.reasons import Reason, check_named_in, transport_check
from teenet.sealing import SealedTableWriter, StreamBinding, TableKey

log = logging.getLogger("teenet.node.cluster_ship")
QUEUE_BATCHES = 4
_END = object()


@dataclass(frozen=True)
class Shipped:
    rows: int
    sealed_bytes: int
    root: bytes  # the clustered fingerprint: RFC 9162 root over the partition roots


def worker_channel(rt, worker) -> grpc.Channel:
    """Mutual TLS to one worker of the signed offer: its certificate is the only root (so only
    the certificate whose SHA-256 the leader signed is accepted), this node's consortium
    certificate is the client's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    _, cert, key = rt.tls.read()
    pinned = x509.load_der_x509_certificate(worker.certificate).public_bytes(serialization.Encoding.PEM)
    creds = grpc.ssl_channel_credentials(root_certificates=pinned, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(worker.endpoint, creds,
                               options=GRPC_OPTIONS + [("grpc.ssl_target_name_override", worker.name)])


class _Cancelled(Exception):
    """Raised into an attempt's sealing once its call is over, so the sealer stops without
    ending the stream as if the table were complete."""


class _Attempt:
    """One upload of one partition: its own table key and sealing, its own fingerprint."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.key = TableKey.generate()  # fresh for every attempt: a key (and its nonces) is used once
        self.fingerprint = Fingerprinter()
        self.rows = 0
        self.sealed_bytes = 0
        self.sent_all = False  # every message, the fingerprint last, went to gRPC
        self.over = threading.Event()  # the call ended: stop sealing


def ship_partitions(role, job_id: str, spec, inp, columns: list[str], session, vcluster) -> Shipped | None:
    """Ship `inp` partitioned to the cluster's workers; None if it failed (reason reported).

    A partition whose stream breaks (UNAVAILABLE, DEADLINE_EXCEEDED) is sent again, alone, by
    the single compute node's policy (node/data_role.py: MAX_UPLOAD_ATTEMPTS, backoff from
    UPLOAD_RETRY_DELAY): the table is read again for that partition only (placement is
    deterministic, so the rows and the fingerprint are the same; a different root fails
    closed), under a fresh table key. A refusal is never retried. `shipped` is written once,
    when every partition has been sealed once."""
    from teenet.node.data_role import MAX_UPLOAD_ATTEMPTS, upload_retry_delay  # data_role imports this module

    rt = role.rt
    cluster = vcluster.cluster
    n = cluster.partitions
    norm = job_normalisation(spec.params)
    keys = list(inp.keys)
    where_of = f"{rt.name}/{inp.table}"
    queues = [queue.Queue(maxsize=QUEUE_BATCHES) for _ in range(n)]
    abort = threading.Event()
    detached = [threading.Event() for _ in range(n)]  # the first read no longer feeds partition i
    read_error: list[TeenetError] = []
    schema: list[pa.Schema] = []
    have_schema = threading.Event()
    changed = threading.Condition()
    roots: list[bytes | None] = [None] * n  # each partition's fingerprint, from its first sealing
    rows = [0] * n
    shipped: list[dict] = []
    cause: list[tuple[int, grpc.RpcError, int]] = []  # the first failure: (partition, error, attempts)

    def placed() -> Iterator[tuple[pa.RecordBatch, object]]:
        at = 0
        for batch in rt.catalog.batches(inp.table, columns):
            where = partition_rows(batch, keys, norm, vcluster.partition_key, n, first_row=at, where=where_of)
            at += batch.num_rows
            yield batch, where

    def put(i: int, item) -> None:
        while not abort.is_set() and not detached[i].is_set():
            try:
                queues[i].put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def read() -> None:
        try:
            for batch, where in placed():
                if not schema:
                    schema.append(batch.schema)
                    have_schema.set()
                for i in range(n):
                    put(i, batch.filter(pa.array(where == i)))
                if abort.is_set():
                    return
        except TeenetError as exc:
            read_error.append(exc)
            abort.set()
        finally:
            have_schema.set()
            for i in range(n):
                put(i, _END)

    def queued(i: int, attempt: _Attempt) -> Iterator[pa.RecordBatch]:
        """Partition i's slices of the one shared read (its first attempt)."""
        while True:
            try:
                item = queues[i].get(timeout=0.2)
            except queue.Empty:
                if attempt.over.is_set() or abort.is_set():
                    raise _Cancelled()
                continue
            if item is _END:
                return
            yield item

    def reread(i: int, attempt: _Attempt) -> Iterator[pa.RecordBatch]:
        """Partition i's slices of a read of its own (a retry): batch by batch, as the first."""
        for batch, where in placed():
            if attempt.over.is_set() or abort.is_set():
                raise _Cancelled()
            yield batch.filter(pa.array(where == i))

    def sealed(i: int, attempt: _Attempt) -> bool:
        """Partition i is sealed: once every partition is, `shipped` in this node's audit with the
        clustered fingerprint (docs/format.md), once; its signed record goes in every
        partition's last message. False if the stream must end unfinished."""
        root = attempt.fingerprint.root()
        with changed:
            if roots[i] is None:
                roots[i], rows[i] = root, attempt.rows
            elif (roots[i], rows[i]) != (root, attempt.rows):
                read_error.append(VerificationError("input.fingerprint", f"{where_of} changed while it was "
                                                    f"shipped: partition {i} read again does not have the "
                                                    "fingerprint it had"))
                abort.set()
            if not shipped and not read_error and all(r is not None for r in roots):
                shipped.append(record_shipped(rt, job_id, inp.table, clustered_root(roots),  # type: ignore[arg-type]
                                              rounded_rows(sum(rows), owner_min_group_size(rt, job_id))))
            changed.notify_all()
            while not shipped and not abort.is_set() and not attempt.over.is_set():
                changed.wait(0.2)
            return bool(shipped) and not read_error and not abort.is_set()

    def messages(i: int, attempt: _Attempt) -> Iterator[pb.UploadMessage]:
        worker = cluster.workers[i]
        name = partition_table_name(inp.table, i, n)
        envelope = session.seal_table_key(vcluster.workers[i], rt.name, name, attempt.key)
        yield pb.UploadMessage(key=pb.KeyEnvelope(
            job_id=envelope.job_id, party=envelope.party, table=envelope.table, sealed_key=envelope.sealed_key,
            evidence=envelope.evidence, signing_public_key=envelope.signing_public_key,
            signature=envelope.signature))
        have_schema.wait()
        if not schema:
            return  # nothing readable: the stream ends unfinished and the worker refuses it
        source = queued(i, attempt) if attempt.number == 1 else reread(i, attempt)

        def counted() -> Iterator[pa.RecordBatch]:
            for b in source:
                attempt.rows += b.num_rows
                yield b

        try:
            writer = SealedTableWriter(attempt.key, StreamBinding(bytes.fromhex(job_id), rt.name, name), schema[0],
                                       on_chunk=attempt.fingerprint.add_chunk)
            header = writer.header()
            attempt.sealed_bytes += len(header)
            yield pb.UploadMessage(header=header)
            for msg in writer.seal_batches(counted()):
                attempt.sealed_bytes += len(msg)
                yield pb.UploadMessage(chunk=msg)
        except _Cancelled:
            return  # the call is over (or the job failed): nothing more is sent
        except TeenetError as exc:  # the table failed on this side while re-read: reported below
            with changed:
                read_error.append(exc)
                abort.set()
                changed.notify_all()
            return
        if not sealed(i, attempt):
            return  # another partition failed: this stream ends without its fingerprint and is refused
        fp = attempt.fingerprint
        yield pb.UploadMessage(fingerprint=pb.LineageFingerprint(
            root=fp.root(), chunks=fp.chunks, mac=fingerprint_mac(attempt.key.secret_bytes(), header, fp.root(),
                                                                 fp.chunks), **shipped_fields(shipped[0])))
        attempt.sent_all = True
        log.debug("job %s: partition %d of %s sealed for %s (attempt %d)", job_id[:16], i, inp.table, worker.name,
                  attempt.number)

    sealed_bytes = [0] * n

    def fail(i: int, exc: grpc.RpcError, attempts: int) -> None:
        with changed:
            if not cause and not abort.is_set():
                cause.append((i, exc, attempts))
            abort.set()
            changed.notify_all()

    def upload(i: int) -> None:
        try:
            attempts(i)
        finally:
            if roots[i] is None or not shipped:
                with changed:  # this partition will not be sealed: nobody waits for it
                    abort.set()
                    changed.notify_all()

    def attempts(i: int) -> None:
        worker = cluster.workers[i]
        previous: _Attempt | None = None
        for number in range(1, MAX_UPLOAD_ATTEMPTS + 1):
            attempt = _Attempt(number)
            channel = worker_channel(rt, worker)  # a fresh connection for every attempt
            try:
                reply = rpc.ComputeStub(channel).UploadTable(messages(i, attempt), timeout=3600)
                sealed_bytes[i] = reply.sealed_bytes
                return
            except grpc.RpcError as exc:
                if (exc.code() == grpc.StatusCode.ALREADY_EXISTS and previous is not None and previous.sent_all
                        and roots[i] is not None):
                    # The worker took the last attempt whole (its answer was lost): it refuses the
                    # partition again, as it must, and it holds it, once.
                    log.info("job %s: worker %s already holds partition %d of %s from attempt %d", job_id[:16],
                             worker.name, i, where_of, previous.number)
                    sealed_bytes[i] = previous.sealed_bytes
                    return
                if abort.is_set():
                    return  # another partition failed first: its reason is reported
                delay = upload_retry_delay(exc.code(), number)
                if delay is None:
                    fail(i, exc, number)
                    return
                detached[i].set()  # the shared read no longer waits for this partition
                details = " ".join((exc.details() or "").split())[:200]
                log.info("job %s: upload of partition %d of %s to %s broke (%s: %s); attempt %d of %d", job_id[:16],
                         i, where_of, worker.name, exc.code().name, details, number, MAX_UPLOAD_ATTEMPTS)
                rt.audit("upload_retried", job_id=job_id, table=inp.table, partition=i, worker=worker.name,
                         attempt=number, attempts=MAX_UPLOAD_ATTEMPTS, code=exc.code().name, detail=details)
            finally:
                attempt.over.set()
                channel.close()
            previous = attempt
            if abort.wait(delay):
                return

    reader = threading.Thread(target=read, name=f"partition-read-{job_id[:8]}", daemon=True)
    uploaders = [threading.Thread(target=upload, args=(i,), name=f"partition-{i}-{job_id[:8]}", daemon=True)
                 for i in range(n)]
    reader.start()
    for t in uploaders:
        t.start()
    for t in uploaders:
        t.join()
    abort.set()
    reader.join()
    if read_error:
        _failed(role, job_id, inp.table, Reason.of("input.unreadable", read_error[0], party=rt.name, table=inp.table),
                f"{rt.name} could not read {inp.table}: {read_error[0]}")
        return None
    if cause:
        failed, exc, attempts = cause[0]
        worker = cluster.workers[failed].name
        details = " ".join((exc.details() or "").split())[:200]
        if exc.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION,
                          grpc.StatusCode.ALREADY_EXISTS):
            reason = Reason("upload.refused", check_named_in(details), party=rt.name, table=inp.table)
        else:
            reason = Reason("input.unshippable", transport_check(exc.code().name, details), party=rt.name,
                            table=inp.table, field=worker)
        tried = f"after {attempts} attempts " if attempts > 1 else ""
        _failed(role, job_id, inp.table, reason, f"worker {worker} did not take partition {failed} of "
                f"{rt.name}/{inp.table} {tried}({exc.code().name}: {details})")
        return None
    if not shipped or any(r is None for r in roots):  # never counted as shipped without every partition sealed
        failed = next((i for i, r in enumerate(roots) if r is None), 0)
        _failed(role, job_id, inp.table, Reason("input.unshippable", "transport.unknown", party=rt.name,
                                                table=inp.table, field=cluster.workers[failed].name),
                f"partition {failed} of {rt.name}/{inp.table} was not shipped")
        return None
    return Shipped(sum(rows), sum(sealed_bytes), clustered_root(roots))  # type: ignore[arg-type]


def _failed(role, job_id: str, table: str, reason: Reason, detail: str) -> None:
    """Only `reason` leaves; `detail` stays in this node's log and audit."""
    rt = role.rt
    log.warning("job %s: %s (%s)", job_id[:16], reason.text(), detail)
    rt.store.set_status(job_id, "failed", detail)
    rt.audit("upload_failed", job_id=job_id, table=table, reason=reason.text(), detail=detail)
    role._report(job_id, "failed", reason.text())
