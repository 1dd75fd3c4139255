"""Long polls over real mutual TLS on loopback: Poll and GetJob wait at the coordinator
until something changes, answer at once when the caller is behind, fall back to answering
at once when every wait slot is taken, and let a stopping coordinator go at once.

The bounds below are generous (a wait of 10 s, the change after 0.3 s, the answer
required within 5 s): they check that the call was woken, not how fast."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from coordinator_testkit import World, serve_coordinator
from test_coordinator_service import decide, submit
from teenet.coordinator import service as service_module
from teenet.proto import teenet_pb2 as pb

MEMBERS = ("alice", "bank", "telco", "enclave", "eve")
LONG = 10_000  # ms


def start(world: World, base):
    served = serve_coordinator(world, base, MEMBERS)
    return served.running, served.stub, served.close


@pytest.fixture
def net(world: World, tmp_path):
    running, stub, close = start(world, tmp_path)
    yield running, stub
    close()


def later(seconds: float, action) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_poll_behind_the_coordinator_answers_at_once(world, net):
    _, stub = net
    first = stub("bank").Poll(pb.PollRequest(node="bank"), timeout=10)
    assert first.generation != 0
    job_id = submit(world, stub)
    start = time.monotonic()
    reply = stub("bank").Poll(pb.PollRequest(node="bank", since=first.generation, wait_ms=LONG), timeout=20)
    assert time.monotonic() - start < 5
    assert reply.generation != first.generation
    assert [(i.kind, i.job_id) for i in reply.items] == [("decide", job_id)]


def test_a_poll_waits_for_the_next_change_and_brings_the_new_work(world, net):
    _, stub = net
    generation = stub("bank").Poll(pb.PollRequest(node="bank"), timeout=10).generation
    submitted: list[str] = []
    thread = later(0.3, lambda: submitted.append(submit(world, stub)))
    start = time.monotonic()
    reply = stub("bank").Poll(pb.PollRequest(node="bank", since=generation, wait_ms=LONG), timeout=20)
    waited = time.monotonic() - start
    thread.join(10)
    assert 0.2 < waited < 5, waited  # it waited for the submission, and no longer
    assert submitted and submitted[0] in [i.job_id for i in reply.items]
    assert reply.generation != generation


def test_a_poll_with_nothing_new_answers_empty_after_its_wait(world, net):
    _, stub = net
    generation = stub("telco").Poll(pb.PollRequest(node="telco"), timeout=10).generation
    start = time.monotonic()
    reply = stub("telco").Poll(pb.PollRequest(node="telco", since=generation, wait_ms=300), timeout=10)
    assert time.monotonic() - start >= 0.25
    assert reply.generation == generation and list(reply.items) == []


def test_get_job_waits_for_the_job_to_move(world, net):
    _, stub = net
    job_id = submit(world, stub)
    seen = stub("alice").GetJob(pb.JobRef(job_id=job_id), timeout=10)
    assert seen.state == "awaiting_approvals"
    thread = later(0.3, lambda: decide(world, stub, job_id, "bank"))
    reply = stub("alice").GetJob(pb.JobRef(job_id=job_id, wait_ms=LONG, updated_after=seen.updated_at), timeout=20)
    thread.join(10)
    # A decision moves the job's updated_at though its state stays: the analyst sees progress.
    assert reply.updated_at > seen.updated_at
    assert [(d.party, d.decision) for d in reply.decisions if d.party == "bank"] == [("bank", "approved")]
    # The last approval changes the state.
    thread = later(0.3, lambda: decide(world, stub, job_id, "telco"))
    reply = stub("alice").GetJob(pb.JobRef(job_id=job_id, wait_ms=LONG, updated_after=reply.updated_at),
                                 timeout=20)
    thread.join(10)
    assert reply.state == "approved"


def test_get_job_on_an_ended_job_or_an_older_view_answers_at_once(world, net):
    _, stub = net
    job_id = submit(world, stub)
    decide(world, stub, job_id, "bank", "reject")
    start = time.monotonic()
    ended = stub("alice").GetJob(pb.JobRef(job_id=job_id, wait_ms=LONG, updated_after=1e18), timeout=20)
    assert ended.state == "failed" and time.monotonic() - start < 5
    other = submit(world, stub)
    reply = stub("alice").GetJob(pb.JobRef(job_id=other, wait_ms=LONG, updated_after=0.0), timeout=20)
    assert reply.state == "awaiting_approvals" and time.monotonic() - start < 5


def test_get_job_still_refuses_a_member_with_no_part_before_any_wait(world, net):
    _, stub = net
    job_id = submit(world, stub)
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub("eve").GetJob(pb.JobRef(job_id=job_id, wait_ms=LONG), timeout=20)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert time.monotonic() - start < 5


def test_when_every_wait_slot_is_taken_a_poll_answers_at_once(world, tmp_path, monkeypatch):
    monkeypatch.setattr(service_module, "MAX_LONG_POLLS", 1)
    _, stub, close = start(world, tmp_path)
    try:
        generation = stub("bank").Poll(pb.PollRequest(node="bank"), timeout=10).generation
        stub("telco").Poll(pb.PollRequest(node="telco"), timeout=10)  # its TLS channel is up before the clock
        holder = threading.Thread(target=lambda: stub("telco").Poll(
            pb.PollRequest(node="telco", since=generation, wait_ms=4000), timeout=20), daemon=True)
        holder.start()
        time.sleep(1.0)  # the telco's poll holds the only slot (for 4 s)
        start_at = time.monotonic()
        reply = stub("bank").Poll(pb.PollRequest(node="bank", since=generation, wait_ms=LONG), timeout=20)
        assert time.monotonic() - start_at < 2.5  # not held: the caller falls back to its interval
        assert reply.generation == generation
        holder.join(10)
    finally:
        close()


def test_a_stopping_coordinator_releases_its_long_polls(world, tmp_path):
    _, stub, close = start(world, tmp_path)
    generation = stub("bank").Poll(pb.PollRequest(node="bank"), timeout=10).generation
    outcome: list[object] = []

    def poll() -> None:
        try:
            outcome.append(stub("bank").Poll(pb.PollRequest(node="bank", since=generation, wait_ms=20_000),
                                             timeout=30))
        except grpc.RpcError as exc:
            outcome.append(exc.code())

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    time.sleep(0.5)
    start_at = time.monotonic()
    close()
    thread.join(10)
    assert time.monotonic() - start_at < 8, "stop waited for the long poll"
    assert outcome, "the long poll never returned"
