"""The Coordinator gRPC service over real mutual TLS on loopback: the flow and the refusals."""

from __future__ import annotations

import base64
import sqlite3
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator_testkit import World, offer_fields, serve_coordinator
from teenet.audit import AuditCheckpoint, AuditEntry, entry_hash_of, verify_chain
from teenet.pki import DevPki, TlsFiles, secure_channel
from teenet.proto import teenet_pb2 as pb
from teenet.proto import teenet_pb2_grpc as rpc

MEMBERS = ("alice", "mallory", "bank", "telco", "eve", "enclave", "enclave2", "stranger")


@pytest.fixture(scope="module")
def network(world: World, tmp_path_factory: pytest.TempPathFactory):
    served = serve_coordinator(world, tmp_path_factory.mktemp("network"), MEMBERS)
    yield served.running, served.stub, served.tls
    served.close()


def submit(world: World, stub, **spec_overrides) -> str:
    raw, analyst, sig = world.signed_job(world.spec(**spec_overrides))
    reply = stub("alice").SubmitJob(pb.SignedJob(canonical_spec=raw, analyst=analyst, signature=sig), timeout=10)
    assert reply.state == "awaiting_approvals"
    return reply.job_id


def decide(world: World, stub, job_id: str, party: str, verdict: str = "approve") -> pb.Ack:
    raw, sig = world.decision(job_id, party, verdict)
    return stub(party).SubmitDecision(pb.SignedDecision(job_id=job_id, party=party, decision=raw, signature=sig),
                                      timeout=10)


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_health_reports_serving(network):
    running, _, tls = network
    with secure_channel(f"127.0.0.1:{running.port}", tls["bank"], server_name="coordinator") as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "teenet.v1.Coordinator"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_whole_flow_over_grpc(world, network):
    running, stub, _ = network
    job_id = submit(world, stub)
    items = stub("bank").Poll(pb.PollRequest(node="bank"), timeout=10).items
    item = next(i for i in items if i.job_id == job_id)
    assert item.kind == "decide" and item.job.analyst == "alice"
    assert decide(world, stub, job_id, "bank").ok
    assert decide(world, stub, job_id, "telco").detail == "job approved by every input party"

    work = next(i for i in stub("enclave").Poll(pb.PollRequest(node="enclave"), timeout=10).items
                if i.job_id == job_id)
    assert work.kind == "compute" and sorted(d.party for d in work.decisions) == ["bank", "telco"]
    fields = offer_fields(job_id)
    stub("enclave").PostOffer(pb.ComputeOffer(**fields), timeout=10)

    for party, table in (("bank", "customers"), ("telco", "subscribers")):
        up = next(i for i in stub(party).Poll(pb.PollRequest(node=party), timeout=10).items if i.job_id == job_id)
        assert up.kind == "upload" and up.offer.signing_public_key == fields["signing_public_key"]
        stub(party).ReportStatus(pb.StatusReport(job_id=job_id, node=party, event="uploaded",
                                                 detail=f"{party}/{table}"), timeout=10)
    stub("enclave").ReportStatus(pb.StatusReport(job_id=job_id, node="enclave", event="running"), timeout=10)
    parts = []
    for recipient in ("alice", "bank"):
        parts.append(pb.ResultStreamPart(job_id=job_id, head=pb.SealedResultHead(
            job_id=job_id, recipient=recipient, kind="size", key_envelope=f"key-for-{recipient}".encode(),
            statement=b"{}", signature=bytes(64))))
        parts += [pb.ResultStreamPart(job_id=job_id, message=f"{recipient}-{i}".encode()) for i in range(3)]
    parts.append(pb.ResultStreamPart(job_id=job_id, end=True))
    stub("enclave").PostResultStream(iter(parts), timeout=10)

    status = stub("alice").GetJob(pb.JobRef(job_id=job_id), timeout=10)
    assert status.state == "succeeded" and list(status.results) == ["size->alice", "size->bank"]
    assert [(d.party, d.decision) for d in status.decisions] == [("bank", "approved"), ("telco", "approved")]
    fetched = list(stub("alice").FetchResultStream(pb.FetchResultsRequest(job_id=job_id, recipient="alice"),
                                                   timeout=10))
    opening = fetched[0].opening
    assert [p.head.key_envelope for p in fetched if p.WhichOneof("part") == "head"] == [b"key-for-alice"]
    assert [p.message for p in fetched if p.WhichOneof("part") == "message"] == [b"alice-0", b"alice-1", b"alice-2"]
    assert opening.offer.signing_public_key == fields["signing_public_key"]
    assert opening.job.analyst == "alice" and opening.status.state == "succeeded"
    listed = stub("telco").ListJobs(pb.ListJobsRequest(limit=50), timeout=10).jobs
    assert job_id in [j.job_id for j in listed]
    assert job_id not in [j.job_id for j in stub("eve").ListJobs(pb.ListJobsRequest(), timeout=10).jobs]

    # the audit, fetched over the wire: a member of the job reads its entries, each link's hash
    # verifies; the whole chain verifies against the coordinator's key where it is kept
    audit = stub("alice").GetAudit(pb.AuditRequest(after_seq=0, limit=1000), timeout=10)
    entries = [AuditEntry(e.seq, bytes.fromhex(e.prev_hash), bytes.fromhex(e.entry_hash), e.payload.encode())
               for e in audit.entries]
    assert entries and all(e.entry_hash == entry_hash_of(e.seq, e.prev_hash, e.payload) for e in entries)
    assert any(e.event.get("to") == "succeeded" and e.event.get("job_id") == job_id for e in entries)
    cp = audit.checkpoint
    checkpoints = [AuditCheckpoint(cp.seq, bytes.fromhex(cp.entry_hash), cp.signature,
                                   base64.b64decode(cp.signer_public_key))] if cp.seq else []
    whole = running.coordinator.audit.entries(after=0, limit=10000)
    report = verify_chain(whole, checkpoints, running.coordinator.audit.public_key)
    assert report.ok and report.checkpoints == 1
    # a member with no part in the job reads none of its entries
    outside = stub("eve").GetAudit(pb.AuditRequest(after_seq=0, limit=1000), timeout=10).entries
    assert [e for e in outside if job_id in e.payload] == []


def test_duplicate_submission_over_grpc(world, network):
    _, stub, _ = network
    raw, analyst, sig = world.signed_job()
    msg = pb.SignedJob(canonical_spec=raw, analyst=analyst, signature=sig)
    first = stub("alice").SubmitJob(msg, timeout=10)
    second = stub("alice").SubmitJob(msg, timeout=10)
    assert (first.duplicate, second.duplicate, second.job_id) == (False, True, first.job_id)


def test_a_node_cannot_poll_as_another(network):
    _, stub, _ = network
    err = refused(lambda: stub("bank").Poll(pb.PollRequest(node="telco"), timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "authenticated as 'bank'" in err.details() and "node is 'telco'" in err.details()


def test_a_party_cannot_decide_for_another_even_with_its_signature(world, network):
    _, stub, _ = network
    job_id = submit(world, stub)
    raw, sig = world.decision(job_id, "telco")       # a genuine telco decision, replayed by bank
    err = refused(lambda: stub("bank").SubmitDecision(
        pb.SignedDecision(job_id=job_id, party="telco", decision=raw, signature=sig), timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "a member speaks only for itself" in err.details()
    err = refused(lambda: decide(world, stub, job_id, "eve"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "not an input party" in err.details()
    status = stub("alice").GetJob(pb.JobRef(job_id=job_id), timeout=10)
    assert [d.decision for d in status.decisions] == ["pending", "pending"]


def test_nobody_fetches_someone_elses_results(world, network):
    _, stub, _ = network
    job_id = submit(world, stub)
    err = refused(lambda: list(stub("bank").FetchResultStream(
        pb.FetchResultsRequest(job_id=job_id, recipient="alice"), timeout=10)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "recipient is 'alice'" in err.details()
    err = refused(lambda: list(stub("eve").FetchResultStream(
        pb.FetchResultsRequest(job_id=job_id, recipient="eve"), timeout=10)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "no part in job" in err.details()


def test_only_the_analyst_cancels_and_only_the_compute_offers(world, network):
    _, stub, _ = network
    job_id = submit(world, stub)
    sig = world.cancel_signature(job_id, "x", "mallory")
    err = refused(lambda: stub("mallory").CancelJob(pb.CancelRequest(job_id=job_id, analyst="alice", reason="x",
                                                                     signature=sig), timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = refused(lambda: stub("mallory").CancelJob(pb.CancelRequest(job_id=job_id, analyst="mallory", reason="x",
                                                                     signature=sig), timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "only the job's analyst" in err.details()
    err = refused(lambda: stub("enclave2").PostOffer(pb.ComputeOffer(**offer_fields(job_id, "enclave")),
                                                     timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    status = stub("alice").CancelJob(pb.CancelRequest(job_id=job_id, analyst="alice", reason="typo",
                                                      signature=world.cancel_signature(job_id, "typo")), timeout=10)
    assert (status.state, status.reason) == ("cancelled", "typo")
    stops = [i for i in stub("bank").Poll(pb.PollRequest(node="bank"), timeout=10).items if i.job_id == job_id]
    assert [(i.kind, i.reason) for i in stops] == [("stop", "typo")]


def test_a_certified_stranger_is_not_a_member(network):
    _, stub, _ = network
    err = refused(lambda: stub("stranger").Poll(pb.PollRequest(node="stranger"), timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "not a member" in err.details()
    err = refused(lambda: stub("stranger").GetAudit(pb.AuditRequest(), timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_client_without_a_consortium_certificate_is_refused(network, tmp_path: Path):
    running, _, _ = network
    other = DevPki.create(tmp_path / "other")
    impostor = other.issue("alice")
    mixed = TlsFiles(ca=network[2]["alice"].ca, cert=impostor.cert, key=impostor.key)
    with secure_channel(f"127.0.0.1:{running.port}", mixed, server_name="coordinator") as ch:
        with pytest.raises(grpc.RpcError) as info:
            rpc.CoordinatorStub(ch).Poll(pb.PollRequest(node="alice"), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_malformed_requests_get_clear_errors_and_the_service_lives_on(world, network):
    _, stub, _ = network
    cases = [
        (lambda: stub("alice").SubmitJob(pb.SignedJob(canonical_spec=b"\xff\x00junk", analyst="alice"), timeout=10),
         grpc.StatusCode.INVALID_ARGUMENT, "not valid UTF-8 JSON"),
        (lambda: stub("alice").SubmitJob(pb.SignedJob(canonical_spec=b"{}", analyst="alice"), timeout=10),
         grpc.StatusCode.INVALID_ARGUMENT, "field 'inputs'"),
        (lambda: stub("alice").SubmitJob(pb.SignedJob(canonical_spec=b"x" * (300 * 1024), analyst="alice"),
                                         timeout=10),
         grpc.StatusCode.INVALID_ARGUMENT, "at most 262144"),
        (lambda: stub("alice").GetJob(pb.JobRef(job_id="not-a-digest"), timeout=10),
         grpc.StatusCode.INVALID_ARGUMENT, "64 lowercase hex"),
        (lambda: stub("alice").GetJob(pb.JobRef(job_id="0" * 64), timeout=10),
         grpc.StatusCode.NOT_FOUND, "no job"),
        (lambda: stub("alice").ListJobs(pb.ListJobsRequest(state="exploded"), timeout=10),
         grpc.StatusCode.INVALID_ARGUMENT, "unknown state"),
    ]
    job_id = submit(world, stub)
    cases += [
        (lambda: stub("enclave").PostOffer(pb.ComputeOffer(**offer_fields(job_id)), timeout=10),
         grpc.StatusCode.FAILED_PRECONDITION, "expected approved"),
        (lambda: stub("bank").ReportStatus(pb.StatusReport(job_id=job_id, node="bank", event="x" * 5000),
                                           timeout=10),
         grpc.StatusCode.INVALID_ARGUMENT, "unknown event"),
        (lambda: stub("bank").SubmitDecision(pb.SignedDecision(job_id=job_id, party="bank", decision=b"{}",
                                                               signature=b"\x00" * 64), timeout=10),
         grpc.StatusCode.PERMISSION_DENIED, "decision.signature"),
    ]
    for call, code, text in cases:
        err = refused(call)
        assert err.code() == code, (err.code(), err.details())
        assert text in err.details() and "\n" not in err.details()
        assert "Traceback" not in err.details()
    assert stub("alice").GetJob(pb.JobRef(job_id=job_id), timeout=10).state == "awaiting_approvals"


def test_concurrent_callers_keep_one_unbroken_chain(world, network):
    from concurrent.futures import ThreadPoolExecutor

    running, stub, _ = network

    def one(_: int) -> str:
        job_id = submit(world, stub)
        decide(world, stub, job_id, "bank")
        return job_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        job_ids = list(pool.map(one, range(16)))
    assert len(set(job_ids)) == 16
    for job_id in job_ids:
        status = stub("telco").GetJob(pb.JobRef(job_id=job_id), timeout=10)
        assert [d.decision for d in status.decisions] == ["approved", "pending"]
    report = running.coordinator.audit.verify()
    assert report.ok, report.first_break


def test_the_checkpoint_board_takes_each_members_own_heads_and_cosignatures(world, network, tmp_path):
    """teenet/witness.py over gRPC: a member publishes only its own signed heads, a witness
    posts only its own cosignatures, and everyone reads them back."""
    from teenet.audit import AuditLog
    from teenet.witness import GrpcBoard, Witness, publish, witnessed_members

    _, stub, _ = network
    log = AuditLog(tmp_path / "bank-audit.db", world.keys["bank"].signing, checkpoint_every=1000)
    for i in range(3):
        log.append({"event": "test", "i": i})
    log.checkpoint()
    note = log.tree_heads()[-1]
    err = refused(lambda: stub("telco").PublishCheckpoint(pb.PublishedCheckpoint(publisher="bank", note=note),
                                                          timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = refused(lambda: stub("telco").PublishCheckpoint(pb.PublishedCheckpoint(publisher="telco", note=note),
                                                          timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "only its own" in err.details()
    assert publish(log, "bank", GrpcBoard(stub("bank"))) == 1
    members = witnessed_members(world.consortium)
    telco = Witness(sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False),
                    threading.RLock(), "telco", world.keys["telco"].signing, members)
    assert telco.run_once(GrpcBoard(stub("telco"))) == (1, [])
    reply = stub("alice").GetCheckpoints(pb.CheckpointRequest(origin=log.origin), timeout=10)
    assert [c.note for c in reply.checkpoints] == [note] and reply.latest_size == 3
    assert [c.witness for c in reply.cosignatures] == ["telco"]
    line = reply.cosignatures[0].line
    body = reply.cosignatures[0].body
    err = refused(lambda: stub("alice").PostCosignature(pb.CheckpointCosignature(witness="alice", body=body,
                                                                                 line=line), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a witness" in err.details()
    err = refused(lambda: stub("bank").PostCosignature(pb.CheckpointCosignature(witness="telco", body=body,
                                                                                line=line), timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
