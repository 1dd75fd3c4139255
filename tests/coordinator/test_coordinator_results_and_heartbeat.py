"""The coordinator's side of streamed results (durable chunks, a per-job cap, a broken post
leaves nothing) and of the compute heartbeat (a silent compute node's jobs fail, a polling
one's do not), driven directly with a fake clock."""

from __future__ import annotations

import pytest

from teenet.coordinator.state import JobState, SealedResultIn
from teenet.errors import InputError

from coordinator_testkit import run_to_running


def head(job_id, recipient="alice"):
    return SealedResultIn(job_id, recipient, "size", b"sealed-key", bytes(64), b'{"statement":1}')


def test_streamed_chunks_are_stored_in_order_and_handed_out_after_the_commit(world, coordinator):
    c = coordinator
    job_id = run_to_running(world, c)
    up = c.begin_result_stream(job_id, "enclave")
    h = head(job_id)
    c.add_result_head(up, h)
    for i in range(5):
        c.add_result_message(up, "size", "alice", f"chunk-{i}".encode())
    assert c.fetch_results(job_id, "alice").results == ()  # nothing visible before the commit
    assert c.view(job_id, viewer=None).state is JobState.RUNNING
    c.post_results(job_id, "enclave", [h], upload=up)
    found = c.fetch_results(job_id, "alice").results
    assert [r.messages for r in found] == [5] and found[0].statement == b'{"statement":1}'
    assert list(c.result_messages(found[0])) == [f"chunk-{i}".encode() for i in range(5)]
    assert c.view(job_id, viewer=None).state is JobState.SUCCEEDED
    assert any(b'"type":"results"' in e.payload and b'"messages":5' in e.payload for e in c.audit.entries())


def test_a_post_that_broke_off_leaves_nothing_and_a_retry_starts_clean(world, coordinator):
    c = coordinator
    job_id = run_to_running(world, c)
    up = c.begin_result_stream(job_id, "enclave")
    c.add_result_head(up, head(job_id))
    for i in range(3):
        c.add_result_message(up, "size", "alice", bytes([i]) * (3 << 20))  # 9 MiB: flushed to disk
    # the stream broke here; the compute node posts again from the start
    again = c.begin_result_stream(job_id, "enclave")
    h = head(job_id)
    c.add_result_head(again, h)
    c.add_result_message(again, "size", "alice", b"new")
    c.post_results(job_id, "enclave", [h], upload=again)
    (r,) = c.fetch_results(job_id, "alice").results
    assert list(c.result_messages(r)) == [b"new"]


def test_a_stored_but_uncommitted_stream_is_dropped_before_a_new_post(world, coordinator):
    c = coordinator
    job_id = run_to_running(world, c)
    up = c.begin_result_stream(job_id, "enclave")
    c.add_result_head(up, head(job_id))
    for i in range(3):
        c.add_result_message(up, "size", "alice", bytes(3 << 20))
    assert sum(b for _, b in c.store.result_chunk_counts(job_id).values()) >= 8 << 20  # flushed, uncommitted
    c.begin_result_stream(job_id, "enclave")
    assert c.store.result_chunk_counts(job_id) == {}


def test_results_over_the_configured_cap_are_refused(world, open_coordinator):
    c = open_coordinator(max_result_bytes=1 << 20)
    job_id = run_to_running(world, c)
    up = c.begin_result_stream(job_id, "enclave")
    c.add_result_head(up, head(job_id))
    c.add_result_message(up, "size", "alice", bytes(600_000))
    with pytest.raises(InputError, match="max_result_bytes"):
        c.add_result_message(up, "size", "alice", bytes(600_000))
    assert c.view(job_id, viewer=None).state is JobState.RUNNING
    assert c.fetch_results(job_id, "alice").results == ()


def test_a_compute_node_silent_past_the_bound_has_its_jobs_failed(world, open_coordinator):
    c = open_coordinator(compute_silence=60)
    job_id = run_to_running(world, c)
    c.record_poll("enclave")
    world.clock.now += 59
    assert c.fail_silent_compute_jobs() == []
    c.poll("enclave")  # a poll is the heartbeat
    world.clock.now += 59
    assert c.fail_silent_compute_jobs() == []
    world.clock.now += 2
    assert c.fail_silent_compute_jobs() == [job_id]
    job = c.view(job_id, viewer=None).job
    assert job.state == "failed"
    assert job.reason == ("compute node enclave stopped heart-beating; the job's keys are presumed lost "
                          "(resubmit the job); no poll for 61 s, limit 60 s")
    last = c.audit.entries()[-1].payload
    assert b'"by":"coordinator"' in last and b'"to":"failed"' in last
    assert c.fail_silent_compute_jobs() == []  # once


def test_an_approved_job_of_a_silent_compute_node_is_failed_too(world, open_coordinator):
    from teenet.reasons import STAGES

    c = open_coordinator(compute_silence=60)
    out = c.submit_job(*world.signed_job())
    for party in ("bank", "telco"):
        c.submit_decision(out.job_id, party, *world.decision(out.job_id, party))
    assert c.view(out.job_id, viewer=None).state is JobState.APPROVED  # waits for the compute node's offer
    c.record_poll("enclave")
    world.clock.now += 60
    assert c.fail_silent_compute_jobs() == []  # at the bound, not past it
    world.clock.now += 1
    assert c.fail_silent_compute_jobs() == [out.job_id]
    job = c.view(out.job_id, viewer=None).job
    assert job.state == "failed"
    # the fixed vocabulary's words, the compute node's name and the coordinator's own numbers only
    assert job.reason == STAGES["compute.silent"].format(party="enclave") + "; no poll for 61 s, limit 60 s"
    assert c.fail_silent_compute_jobs() == []
