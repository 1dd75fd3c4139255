"""Receiving one sealed table inside a compute enclave: the single compute node's
UploadTable and a cluster worker's upload service both call `receive_sealed_table`.

The key envelope is opened with the job's per-job session only after the data enclave's
evidence verified against the owners' data policy; the whole sealed stream must verify
(teenet.sealing) before any row is used; the columns must be exactly those the job
approved; the owner's fingerprint must come as the stream's last message and match the
chunks opened (teenet.lineage). Refusals raise TeenetError naming the check; a stream that
breaks mid-way raises grpc.RpcError. The callers audit and answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import pyarrow as pa

from teenet.errors import TeenetError, VerificationError
from teenet.lineage import Fingerprinter, check_fingerprint
from teenet.negotiation import KeyEnvelope
from teenet.proto import teenet_pb2 as pb
from teenet.sealing import SealedTableReader, StreamBinding


@dataclass(frozen=True)
class Received:
    table: pa.Table
    claims: Any          # the data enclave's verified claims
    root: bytes          # the stream's fingerprint (RFC 9162 root over its chunks)
    sealed_bytes: int
    fingerprint: Any     # the owner's LineageFingerprint message (its shipped record, teenet.lineage)


def envelope_of(k: pb.KeyEnvelope) -> KeyEnvelope:
    return KeyEnvelope(k.job_id, k.party, k.table, k.sealed_key, k.evidence, k.signing_public_key, k.signature)


def receive_sealed_table(*, session, k: pb.KeyEnvelope, request_iterator: Iterator[pb.UploadMessage],
                         expected_columns: Sequence[str], data_policy, roots) -> Received:
    """Open, verify and read one sealed table whose key envelope `k` came first on the
    stream; `k.table` is the name the envelope and the stream are bound to."""
    key, claims = session.open_key_envelope(envelope_of(k), expected_party=k.party, expected_table=k.table,
                                            data_policy=data_policy, roots=roots)
    sealed_bytes = [0]
    claimed: list[pb.LineageFingerprint] = []

    def parts() -> Iterator[bytes]:
        for msg in request_iterator:
            which = msg.WhichOneof("part")
            if which == "fingerprint":  # after the last chunk: the stream's end
                claimed.append(msg.fingerprint)
                return
            if which not in ("header", "chunk"):
                raise TeenetError("a key envelope may only come first")
            data = msg.header if which == "header" else msg.chunk
            sealed_bytes[0] += len(data)
            yield data

    computed = Fingerprinter()
    reader = SealedTableReader(key, StreamBinding(bytes.fromhex(k.job_id), k.party, k.table),
                               on_chunk=computed.add_chunk)
    table = reader.read_table(parts())
    expected = list(expected_columns)
    if table.column_names != expected:
        raise VerificationError("input.columns", f"{k.party}/{k.table} arrived with columns "
                                f"{table.column_names}, the job approved {expected}")
    if not claimed or next(request_iterator, None) is not None:
        raise VerificationError("input.fingerprint", f"{k.party}/{k.table} arrived without its "
                                "fingerprint as the stream's last message")
    root = check_fingerprint(table_key=key.secret_bytes(), header=reader.header, computed=computed,
                             claimed_root=claimed[0].root, claimed_chunks=claimed[0].chunks,
                             mac=claimed[0].mac)
    return Received(table, claims, root, sealed_bytes[0], claimed[0])
