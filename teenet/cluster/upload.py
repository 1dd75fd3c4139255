"""A worker's upload service: Compute.UploadTable over TLS, for the partitions it holds.

The server certificate is the worker's own cluster certificate (from the leader's cluster
CA, carrying its RA-TLS evidence); data nodes pin it by the SHA-256 the leader signed into
the offer. Clients must present a consortium certificate (the consortium CA reaches the
worker with each job, from the leader) and may upload only their own tables. An upload
is taken only for a job this worker holds a session for, for this worker's partition
(`<table>#<i>/<N>`), and is read exactly as a single compute node reads a table
(node/cluster_ingress.py); then every row's key must hash into this partition.

A partition is kept only once its whole stream verified: an upload that breaks part-way
leaves nothing (no rows, no arrival), so the owner's retry is taken as a first upload. A
partition already received is refused (ALREADY_EXISTS), never replaced or counted twice,
even when two uploads of it race.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Iterator

import grpc

from teenet.errors import TeenetError, VerificationError
from teenet.pki import GRPC_OPTIONS, peer_name
from teenet.proto import teenet_pb2 as pb
from teenet.proto import teenet_pb2_grpc as rpc
from teenet.reasons import check_of

log = logging.getLogger("teenet.cluster.upload")


class UploadService(rpc.ComputeServicer):
    def __init__(self, cert_pem: bytes, key_pem: bytes, initial_roots: bytes, host: str, port: int = 0) -> None:
        self._pair = (key_pem, cert_pem)
        self._roots = initial_roots
        self._fresh = False
        self._lock = threading.Lock()
        creds = grpc.dynamic_ssl_server_credentials(self._config(), self._fetch, require_client_authentication=True)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=GRPC_OPTIONS)
        rpc.add_ComputeServicer_to_server(self, self.server)
        bound = self.server.add_secure_port(f"{host}:{port}", creds)
        if not bound:
            raise TeenetError(f"the upload service cannot listen on {host}:{port}")
        self.endpoint = f"{host}:{bound}"

    def _config(self):
        return grpc.ssl_server_certificate_configuration([self._pair], root_certificates=self._roots)

    def _fetch(self):
        with self._lock:
            if not self._fresh:
                return None
            self._fresh = False
            return self._config()

    def trust(self, consortium_ca: bytes) -> None:
        """Client certificates must come from this consortium CA (from the leader, per job)."""
        with self._lock:
            if consortium_ca != self._roots:
                self._roots = consortium_ca
                self._fresh = True

    def start(self) -> "UploadService":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=2)

    def UploadTable(self, request_iterator: Iterator[pb.UploadMessage], context: grpc.ServicerContext) -> pb.UploadReply:
        from teenet.cluster import jobs
        from teenet.cluster.partition import check_partition, parse_partition_table_name
        from teenet.node.cluster_ingress import receive_sealed_table

        caller = peer_name(context)
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "key":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an upload must start with the key envelope")
        k = first.key
        state = jobs.job(k.job_id)
        if state is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "cluster.session: this worker holds no session for that job")
        if caller != k.party:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"'{caller}' may not upload a table of '{k.party}'")
        try:
            table, index, parts = parse_partition_table_name(k.table)
        except TeenetError:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "cluster.partition: a worker takes partitions "
                          "(<table>#<i>/<N>) only")
        if (index, parts) != (state.partition, state.partitions):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"cluster.partition: this worker holds partition "
                          f"{state.partition} of {state.partitions}, not {index} of {parts}")
        if (k.party, table) not in state.inputs:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"input.not_input: {k.party}/{table} is not an "
                          "input of this job")
        if (k.party, table) in state.tables:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{k.party}/{k.table} was already received")
        keys, columns = state.inputs[(k.party, table)]
        ctx = jobs._context()
        try:
            got = receive_sealed_table(session=state.session, k=k, request_iterator=request_iterator,
                                       expected_columns=columns, data_policy=state.data_policy, roots=ctx.roots)
            check_partition(got.table, keys, state.normalise, state.partition_key, parts, index,
                            where=f"{k.party}/{table}")
        except TeenetError as exc:
            detail = str(exc) if isinstance(exc, VerificationError) else f"{check_of(exc)}: {exc}"
            log.warning("job %s: refused %s/%s: %s", k.job_id[:16], k.party, k.table, check_of(exc))
            context.abort(grpc.StatusCode.PERMISSION_DENIED, detail)
        except grpc.RpcError:
            log.warning("job %s: upload of %s/%s broke before its last chunk", k.job_id[:16], k.party, k.table)
            context.abort(grpc.StatusCode.CANCELLED, "upload stream broke before its last chunk")
        shipped = pb.LineageFingerprint()
        shipped.CopyFrom(got.fingerprint)
        for name in ("root", "chunks", "mac"):  # this partition's own: checked above; the rest is the table's
            shipped.ClearField(name)
        outcome = jobs.register(k.job_id, k.party, table, got.table, got.table.num_rows, got.root,
                                shipped.SerializeToString(deterministic=True))
        if outcome == "already":  # two uploads of one partition at once: the first one whole is kept
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{k.party}/{k.table} was already received")
        if outcome != "registered":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "cluster.session: the job ended on this worker while the partition arrived")
        log.info("job %s: partition %d/%d of %s/%s received", k.job_id[:16], index, parts, k.party, table)
        return pb.UploadReply(job_id=k.job_id, party=k.party, table=k.table, rows=got.table.num_rows,
                              sealed_bytes=got.sealed_bytes)
