"""The cluster part of a compute offer: what a data node checks before it seals anything.

A leader's offer and its workers are built exactly as node/cluster_role.py builds them
(real per-job sessions, simulated evidence, cluster-CA certificates); every rewrite a
coordinator could make (a worker added, dropped, reordered or swapped, an endpoint or a
certificate hash changed, a worker's keys replaced) is refused naming its check, and so are
a worker whose evidence another measurement or another job made, and a partition key not
sealed to this owner.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from teenet.attestation.measure import enclave_measurement
from teenet.attestation.policy import policy_from_config
from teenet.attestation.roots import default_trust_roots
from teenet.attestation.sim import UnsafeSimulatedAttester
from teenet.cluster.ca import ClusterCA, new_key
from teenet.cluster.offer import cluster_from_proto, cluster_to_proto
from teenet.errors import VerificationError
from teenet.negotiation import (ComputeEnclaveSession, WorkerEntry, build_cluster_offer, verify_cluster_offer,
                                verify_compute_offer)
from teenet.proto import teenet_pb2 as pb

JOB = hashlib.sha256(b"a cluster job").digest()


@pytest.fixture(scope="module")
def world(sim_platform):
    platform = sim_platform
    measurement = enclave_measurement()
    attester = UnsafeSimulatedAttester(platform, measurement)
    roots = default_trust_roots(sim_ark=platform.ark)
    policy = policy_from_config({"allow_simulated": True, "measurements": [measurement.hex()]}, source="test")
    return platform, attester, roots, policy


def _worker(ca, name, index, attester, job=JOB):
    session = ComputeEnclaveSession(job, attester)
    cert = ca.issue(name, new_key().public_key(), hosts=("127.0.0.1",))
    der = cert.public_bytes(serialization.Encoding.DER)
    return WorkerEntry(name, index, f"127.0.0.1:{7400 + index}", session.hpke_public_key, session.signing_public_key,
                       session.evidence.to_bytes(), hashlib.sha256(der).digest(), der)


@pytest.fixture()
def offer(world):
    _, attester, roots, policy = world
    leader = ComputeEnclaveSession(JOB, attester)
    ca = ClusterCA("test")
    workers = [_worker(ca, f"w{i}", i, attester) for i in range(2)]
    bank = x25519.X25519PrivateKey.generate()
    key = bytes(range(32))
    cluster = build_cluster_offer(leader, "compute-1", workers, key, {"bank": bank.public_key(),
                                                                      "telco": x25519.X25519PrivateKey.generate()
                                                                      .public_key()})
    return leader, cluster, bank, key, ca


def _verify(world, leader, cluster, bank, party="bank"):
    _, _, roots, policy = world
    o = dataclasses.replace(leader.offer("compute-1", "127.0.0.1:1"), cluster=cluster)
    verified = verify_compute_offer(o, JOB, policy, roots)
    return verify_cluster_offer(verified, party=party, party_hpke=bank, policy=policy, roots=roots)


def test_a_leaders_offer_verifies_and_opens_the_owners_partition_key(world, offer):
    leader, cluster, bank, key, _ = offer
    # as relayed: through its proto and back
    relayed = cluster_from_proto(pb.ComputeOffer(cluster=cluster_to_proto(cluster)))
    assert relayed == cluster
    got = _verify(world, leader, relayed, bank)
    assert got.partition_key == key
    assert [v.offer.hpke_public_key for v in got.workers] == [w.hpke_public_key for w in cluster.workers]
    assert cluster_from_proto(pb.ComputeOffer()) is None  # a single node's offer has no cluster part


def _rewrites(cluster, ca, attester):
    a, b = cluster.workers
    r = dataclasses.replace
    other = _worker(ca, "w9", 1, attester)
    yield "endpoint", r(cluster, workers=(r(a, endpoint="203.0.113.9:7400"), b)), "cluster.signature"
    yield "swap endpoints", r(cluster, workers=(r(a, endpoint=b.endpoint), r(b, endpoint=a.endpoint))), \
        "cluster.signature"
    yield "reorder", r(cluster, workers=(r(b, partition=0), r(a, partition=1))), "cluster.signature"
    yield "drop", r(cluster, workers=(a,), partitions=1), "cluster.signature"
    yield "add", r(cluster, workers=(a, b, r(other, partition=2)), partitions=3), "cluster.signature"
    yield "replace a worker", r(cluster, workers=(a, other)), "cluster.signature"
    yield "cert hash", r(cluster, workers=(a, r(b, certificate_sha256=other.certificate_sha256))), \
        "cluster.signature"
    yield "certificate", r(cluster, workers=(a, r(b, certificate=other.certificate))), "cluster.certificate"
    yield "worker keys", r(cluster, workers=(a, r(b, hpke_public_key=other.hpke_public_key,
                                                  evidence=other.evidence))), "cluster.signature"
    yield "count", r(cluster, partitions=3), "cluster.signature"
    yield "keys", r(cluster, partition_keys=cluster.partition_keys[:1]), "cluster.signature"
    yield "signature", r(cluster, signature=bytes(64)), "cluster.signature"


def test_every_rewrite_of_the_workers_is_refused(world, offer):
    leader, cluster, bank, _, ca = offer
    seen = set()
    for what, rewritten, check in _rewrites(cluster, ca, world[1]):
        with pytest.raises(VerificationError) as caught:
            _verify(world, leader, rewritten, bank)
        assert caught.value.check == check, what
        seen.add(what)
    assert len(seen) == 12


def _signed(world, leader, workers, bank):
    return build_cluster_offer(leader, "compute-1", workers, bytes(32), {"bank": bank.public_key()})


def test_each_worker_is_checked_against_the_owners_own_policy(world, offer):
    platform, attester, _, _ = world
    leader, cluster, bank, _, ca = offer
    a, _ = cluster.workers
    # Signed by the leader, but the worker runs another measurement: the owner's policy refuses it.
    wrong = _worker(ca, "w1", 1, UnsafeSimulatedAttester(platform, bytes(48)))
    with pytest.raises(VerificationError) as caught:
        _verify(world, leader, _signed(world, leader, (a, wrong), bank), bank)
    assert caught.value.check == "policy.measurement"
    # Evidence made for another job, replayed into this one.
    stale = _worker(ca, "w1", 1, attester, job=hashlib.sha256(b"another job").digest())
    with pytest.raises(VerificationError) as caught:
        _verify(world, leader, _signed(world, leader, (a, stale), bank), bank)
    assert caught.value.check == "binding.report_data"
    # The leader's own keys may not stand in for a worker.
    as_leader = dataclasses.replace(a, partition=1, hpke_public_key=leader.hpke_public_key)
    with pytest.raises(VerificationError) as caught:
        _verify(world, leader, _signed(world, leader, (a, as_leader), bank), bank)
    assert caught.value.check == "cluster.workers"


def test_a_partition_key_not_sealed_to_this_owner_is_refused(world, offer):
    leader, cluster, bank, _, _ = offer
    with pytest.raises(VerificationError) as caught:
        _verify(world, leader, cluster, bank, party="insurer")
    assert caught.value.check == "cluster.partition_key"
    with pytest.raises(VerificationError) as caught:  # the bank's slot, opened with another key
        _verify(world, leader, cluster, x25519.X25519PrivateKey.generate())
    assert caught.value.check == "cluster.partition_key"
