"""The job state machine, driven directly: the contract's flow, its refusals, durability."""

from __future__ import annotations

import pytest

from teenet.errors import InputError, VerificationError
from teenet.coordinator.store import SCHEMA_VERSION
from teenet.coordinator.state import (TRANSITIONS, JobNotFound, JobState, PermissionRefused, SealedResultIn,
                                      TransitionRefused, parse_spec_view)

from coordinator_testkit import offer_fields, run_to_running


def kinds(items):
    return sorted((i.kind, i.job.job_id) for i in items)


def test_transition_table_has_no_exit_from_terminal_states():
    assert {s for s in JobState if s.terminal} == {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    for state, targets in TRANSITIONS.items():
        if not state.terminal:
            assert {JobState.FAILED, JobState.CANCELLED} <= targets


def test_happy_path_through_every_state(world, coordinator):
    c = coordinator
    out = c.submit_job(*world.signed_job())
    assert (out.state, out.duplicate) == (JobState.AWAITING_APPROVALS, False)
    job_id = out.job_id
    assert kinds(c.poll("bank")) == [("decide", job_id)]
    assert c.poll("enclave") == []

    c.submit_decision(job_id, "bank", *world.decision(job_id, "bank"))
    assert c.poll("bank") == []                      # decided: nothing more to do
    assert c.view(job_id, viewer=None).state is JobState.AWAITING_APPROVALS
    assert c.submit_decision(job_id, "telco", *world.decision(job_id, "telco")) == "job approved by every input party"
    assert c.view(job_id, viewer=None).state is JobState.APPROVED

    compute_items = c.poll("enclave")
    assert kinds(compute_items) == [("compute", job_id)]
    assert sorted(d.party for d in compute_items[0].decisions) == ["bank", "telco"]

    fields = offer_fields(job_id)
    c.post_offer(**fields)
    assert c.view(job_id, viewer=None).state is JobState.NEGOTIATING_KEYS
    upload = c.poll("telco")
    assert kinds(upload) == [("upload", job_id)]
    assert upload[0].offer is not None and upload[0].offer.signing_public_key == fields["signing_public_key"]

    c.report_status(job_id, "telco", "uploaded", "telco/subscribers")
    assert c.poll("telco") == []
    assert kinds(c.poll("bank")) == [("upload", job_id)]
    c.report_status(job_id, "bank", "uploaded", "bank/customers")
    c.report_status(job_id, "enclave", "running", "all inputs in")
    view = c.view(job_id, viewer="alice")
    assert view.state is JobState.RUNNING and view.uploaded == ("bank/customers", "telco/subscribers")

    results = [SealedResultIn(job_id, "alice", "size", b"sealed-for-alice", bytes(64)),
               SealedResultIn(job_id, "bank", "size", b"sealed-for-bank", bytes(64))]
    c.post_results(job_id, "enclave", results)
    view = c.view(job_id, viewer="alice")
    assert view.state is JobState.SUCCEEDED and view.results == ("size->alice", "size->bank")
    mine = c.fetch_results(job_id, "alice")
    assert [r.envelope for r in mine.results] == [b"sealed-for-alice"]   # never the bank's
    assert c.fetch_results(job_id, "telco").results == ()

    # every state change is in the audit chain, and the chain verifies
    report = c.audit.verify()
    assert report.ok, report.first_break
    states = [e.event["to"] for e in c.audit.entries() if e.event.get("type") == "job.state"]
    assert states == ["awaiting_approvals", "approved", "negotiating_keys", "running", "succeeded"]


def test_same_digest_twice_is_a_duplicate_and_stores_nothing_new(world, coordinator):
    signed = world.signed_job()
    first = coordinator.submit_job(*signed)
    entries = len(coordinator.audit.entries())
    again = coordinator.submit_job(*signed)
    assert again.duplicate and again.job_id == first.job_id
    assert len(coordinator.audit.entries()) == entries
    assert len(coordinator.list_jobs(viewer=None)) == 1


def test_a_reject_fails_the_job_with_the_party_and_reason(world, coordinator):
    job_id = coordinator.submit_job(*world.signed_job()).job_id
    coordinator.submit_decision(job_id, "telco", *world.decision(job_id, "telco", "reject", "columns not allowed"))
    view = coordinator.view(job_id, viewer=None)
    assert view.state is JobState.FAILED
    assert view.job.reason == "rejected by telco: columns not allowed"
    assert coordinator.poll("bank")[0].kind == "stop"     # the other owner is told to drop it
    with pytest.raises(TransitionRefused, match="is failed"):
        coordinator.submit_decision(job_id, "bank", *world.decision(job_id, "bank"))


@pytest.mark.parametrize("tamper, error, why", [
    ("signer", VerificationError, "not signed by analyst 'alice'"),
    ("analyst-mismatch", InputError, "submitted as 'mallory'"),
    ("not-analyst", PermissionRefused, "not a analyst"),
    ("unknown-party", PermissionRefused, "'nobody' is not a member"),
    ("compute-is-data", PermissionRefused, "'bank' is a data member, not a compute"),
    ("not-canonical", InputError, "not in canonical form"),
    ("other-consortium", InputError, "consortium 'elsewhere'"),
    ("too-big", InputError, "at most 262144"),
])
def test_junk_jobs_are_refused_with_the_reason(world, coordinator, tamper, error, why):
    spec = world.spec()
    analyst = "alice"
    if tamper == "signer":
        raw, _, sig = world.signed_job(spec, signer="mallory")
    elif tamper == "analyst-mismatch":
        raw, _, sig = world.signed_job(spec)
        analyst = "mallory"
    elif tamper == "not-analyst":
        spec["analyst"] = "bank"
        raw, analyst, sig = world.signed_job(spec)
    elif tamper == "unknown-party":
        spec["inputs"][1]["party"] = "nobody"
        raw, analyst, sig = world.signed_job(spec)
    elif tamper == "compute-is-data":
        spec["compute"] = "bank"
        raw, analyst, sig = world.signed_job(spec)
    elif tamper == "not-canonical":
        raw, analyst, sig = world.signed_job(spec)
        raw = raw.replace(b",", b", ", 1)
    elif tamper == "other-consortium":
        spec["consortium"] = "elsewhere"
        raw, analyst, sig = world.signed_job(spec)
    else:
        spec["params"] = {"padding": "x" * (256 * 1024)}
        raw, analyst, sig = world.signed_job(spec)
    with pytest.raises(error, match=why):
        coordinator.submit_job(raw, analyst, sig)
    assert coordinator.list_jobs(viewer=None) == []          # nothing stored
    assert coordinator.audit.entries() == []                 # nothing audited


def test_spec_fields_are_bounded_and_named():
    with pytest.raises(InputError, match=r"field 'inputs\[0\].table'.*at most 128"):
        parse_spec_view({"name": "n", "function": "psi", "compute": "c", "analyst": "a",
                         "inputs": [{"party": "p", "table": "t" * 129}]})
    with pytest.raises(InputError, match="field 'inputs'"):
        parse_spec_view({"name": "n", "function": "psi", "compute": "c", "analyst": "a", "inputs": []})


def test_decisions_are_checked_before_they_count(world, coordinator):
    job_id = coordinator.submit_job(*world.signed_job()).job_id
    with pytest.raises(PermissionRefused, match="'eve' is not an input party"):
        coordinator.submit_decision(job_id, "eve", *world.decision(job_id, "eve"))
    with pytest.raises(VerificationError, match="decision.signature"):
        coordinator.submit_decision(job_id, "bank", *world.decision(job_id, "bank", signer="telco"))
    raw, sig = world.decision(job_id, "telco")    # telco's decision sent as bank's
    with pytest.raises(VerificationError):
        coordinator.submit_decision(job_id, "bank", raw, sig)
    with pytest.raises(InputError, match="'approve' or 'reject'"):
        coordinator.submit_decision(job_id, "bank", *world.decision(job_id, "bank", verdict="maybe"))
    raw, sig = world.decision(job_id, "bank")
    coordinator.submit_decision(job_id, "bank", raw, sig)
    assert coordinator.submit_decision(job_id, "bank", raw, sig) == "decision already recorded"
    with pytest.raises(TransitionRefused, match="a decision is final"):
        coordinator.submit_decision(job_id, "bank", *world.decision(job_id, "bank", "reject", "changed my mind"))
    assert coordinator.view(job_id, viewer=None).decisions[0].decision == "approved"


def test_messages_out_of_order_are_illegal_transitions(world, coordinator):
    job_id = coordinator.submit_job(*world.signed_job()).job_id
    with pytest.raises(TransitionRefused, match="offer refused.*awaiting_approvals, expected approved"):
        coordinator.post_offer(**offer_fields(job_id))
    with pytest.raises(TransitionRefused, match="running report refused"):
        coordinator.report_status(job_id, "enclave", "running", "")
    with pytest.raises(TransitionRefused, match="results refused"):
        coordinator.post_results(job_id, "enclave", [])
    with pytest.raises(TransitionRefused, match="upload report refused"):
        coordinator.report_status(job_id, "bank", "uploaded", "bank/customers")
    assert coordinator.view(job_id, viewer=None).state is JobState.AWAITING_APPROVALS


def test_only_the_jobs_compute_offers_and_posts(world, coordinator):
    job_id = coordinator.submit_job(*world.signed_job()).job_id
    for party in ("bank", "telco"):
        coordinator.submit_decision(job_id, party, *world.decision(job_id, party))
    with pytest.raises(PermissionRefused, match="'enclave2' is not the compute node"):
        coordinator.post_offer(**offer_fields(job_id, compute="enclave2"))
    with pytest.raises(InputError, match="signing_public_key"):
        coordinator.post_offer(**(offer_fields(job_id) | {"signing_public_key": b"short"}))
    with pytest.raises(InputError, match="endpoint"):
        coordinator.post_offer(**(offer_fields(job_id) | {"endpoint": "not an endpoint"}))
    assert coordinator.view(job_id, viewer=None).state is JobState.APPROVED


def test_status_reports_are_checked(world, coordinator):
    job_id = coordinator.submit_job(*world.signed_job()).job_id
    for party in ("bank", "telco"):
        coordinator.submit_decision(job_id, party, *world.decision(job_id, party))
    coordinator.post_offer(**offer_fields(job_id))
    with pytest.raises(InputError, match="one of bank's input tables"):
        coordinator.report_status(job_id, "bank", "uploaded", "telco/subscribers")
    with pytest.raises(PermissionRefused, match="only the job's compute"):
        coordinator.report_status(job_id, "bank", "running", "")
    with pytest.raises(PermissionRefused, match="no part in job"):
        coordinator.report_status(job_id, "eve", "failed", "ha")
    with pytest.raises(InputError, match="unknown event"):
        coordinator.report_status(job_id, "bank", "exploded", "")
    coordinator.report_status(job_id, "bank", "progress", "sealing chunk 3")
    coordinator.report_status(job_id, "telco", "failed", "disk full")
    view = coordinator.view(job_id, viewer=None)
    assert (view.state, view.job.reason) == (JobState.FAILED, "disk full")
    assert [(e.node, e.event, e.detail) for e in coordinator.store.status_events(job_id)] == [
        ("bank", "progress", "sealing chunk 3"), ("telco", "failed", "disk full")]
    with pytest.raises(TransitionRefused, match="already ended"):
        coordinator.report_status(job_id, "enclave", "failed", "late")


def test_results_only_for_released_kinds_and_recipients(world, coordinator):
    job_id = run_to_running(world, coordinator)
    with pytest.raises(PermissionRefused, match="does not release 'size' to 'telco'"):
        coordinator.post_results(job_id, "enclave", [SealedResultIn(job_id, "telco", "size", b"x", bytes(64))])
    with pytest.raises(PermissionRefused, match="does not release 'ids'"):
        coordinator.post_results(job_id, "enclave", [SealedResultIn(job_id, "alice", "ids", b"x", bytes(64))])
    with pytest.raises(PermissionRefused, match="not the compute node"):
        coordinator.post_results(job_id, "enclave2", [])
    dup = [SealedResultIn(job_id, "alice", "size", b"x", bytes(64))] * 2
    with pytest.raises(InputError, match="two results"):
        coordinator.post_results(job_id, "enclave", dup)
    assert coordinator.view(job_id, viewer=None).state is JobState.RUNNING


def test_cancel_by_the_analyst_only_and_stop_items_for_an_hour(world, coordinator):
    job_id = run_to_running(world, coordinator)
    with pytest.raises(PermissionRefused, match=r"only the job's analyst \(alice\)"):
        coordinator.cancel(job_id, "mallory", "mine now", world.cancel_signature(job_id, "mine now", "mallory"))
    with pytest.raises(VerificationError, match="cancel.signature"):
        coordinator.cancel(job_id, "alice", "stop", world.cancel_signature(job_id, "other reason"))
    view = coordinator.cancel(job_id, "alice", "wrong table", world.cancel_signature(job_id, "wrong table"))
    assert (view.state, view.job.reason) == (JobState.CANCELLED, "wrong table")
    for node in ("bank", "telco", "enclave"):
        items = coordinator.poll(node)
        assert [(i.kind, i.reason) for i in items] == [("stop", "wrong table")]
    assert coordinator.poll("eve") == []
    with pytest.raises(TransitionRefused, match="already ended: cancelled"):
        coordinator.cancel(job_id, "alice", "again", world.cancel_signature(job_id, "again"))
    world.clock.now += 3601
    try:
        assert coordinator.poll("bank") == []
    finally:
        world.clock.now -= 3601


def test_compute_gets_no_stop_for_a_job_it_never_saw(world, coordinator):
    job_id = coordinator.submit_job(*world.signed_job()).job_id
    coordinator.cancel(job_id, "alice", "", world.cancel_signature(job_id, ""))
    assert coordinator.poll("enclave") == []
    assert [i.kind for i in coordinator.poll("bank")] == ["stop"]


def test_views_only_for_members_with_a_part(world, coordinator):
    job_id = coordinator.submit_job(*world.signed_job()).job_id
    with pytest.raises(PermissionRefused, match="'eve' has no part"):
        coordinator.view(job_id, viewer="eve")
    with pytest.raises(PermissionRefused):
        coordinator.fetch_results(job_id, "mallory")
    assert coordinator.list_jobs(viewer="eve") == []
    assert [v.job.job_id for v in coordinator.list_jobs(viewer="telco")] == [job_id]
    with pytest.raises(JobNotFound):
        coordinator.view("ab" * 32, viewer=None)
    with pytest.raises(InputError, match="64 lowercase hex"):
        coordinator.view("../../etc", viewer=None)


def test_everything_survives_close_and_reopen(world, open_coordinator):
    c = open_coordinator()
    running = run_to_running(world, c)
    waiting = c.submit_job(*world.signed_job()).job_id
    c.submit_decision(waiting, "bank", *world.decision(waiting, "bank"))
    head = c.audit.entries()[-1]
    c.store.close()

    again = open_coordinator()
    assert again.store.schema_version() == SCHEMA_VERSION == 6
    assert again.view(running, viewer=None).state is JobState.RUNNING
    assert again.view(running, viewer=None).uploaded == ("bank/customers", "telco/subscribers")
    assert again.store.offer(running) is not None
    assert [d.party for d in again.store.decisions(waiting)] == ["bank"]
    assert again.audit.entries()[-1] == head
    # and the flow continues where it stopped
    again.submit_decision(waiting, "telco", *world.decision(waiting, "telco"))
    assert again.view(waiting, viewer=None).state is JobState.APPROVED
    again.post_results(running, "enclave", [SealedResultIn(running, "alice", "size", b"r", bytes(64))])
    assert again.view(running, viewer=None).state is JobState.SUCCEEDED
    assert again.audit.verify().ok


def test_a_refused_message_leaves_no_row_and_no_audit_entry(world, coordinator):
    job_id = coordinator.submit_job(*world.signed_job()).job_id
    before = coordinator.audit.entries()
    with pytest.raises(TransitionRefused):
        coordinator.report_status(job_id, "enclave", "running", "")
    assert coordinator.audit.entries() == before
    assert coordinator.store.status_events(job_id) == []
