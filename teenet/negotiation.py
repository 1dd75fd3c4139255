"""Key negotiation among attested enclaves, for one job.

The compute enclave makes fresh per-job keys (an HPKE key pair and an Ed25519 signing key)
and evidence whose report_data binds both to the job digest (`ComputeEnclaveSession`).
A data node's enclave verifies that evidence against its owner's policy
(`verify_compute_offer`), makes its own fresh signing key and evidence, HPKE-seals a fresh
table key to the compute enclave with `info` bound to the job, party and table, and signs
the whole envelope with its attested key (`DataEnclaveSession.seal_table_key`). The compute
enclave verifies the data enclave's evidence and signature before it opens the key
(`ComputeEnclaveSession.open_key_envelope`). Keys are thus negotiated only between enclaves
that attested to each other, for one job; either refusing stops the exchange.

Byte strings signed or bound here (lp(x) = 4-byte big-endian length || x):
  hpke info       = "teenet/table-key/v1" 0x00 || job_digest || lp(party) || lp(table)
  envelope signed = "teenet/key-envelope/v1" 0x00 || job_digest || lp(party) || lp(table)
                    || lp(sealed_key) || lp(compute_hpke_public_key) || lp(compute_signing_public_key)

A compute cluster's offer (docs/deploy-cluster.md) adds a `ClusterOffer`: every worker
with its own per-job keys and evidence (bound exactly as the leader's), its upload
service's endpoint and pinned certificate hash, the partition count and the job's
partition key HPKE-sealed to each input owner; the leader signs it with its per-job key:
  cluster signed  = "teenet/cluster-offer/v1" 0x00 || job_digest || lp(compute)
                    || lp(leader_hpke_public_key) || lp(leader_signing_public_key) || u32(partitions)
                    || u32(#workers) || per worker: lp(name) || u32(partition) || lp(endpoint)
                       || lp(hpke_public_key) || lp(signing_public_key) || lp(evidence) || lp(certificate_sha256)
                    || u32(#keys) || per key: lp(party) || lp(sealed_key)
  partition info  = "teenet/partition-key/v1" 0x00 || job_digest || lp(party) || lp(compute)
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass
from typing import Mapping, Sequence

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519

from teenet.attestation.binding import report_data_for
from teenet.attestation.evidence import Attester, Claims, Evidence, TrustRoots
from teenet.attestation.policy import Policy
from teenet.attestation.verifier import verify_evidence
from teenet.canonical import domain_message
from teenet.errors import InputError, NegotiationError, TeenetError
from teenet.identity import ed25519_public_from_raw, verify_ed25519
from teenet.sealing import TableKey

MAX_EVIDENCE_BYTES = 64 * 1024


class HpkeSuite(str, enum.Enum):
    """The HPKE suites a compute enclave may offer (RFC 9180)."""

    X25519 = "X25519-HKDF-SHA256-AES-256-GCM"
    MLKEM768_X25519 = "MLKEM768-X25519-HKDF-SHA256-AES-256-GCM"

    def suite(self) -> hpke.Suite:
        kem = hpke.KEM.X25519 if self is HpkeSuite.X25519 else hpke.KEM.MLKEM768_X25519
        return hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)

    @classmethod
    def parse(cls, value: str) -> "HpkeSuite":
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"unknown HPKE suite {value!r}; expected one of "
                             + ", ".join(s.value for s in cls)) from None


def lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _load_hpke_public(suite: HpkeSuite, raw: bytes) -> object:
    try:
        if suite is HpkeSuite.X25519:
            if len(raw) != 32:
                raise ValueError
            return x25519.X25519PublicKey.from_public_bytes(raw)
        if len(raw) != 1184 + 32:
            raise ValueError
        return hpke.MLKEM768X25519PublicKey(mlkem.MLKEM768PublicKey.from_public_bytes(raw[:1184]),
                                            x25519.X25519PublicKey.from_public_bytes(raw[1184:]))
    except ValueError:
        raise NegotiationError(f"compute offer: HPKE public key is not a valid {suite.value} key "
                               f"({len(raw)} bytes)") from None


def table_key_info(job_digest: bytes, party: str, table: str) -> bytes:
    return domain_message("teenet/table-key/v1", job_digest, lp(party.encode()), lp(table.encode()))


def envelope_message(job_digest: bytes, party: str, table: str, sealed_key: bytes,
                     compute_hpke_public_key: bytes, compute_signing_public_key: bytes) -> bytes:
    return domain_message("teenet/key-envelope/v1", job_digest, lp(party.encode()), lp(table.encode()),
                          lp(sealed_key), lp(compute_hpke_public_key), lp(compute_signing_public_key))


@dataclass(frozen=True)
class WorkerEntry:
    """One worker of a cluster offer (proto WorkerOffer)."""

    name: str
    partition: int
    endpoint: str
    hpke_public_key: bytes
    signing_public_key: bytes
    evidence: bytes
    certificate_sha256: bytes
    certificate: bytes  # DER


@dataclass(frozen=True)
class ClusterOffer:
    """The cluster part of a compute offer (proto ClusterOffer), signed by the leader."""

    workers: tuple[WorkerEntry, ...]
    partitions: int
    partition_keys: tuple[tuple[str, bytes], ...]  # (party, HPKE-sealed partition key)
    signature: bytes = b""


@dataclass(frozen=True)
class ComputeOffer:
    """The public half of a compute enclave's per-job keys, as relayed by the coordinator."""

    job_id: str
    compute: str
    suite: HpkeSuite
    hpke_public_key: bytes
    signing_public_key: bytes
    evidence: bytes
    endpoint: str
    cluster: ClusterOffer | None = None  # set only by a compute cluster's leader

    @property
    def job_digest(self) -> bytes:
        return bytes.fromhex(self.job_id)


@dataclass(frozen=True)
class VerifiedOffer:
    """A compute offer whose evidence verified against the owner's policy and binding."""

    offer: ComputeOffer
    claims: Claims
    hpke_public: object
    signing_public: ed25519.Ed25519PublicKey


def verify_compute_offer(offer: ComputeOffer, expected_job_digest: bytes, policy: Policy,
                         roots: TrustRoots) -> VerifiedOffer:
    """A data node's check of the compute enclave, before any key is sealed to it."""
    if offer.job_digest != expected_job_digest:
        raise NegotiationError("compute offer is for another job "
                               f"(expected {expected_job_digest.hex()[:16]}..., found {offer.job_id[:16]}...)")
    if len(offer.evidence) > MAX_EVIDENCE_BYTES:
        raise NegotiationError("compute offer: evidence is too large")
    signing_public = _signing_key(offer.signing_public_key, "compute offer")
    hpke_public = _load_hpke_public(offer.suite, offer.hpke_public_key)
    evidence = Evidence.from_bytes(offer.evidence, source="compute offer evidence")
    expected = report_data_for("compute", expected_job_digest, offer.hpke_public_key, offer.signing_public_key)
    claims = verify_evidence(evidence, roots, policy, expected)
    return VerifiedOffer(offer, claims, hpke_public, signing_public)


PARTITION_KEY_SIZE = 32
MAX_CLUSTER_WORKERS = 256
_PARTITION_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


def cluster_offer_message(offer: ComputeOffer, cluster: ClusterOffer) -> bytes:
    """The canonical bytes the leader signs (module docstring): every worker, in order,
    the partition count and every sealed partition key, bound to the job and the leader."""
    parts = [lp(offer.compute.encode()), lp(offer.hpke_public_key), lp(offer.signing_public_key),
             _u32(cluster.partitions), _u32(len(cluster.workers))]
    for w in cluster.workers:
        parts += [lp(w.name.encode()), _u32(w.partition), lp(w.endpoint.encode()), lp(w.hpke_public_key),
                  lp(w.signing_public_key), lp(w.evidence), lp(w.certificate_sha256)]
    parts.append(_u32(len(cluster.partition_keys)))
    for party, sealed in cluster.partition_keys:
        parts += [lp(party.encode()), lp(sealed)]
    return domain_message("teenet/cluster-offer/v1", offer.job_digest, *parts)


def partition_key_info(job_digest: bytes, party: str, compute: str) -> bytes:
    return domain_message("teenet/partition-key/v1", job_digest, lp(party.encode()), lp(compute.encode()))


def seal_partition_key(job_digest: bytes, party: str, compute: str, key: bytes, recipient: x25519.X25519PublicKey) -> bytes:
    """The job's partition key, HPKE-sealed to one input owner's consortium key."""
    return _PARTITION_SUITE.encrypt(key, recipient, info=partition_key_info(job_digest, party, compute))


def build_cluster_offer(session: "ComputeEnclaveSession", compute: str, workers: Sequence[WorkerEntry],
                        partition_key: bytes, owners: Mapping[str, x25519.X25519PublicKey]) -> ClusterOffer:
    """The leader's cluster part: the workers in partition order, the partition key sealed to
    every input owner's consortium key, signed with the leader's per-job key."""
    if len(partition_key) != PARTITION_KEY_SIZE:
        raise NegotiationError("a partition key is 32 bytes")
    sealed = tuple((party, seal_partition_key(session.job_digest, party, compute, partition_key, owners[party]))
                   for party in sorted(owners))
    cluster = ClusterOffer(tuple(workers), len(workers), sealed)
    leader = session.offer(compute, "")
    return ClusterOffer(cluster.workers, cluster.partitions, sealed,
                        session.sign(cluster_offer_message(leader, cluster)))


@dataclass(frozen=True)
class VerifiedCluster:
    """A cluster part whose leader signature and every worker's evidence verified."""

    cluster: ClusterOffer
    workers: tuple[VerifiedOffer, ...]  # per worker, as a compute offer, in partition order
    partition_key: bytes


def verify_cluster_offer(verified: VerifiedOffer, *, party: str, party_hpke: x25519.X25519PrivateKey,
                         policy: Policy, roots: TrustRoots) -> VerifiedCluster:
    """A data node's check of a cluster offer, after the leader's offer verified: the
    leader's signature over the cluster part, the worker list's shape, each worker's pinned
    certificate hash and each worker's evidence against the owner's own compute policy
    (bound to the job and that worker's keys); then it opens this party's partition key.
    Any failure raises VerificationError naming a `cluster.*` check (or the policy's)."""
    from teenet.errors import VerificationError

    offer = verified.offer
    cluster = offer.cluster
    if cluster is None:
        raise VerificationError("cluster.workers", "the compute offer has no cluster part")
    if not verify_ed25519(verified.signing_public, cluster.signature, cluster_offer_message(offer, cluster)):
        raise VerificationError("cluster.signature", "the cluster part of the offer is not signed by the "
                                "leader's attested per-job key")
    n = cluster.partitions
    if not 1 <= n <= MAX_CLUSTER_WORKERS or len(cluster.workers) != n:
        raise VerificationError("cluster.workers", f"the offer lists {len(cluster.workers)} worker(s) for "
                                f"{n} partition(s)")
    names = [w.name for w in cluster.workers]
    if len(set(names)) != n or [w.partition for w in cluster.workers] != list(range(n)):
        raise VerificationError("cluster.workers", "the offer's workers must have distinct names and hold "
                                "partitions 0..N-1 in order")
    keys = {w.hpke_public_key for w in cluster.workers} | {offer.hpke_public_key}
    if len(keys) != n + 1:
        raise VerificationError("cluster.workers", "two members of the cluster offer share an HPKE key")
    out = []
    for w in cluster.workers:
        if hashlib.sha256(w.certificate).digest() != w.certificate_sha256:
            raise VerificationError("cluster.certificate", f"worker '{w.name}': its certificate is not the one "
                                    "whose hash the leader signed")
        as_offer = ComputeOffer(offer.job_id, offer.compute, offer.suite, w.hpke_public_key, w.signing_public_key,
                                w.evidence, w.endpoint)
        out.append(verify_compute_offer(as_offer, offer.job_digest, policy, roots))
    sealed = dict(cluster.partition_keys)
    if party not in sealed:
        raise VerificationError("cluster.partition_key", f"the offer seals no partition key to {party}")
    try:
        key = _PARTITION_SUITE.decrypt(sealed[party], party_hpke,
                                       info=partition_key_info(offer.job_digest, party, offer.compute))
    except Exception:  # InvalidTag / ValueError: never say more
        raise VerificationError("cluster.partition_key", f"the partition key sealed to {party} does not open "
                                "with its consortium key for this job") from None
    if len(key) != PARTITION_KEY_SIZE:
        raise VerificationError("cluster.partition_key", "the partition key has the wrong length")
    return VerifiedCluster(cluster, tuple(out), key)


def _signing_key(raw: bytes, what: str) -> ed25519.Ed25519PublicKey:
    try:
        return ed25519_public_from_raw(raw, what=what)
    except (InputError, ValueError) as exc:
        raise NegotiationError(f"{what}: bad signing key: {exc}") from None


@dataclass(frozen=True)
class KeyEnvelope:
    """A table key sealed to the compute enclave, signed by the data enclave, with its evidence."""

    job_id: str
    party: str
    table: str
    sealed_key: bytes
    evidence: bytes
    signing_public_key: bytes
    signature: bytes


class DataEnclaveSession:
    """A data node enclave's per-job identity: a fresh Ed25519 key and evidence binding it."""

    def __init__(self, job_digest: bytes, attester: Attester) -> None:
        self.job_digest = job_digest
        self._signing = ed25519.Ed25519PrivateKey.generate()
        self.signing_public_key = self._signing.public_key().public_bytes_raw()
        report_data = report_data_for("data", job_digest, b"", self.signing_public_key)
        self.evidence = attester.attest(report_data)

    def seal_table_key(self, verified: VerifiedOffer, party: str, table: str, key: TableKey) -> KeyEnvelope:
        offer = verified.offer
        if offer.job_digest != self.job_digest:
            raise NegotiationError("refusing to seal a table key to an offer for another job")
        sealed = offer.suite.suite().encrypt(key.secret_bytes(), verified.hpke_public,
                                             info=table_key_info(self.job_digest, party, table))
        message = envelope_message(self.job_digest, party, table, sealed, offer.hpke_public_key,
                                   offer.signing_public_key)
        return KeyEnvelope(offer.job_id, party, table, sealed, self.evidence.to_bytes(),
                           self.signing_public_key, self._signing.sign(message))


class ComputeEnclaveSession:
    """A compute enclave's fresh per-job keys. They live in enclave memory only."""

    def __init__(self, job_digest: bytes, attester: Attester, suite: HpkeSuite = HpkeSuite.X25519) -> None:
        self.job_digest = job_digest
        self.suite = suite
        if suite is HpkeSuite.X25519:
            self._hpke_private: object = x25519.X25519PrivateKey.generate()
            self.hpke_public_key = self._hpke_private.public_key().public_bytes_raw()  # type: ignore[attr-defined]
        else:
            ml, xk = mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate()
            self._hpke_private = hpke.MLKEM768X25519PrivateKey(ml, xk)
            self.hpke_public_key = ml.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()
        self._signing = ed25519.Ed25519PrivateKey.generate()
        self.signing_public_key = self._signing.public_key().public_bytes_raw()
        report_data = report_data_for("compute", job_digest, self.hpke_public_key, self.signing_public_key)
        self.evidence = attester.attest(report_data)

    def __repr__(self) -> str:
        return f"ComputeEnclaveSession(job={self.job_digest.hex()[:16]}..., suite={self.suite.value})"

    def offer(self, compute: str, endpoint: str) -> ComputeOffer:
        return ComputeOffer(self.job_digest.hex(), compute, self.suite, self.hpke_public_key,
                            self.signing_public_key, self.evidence.to_bytes(), endpoint)

    def sign(self, message: bytes) -> bytes:
        """Sign with the attested per-job key (results, status)."""
        return self._signing.sign(message)

    def open_key_envelope(self, envelope: KeyEnvelope, *, expected_party: str, expected_table: str,
                          data_policy: Policy, roots: TrustRoots) -> tuple[TableKey, Claims]:
        """Verify the data enclave and its signature, then open the table key. Fails closed."""
        if envelope.job_id != self.job_digest.hex():
            raise NegotiationError("key envelope is for another job")
        if envelope.party != expected_party or envelope.table != expected_table:
            raise NegotiationError(f"key envelope names {envelope.party}/{envelope.table}, "
                                   f"expected {expected_party}/{expected_table}")
        if len(envelope.evidence) > MAX_EVIDENCE_BYTES:
            raise NegotiationError("key envelope: evidence is too large")
        data_key = _signing_key(envelope.signing_public_key, "key envelope")
        evidence = Evidence.from_bytes(envelope.evidence, source="data enclave evidence")
        expected = report_data_for("data", self.job_digest, b"", envelope.signing_public_key)
        claims = verify_evidence(evidence, roots, data_policy, expected)
        message = envelope_message(self.job_digest, envelope.party, envelope.table, envelope.sealed_key,
                                   self.hpke_public_key, self.signing_public_key)
        if not verify_ed25519(data_key, envelope.signature, message):
            raise NegotiationError("key envelope: signature does not verify with the data enclave's attested key")
        try:
            secret = self.suite.suite().decrypt(envelope.sealed_key, self._hpke_private,  # type: ignore[arg-type]
                                                info=table_key_info(self.job_digest, envelope.party, envelope.table))
        except Exception:  # cryptography raises InvalidTag / ValueError; never say more
            raise NegotiationError("key envelope: the table key was not sealed to this enclave for this "
                                   "job, party and table") from None
        try:
            return TableKey.from_secret_bytes(secret), claims
        except TeenetError:
            raise NegotiationError("key envelope: sealed key has the wrong length") from None
