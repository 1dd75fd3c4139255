"""The cluster part of a compute offer, to and from its proto (ComputeOffer.cluster, 70-89)."""

from __future__ import annotations

from teenet.negotiation import ClusterOffer, WorkerEntry
from teenet.proto import teenet_pb2 as pb


def cluster_to_proto(c: ClusterOffer) -> pb.ClusterOffer:
    return pb.ClusterOffer(
        workers=[pb.WorkerOffer(name=w.name, partition=w.partition, endpoint=w.endpoint,
                                hpke_public_key=w.hpke_public_key, signing_public_key=w.signing_public_key,
                                evidence=w.evidence, certificate_sha256=w.certificate_sha256,
                                certificate=w.certificate) for w in c.workers],
        partitions=c.partitions,
        partition_keys=[pb.ClusterPartitionKey(party=p, sealed_key=k) for p, k in c.partition_keys],
        signature=c.signature)


def cluster_from_proto(offer: pb.ComputeOffer) -> ClusterOffer | None:
    """The offer's cluster part, or None for a single compute node's offer."""
    if not offer.HasField("cluster"):
        return None
    c = offer.cluster
    return ClusterOffer(
        workers=tuple(WorkerEntry(w.name, int(w.partition), w.endpoint, bytes(w.hpke_public_key),
                                  bytes(w.signing_public_key), bytes(w.evidence), bytes(w.certificate_sha256),
                                  bytes(w.certificate)) for w in c.workers),
        partitions=int(c.partitions),
        partition_keys=tuple((k.party, bytes(k.sealed_key)) for k in c.partition_keys),
        signature=bytes(c.signature))
