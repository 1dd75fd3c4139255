"""Partitioned ingress: where a row goes, and what a worker's upload service takes.

Placement is the keyed hash of the key *after* the job's normalisation (so "  12" and 12
with type int, or "Ab" and "aB" with case lower, meet on one worker). The upload service is
a real gRPC server over TLS in this process, with the worker's cluster certificate, taking
real sealed streams from a real data enclave session: a partition of this worker's index
with only its own rows is taken; another index, a foreign row, a job without a session, a
dropped job, a caller that is not the party and a client pinned to another certificate are
refused, and nothing is kept; a partition received whole is refused when sent again.
"""

from __future__ import annotations

import hashlib
import types

import grpc
import numpy as np
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import serialization

from teenet.attestation.measure import enclave_measurement
from teenet.attestation.policy import policy_from_config
from teenet.attestation.roots import default_trust_roots
from teenet.attestation.sim import UnsafeSimulatedAttester
from teenet.cluster import jobs
from teenet.cluster.ca import ClusterCA, cert_pem, key_pem, new_key
from teenet.cluster.partition import (check_partition, clustered_root, parse_partition_table_name,
                                      partition_rows, partition_table_name)
from teenet.cluster.upload import UploadService
from teenet.errors import InputError, VerificationError
from teenet.lineage import Fingerprinter, fingerprint_mac
from teenet.models.tables import KeyNormalisation
from teenet.negotiation import ComputeOffer, DataEnclaveSession, HpkeSuite, WorkerEntry, verify_compute_offer
from teenet.node.cluster_ship import worker_channel
from teenet.pki import DevPki
from teenet.proto import teenet_pb2 as pb
from teenet.proto import teenet_pb2_grpc as rpc
from teenet.sealing import SealedTableWriter, StreamBinding, TableKey
from teenet.tlog import MerkleTree, leaf_hash

KEY = bytes(range(32))
INT = KeyNormalisation(type="int")


def test_placement_follows_the_jobs_normalisation():
    a = pa.table({"id": ["  12", "7", None]})
    b = pa.table({"id": [12, 7, 3]})
    pa_, pb_ = (partition_rows(t, ["id"], INT, KEY, 4) for t in (a, b))
    assert list(pa_[:2]) == list(pb_[:2]) and pa_[2] == 0  # a null key never matches: partition 0
    lower = KeyNormalisation(case="lower", trim=True)
    assert (partition_rows(pa.table({"k": ["Ab "]}), ["k"], lower, KEY, 8)
            == partition_rows(pa.table({"k": ["aB"]}), ["k"], lower, KEY, 8)).all()
    # composite keys: both components count, in order
    many = pa.table({"x": list(range(400)), "y": ["a"] * 400})
    swapped = pa.table({"x": ["a"] * 400, "y": list(range(400))})
    assert (partition_rows(many, ["x", "y"], KeyNormalisation(), KEY, 4)
            != partition_rows(swapped, ["x", "y"], KeyNormalisation(), KEY, 4)).any()


def test_placement_is_keyed_and_balanced():
    ids = pa.table({"id": np.arange(4000)})
    one, other = partition_rows(ids, ["id"], INT, KEY, 2), partition_rows(ids, ["id"], INT, bytes(32), 2)
    assert 1800 < int(one.sum()) < 2200  # about half on each worker
    assert (one != other).sum() > 1500  # another job's key places rows elsewhere
    assert list(partition_rows(pa.table({"v": [1, 2, 3, 4, 5]}), [], INT, KEY, 2, first_row=3)) == [1, 0, 1, 0, 1]


def test_partition_names_and_the_clustered_fingerprint():
    assert parse_partition_table_name(partition_table_name("my#table", 1, 2)) == ("my#table", 1, 2)
    for bad in ("customers", "customers#1", "customers#a/2", "#1/2", "customers#²/2", "customers#1/٣"):
        with pytest.raises(InputError, match="<table>#<i>/<N>"):
            parse_partition_table_name(bad)
    roots = [hashlib.sha256(b"p0").digest(), hashlib.sha256(b"p1").digest()]
    assert clustered_root(roots) == MerkleTree(leaf_hash(r) for r in roots).root()
    assert clustered_root(roots) != clustered_root(roots[::-1])


@pytest.fixture(scope="module")
def worker(sim_platform, tmp_path_factory):
    """A worker process's upload service and context, in this process."""
    measurement = enclave_measurement()
    attester = UnsafeSimulatedAttester(sim_platform, measurement)
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    policy = policy_from_config({"allow_simulated": True, "measurements": [measurement.hex()]}, source="test")
    ca = ClusterCA("test")
    key = new_key()
    cert = ca.issue("w0", key.public_key(), hosts=("127.0.0.1",))
    upload = UploadService(cert_pem(cert), key_pem(key), cert_pem(ca.certificate), "127.0.0.1").start()
    der = cert.public_bytes(serialization.Encoding.DER)
    jobs.set_context(jobs.WorkerContext("w0", attester, roots, der, upload))
    pki = DevPki.create(tmp_path_factory.mktemp("pki"))
    holder = types.SimpleNamespace(tls=pki.issue("bank"), attester=attester, roots=roots, policy=policy, ca=ca,
                                   pki=pki, entry=WorkerEntry("w0", 0, upload.endpoint, b"", b"", b"",
                                                              hashlib.sha256(der).digest(), der))
    yield holder
    upload.stop()
    jobs.set_context(None)


def _open(worker, job: bytes):
    inputs = [("bank", "customers", ("customer_id",), ("customer_id", "income"))]
    return jobs.open_job(job.hex(), 0, 2, KEY, INT, inputs, worker.policy, worker.pki.ca_path.read_bytes(),
                         HpkeSuite.X25519.value)


def _upload(worker, job: bytes, public: dict, table: pa.Table, name: str, entry=None):
    offer = ComputeOffer(job.hex(), "compute-1", HpkeSuite.X25519, public["hpke_public_key"],
                         public["signing_public_key"], public["evidence"], public["endpoint"])
    verified = verify_compute_offer(offer, job, worker.policy, worker.roots)
    session = DataEnclaveSession(job, worker.attester)
    tkey = TableKey.generate()
    envelope = session.seal_table_key(verified, "bank", name, tkey)
    fp = Fingerprinter()
    writer = SealedTableWriter(tkey, StreamBinding(job, "bank", name), table.schema, on_chunk=fp.add_chunk)

    def messages():
        yield pb.UploadMessage(key=pb.KeyEnvelope(job_id=envelope.job_id, party="bank", table=name,
                                                  sealed_key=envelope.sealed_key, evidence=envelope.evidence,
                                                  signing_public_key=envelope.signing_public_key,
                                                  signature=envelope.signature))
        header = writer.header()
        yield pb.UploadMessage(header=header)
        for m in writer.seal_batches(table.to_batches()):
            yield pb.UploadMessage(chunk=m)
        yield pb.UploadMessage(fingerprint=pb.LineageFingerprint(
            root=fp.root(), chunks=fp.chunks, mac=fingerprint_mac(tkey.secret_bytes(), header, fp.root(), fp.chunks)))

    channel = worker_channel(types.SimpleNamespace(tls=worker.tls), entry or worker.entry)
    try:
        return rpc.ComputeStub(channel).UploadTable(messages(), timeout=20)
    finally:
        channel.close()


def _rows(partition: int) -> pa.Table:
    ids = pa.table({"customer_id": np.arange(1000, 1200), "income": np.arange(200) * 1.5})
    return ids.filter(pa.array(partition_rows(ids, ["customer_id"], INT, KEY, 2) == partition))


def test_the_worker_takes_its_own_partition_and_nothing_else(worker):
    job = hashlib.sha256(b"ingress job").digest()
    public = _open(worker, job)
    assert public["certificate"] == worker.entry.certificate and public["endpoint"] == worker.entry.endpoint
    mine, theirs = _rows(0), _rows(1)

    def refused(table, name, code, check):
        with pytest.raises(grpc.RpcError) as caught:
            _upload(worker, job, public, table, name)
        assert caught.value.code() == code and caught.value.details().startswith(check), caught.value.details()
        assert jobs.job(job.hex()).tables == {}

    refused(theirs, "customers#1/2", grpc.StatusCode.PERMISSION_DENIED, "cluster.partition")  # another index
    refused(pa.concat_tables([mine, theirs.slice(0, 1)]), "customers#0/2", grpc.StatusCode.PERMISSION_DENIED,
            "cluster.partition")  # one foreign row
    refused(mine, "customers", grpc.StatusCode.PERMISSION_DENIED, "cluster.partition")  # a whole table
    refused(mine, "accounts#0/2", grpc.StatusCode.PERMISSION_DENIED, "input.not_input")
    with pytest.raises(grpc.RpcError) as caught:  # a caller other than the party (its consortium certificate)
        _upload(types.SimpleNamespace(**{**vars(worker), "tls": worker.pki.issue("telco")}), job, public, mine,
                "customers#0/2")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "'telco' may not upload a table of 'bank'"
    assert jobs.job(job.hex()).tables == {}
    reply = _upload(worker, job, public, mine, "customers#0/2")
    assert reply.rows == mine.num_rows > 50
    assert jobs.partition_table(job.hex(), "bank", "customers").equals(mine)
    with pytest.raises(grpc.RpcError) as caught:  # received whole: never replaced, never counted twice
        _upload(worker, job, public, mine.slice(0, 5), "customers#0/2")
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert jobs.partition_table(job.hex(), "bank", "customers").equals(mine)
    arrived = jobs.wait_arrivals(job.hex(), 0, 0.1)
    assert [(a["party"], a["table"], a["rows"]) for a in arrived] == [("bank", "customers", mine.num_rows)]
    with pytest.raises(VerificationError, match="already made keys"):
        _open(worker, job)  # keys are made once per job
    assert jobs.drop_job(job.hex()) and jobs.held_jobs() == []
    with pytest.raises(VerificationError) as caught:
        jobs.partition_table(job.hex(), "bank", "customers")
    assert caught.value.check == "cluster.session"
    with pytest.raises(grpc.RpcError) as caught:  # the session is gone with the job
        _upload(worker, job, public, mine, "customers#0/2")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details().startswith("cluster.session")


def test_a_data_node_reaches_only_the_pinned_certificate(worker):
    job = hashlib.sha256(b"pinned job").digest()
    public = _open(worker, job)
    impostor = worker.ca.issue("w0", new_key().public_key(), hosts=("127.0.0.1",))  # same CA, same name
    der = impostor.public_bytes(serialization.Encoding.DER)
    entry = WorkerEntry("w0", 0, worker.entry.endpoint, b"", b"", b"", hashlib.sha256(der).digest(), der)
    with pytest.raises(grpc.RpcError) as caught:
        _upload(worker, job, public, _rows(0), "customers#0/2", entry=entry)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails: nothing sent
    assert jobs.job(job.hex()).tables == {}
    jobs.drop_job(job.hex())


def test_check_partition_names_the_partition_only():
    with pytest.raises(VerificationError) as caught:
        check_partition(_rows(1), ["customer_id"], INT, KEY, 2, 0, where="bank/customers")
    assert caught.value.check == "cluster.partition" and "1000" not in str(caught.value)
    check_partition(_rows(0), ["customer_id"], INT, KEY, 2, 0, where="bank/customers")


def test_sandbox_init_writes_a_leader_and_its_workers(tmp_path):
    from teenet.cli.sandbox import _expected, init_sandbox
    from teenet.cluster.config import load_worker_config
    from teenet.config import load_node_config

    summary = init_sandbox(tmp_path / "net", rows=200, workers=2)
    assert summary["workers"] == ["compute-1-w1", "compute-1-w2"]
    leader = load_node_config(tmp_path / "net" / "compute-1.yaml")
    assert leader.cluster.workers == 2 and leader.cluster.allow_simulated
    for name in summary["workers"]:
        worker = load_worker_config(tmp_path / "net" / f"{name}.yaml")
        assert worker.leader == leader.cluster.admission_listen and worker.enclave.backend == "sim"
    names = [n for n, _, _ in _expected(tmp_path / "net")]
    assert names[-2:] == summary["workers"]  # started after their leader
    with pytest.raises(InputError, match="--workers must be 0..16"):
        init_sandbox(tmp_path / "bad", workers=17)
