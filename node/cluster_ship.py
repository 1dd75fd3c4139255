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
from teenet.errors import TeenetError
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


def ship_partitions(role, job_id: str, spec, inp, columns: list[str], session, vcluster) -> Shipped | None:
    """Ship `inp` partitioned to the cluster's workers; None if it failed (reason reported)."""
    rt = role.rt
    cluster = vcluster.cluster
    n = cluster.partitions
    norm = job_normalisation(spec.params)
    keys = list(inp.keys)
    queues = [queue.Queue(maxsize=QUEUE_BATCHES) for _ in range(n)]
    abort = threading.Event()
    read_error: list[TeenetError] = []
    rows = [0] * n
    table_keys = [TableKey.generate() for _ in range(n)]
    fingerprints = [Fingerprinter() for _ in range(n)]
    schema: list[pa.Schema] = []
    have_schema = threading.Event()
    shipped: list[dict] = []

    def record() -> None:
        # Once every partition is sealed: `shipped` in this node's audit with the clustered
        # fingerprint (docs/format.md), and its signed record in every partition's last message.
        if not read_error:
            root = clustered_root([f.root() for f in fingerprints])
            shipped.append(record_shipped(rt, job_id, inp.table, root,
                                          rounded_rows(sum(rows), owner_min_group_size(rt, job_id))))

    sealed = threading.Barrier(n, action=record)

    def put(i: int, item) -> bool:
        while not abort.is_set():
            try:
                queues[i].put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        at = 0
        try:
            for batch in rt.catalog.batches(inp.table, columns):
                if not schema:
                    schema.append(batch.schema)
                    have_schema.set()
                where = partition_rows(batch, keys, norm, vcluster.partition_key, n, first_row=at,
                                       where=f"{rt.name}/{inp.table}")
                at += batch.num_rows
                for i in range(n):
                    part = batch.filter(pa.array(where == i))
                    rows[i] += part.num_rows
                    if not put(i, part):
                        return
        except TeenetError as exc:
            read_error.append(exc)
        finally:
            have_schema.set()
            for i in range(n):
                put(i, _END)

    def messages(i: int) -> Iterator[pb.UploadMessage]:
        worker = cluster.workers[i]
        name = partition_table_name(inp.table, i, n)
        envelope = session.seal_table_key(vcluster.workers[i], rt.name, name, table_keys[i])
        yield pb.UploadMessage(key=pb.KeyEnvelope(
            job_id=envelope.job_id, party=envelope.party, table=envelope.table, sealed_key=envelope.sealed_key,
            evidence=envelope.evidence, signing_public_key=envelope.signing_public_key,
            signature=envelope.signature))
        have_schema.wait()
        if not schema:
            return  # nothing readable: the stream ends unfinished and the worker refuses it
        writer = SealedTableWriter(table_keys[i], StreamBinding(bytes.fromhex(job_id), rt.name, name), schema[0],
                                   on_chunk=fingerprints[i].add_chunk)
        header = writer.header()
        yield pb.UploadMessage(header=header)

        def batches() -> Iterator[pa.RecordBatch]:
            while True:
                item = queues[i].get()
                if item is _END:
                    return
                yield item

        for msg in writer.seal_batches(batches()):
            yield pb.UploadMessage(chunk=msg)
        try:
            sealed.wait()
        except threading.BrokenBarrierError:
            return  # another partition failed: this stream ends unfinished and is refused
        if read_error or not shipped:
            return  # without its fingerprint the stream is refused; the read error is reported below
        fp = fingerprints[i]
        yield pb.UploadMessage(fingerprint=pb.LineageFingerprint(
            root=fp.root(), chunks=fp.chunks, mac=fingerprint_mac(table_keys[i].secret_bytes(), header, fp.root(),
                                                                 fp.chunks), **shipped_fields(shipped[0])))
        log.debug("job %s: partition %d of %s sealed for %s", job_id[:16], i, inp.table, worker.name)

    replies: list = [None] * n
    errors: list = [None] * n

    def upload(i: int) -> None:
        channel = worker_channel(rt, cluster.workers[i])
        try:
            replies[i] = rpc.ComputeStub(channel).UploadTable(messages(i), timeout=3600)
        except grpc.RpcError as exc:
            errors[i] = exc
            abort.set()
            sealed.abort()
        finally:
            channel.close()

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
    failed = next((i for i, e in enumerate(errors) if e is not None), None)
    if failed is not None:
        exc, worker = errors[failed], cluster.workers[failed].name
        details = " ".join((exc.details() or "").split())[:200]
        if exc.code() == grpc.StatusCode.PERMISSION_DENIED or exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            reason = Reason("upload.refused", check_named_in(details), party=rt.name, table=inp.table)
        else:
            reason = Reason("input.unshippable", transport_check(exc.code().name, details), party=rt.name,
                            table=inp.table, field=worker)
        _failed(role, job_id, inp.table, reason, f"worker {worker} did not take partition {failed} of "
                f"{rt.name}/{inp.table}: {exc.code().name} {details}")
        return None
    return Shipped(sum(rows), sum(r.sealed_bytes for r in replies), clustered_root([f.root() for f in fingerprints]))


def _failed(role, job_id: str, table: str, reason: Reason, detail: str) -> None:
    """Only `reason` leaves; `detail` stays in this node's log and audit."""
    rt = role.rt
    log.warning("job %s: %s (%s)", job_id[:16], reason.text(), detail)
    rt.store.set_status(job_id, "failed", detail)
    rt.audit("upload_failed", job_id=job_id, table=table, reason=reason.text(), detail=detail)
    role._report(job_id, "failed", reason.text())
