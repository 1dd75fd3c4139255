"""Faults on a real network: the compute node killed mid-stream and mid-training, a data
node killed mid-upload, the coordinator killed mid-upload and mid-run, and network
partitions (a proxy that stops forwarding) longer and shorter than the retries.

Each time the job either ends failed with the reason (in the job's status and in the
audit logs) or resumes and succeeds; no sealed result of a failed job is ever in the
coordinator's mailbox; a resubmitted job (a fresh nonce, so a new job) succeeds; and every
job ever submitted is still listed."""

from __future__ import annotations

import sqlite3
import time

import pytest

from faults_helpers import Hold, key_sets, psi_size, setup_fault_network

pytestmark = pytest.mark.slow

PSI = """\
name: psi-bank-telco
function: psi
compute: compute-1
inputs:
  - {party: bank,  table: customers, key: customer_id}
  - {party: telco, table: usage,     key: customer_id}
params: {normalise: {trim: true, case: none, type: int}}
release:
  - {kind: size, to: [analyst]}
"""

TRAIN = """\
name: forest-{trees}
function: train
compute: compute-1
inputs:
  - {{party: bank,  table: customers, key: customer_id, columns: [age, income, defaulted]}}
  - {{party: telco, table: usage,     key: customer_id, columns: [minutes, data_gb, late_payments]}}
params: {{layout: vertical, model: random_forest, hyperparameters: {{n_estimators: {trees}}},
         label: {{party: bank, column: defaulted}}, test_fraction: 0.2, seed: 7}}
release:
  - {{kind: metrics, to: [analyst]}}
"""

# Bytes of the bank's upload the proxy forwards before it stops: past the TLS handshake,
# the key envelope and the sealed header, well short of the ~160 KB sealed key column.
MID_STREAM = 24 * 1024


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox

    d = tmp_path_factory.mktemp("faults")
    n = setup_fault_network(d, rows=20_000)
    try:
        yield n
    finally:
        try:
            # Whatever happened, every job ever submitted is still there.
            missing = set(n.submitted) - n.listed()
            assert not missing, f"{len(missing)} job record(s) lost"
        finally:
            n.close()
            down_sandbox(d)
            n.bank_wire.close()
            n.compute_coordinator_wire.close()


@pytest.fixture(autouse=True)
def revived(net):
    """Each test starts from a whole network, whatever the test before it left behind."""
    net.revive()
    yield


@pytest.fixture(scope="module")
def expected_psi(net):
    ids = key_sets(net.directory)
    return len(ids["bank"] & ids["telco"])


def mailbox_rows(net, job_id: str) -> int:
    db = sqlite3.connect(f"file:{net / 'state' / 'coordinator' / 'coordinator.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM results WHERE job_id=?", (job_id,)).fetchone()[0]
    finally:
        db.close()


def assert_failed_cleanly(net, job_id: str, st, *reason_parts: str) -> None:
    assert st.state == "failed", (st.state, st.reason)
    for part in reason_parts:
        assert part in st.reason, st.reason
    assert list(st.results) == [] and mailbox_rows(net, job_id) == 0, "a failed job has results in the mailbox"


def assert_resubmission_succeeds(net, expected_psi: int) -> None:
    job_id = net.submit(PSI)
    assert net.wait_state(job_id, {"succeeded", "failed"}).state == "succeeded"
    assert psi_size(net.results(job_id)["size"]) == expected_psi


def start_held_upload(net, spec: str = PSI) -> tuple[str, Hold]:
    """Submit a job and stop the bank's upload mid-stream; returns once it is stalled there."""
    hold = Hold(MID_STREAM)
    net.bank_wire.tamper = hold
    job_id = net.submit(spec)
    assert hold.holding.wait(60), "the bank's upload never started"
    st = net.status(job_id)
    assert st.state == "negotiating_keys" and "bank/customers" not in st.uploaded, st
    return job_id, hold


def end_hold(net, hold: Hold) -> None:
    hold.release()
    net.bank_wire.tamper = None


def test_compute_killed_mid_stream_fails_the_job_with_the_reason(net, expected_psi):
    job_id, hold = start_held_upload(net)
    net.kill("compute-1")
    end_hold(net, hold)
    # compute-1 stays down: the bank's bounded retries run out.
    st = net.wait_state(job_id, {"failed", "succeeded"}, timeout=60)
    # The bank's stream broke mid-way; the telco's may have broken too. Whoever ran out of
    # retries first says so.
    assert_failed_cleanly(net, job_id, st, "could not ship", "to compute-1: transport.")
    party = st.reason.split()[0]
    assert party in ("bank", "telco")
    failed = [e for e in net.audit(party) if e["event"] == "upload_failed" and e["job_id"] == job_id]
    assert failed and failed[0]["reason"] == st.reason
    assert not any(e["event"] == "released_table" and e["job_id"] == job_id and e["table"] == "customers"
                   for e in net.audit("bank"))
    net.restart("compute-1")
    assert_resubmission_succeeds(net, expected_psi)


def test_compute_killed_mid_training_fails_the_job_on_restart(net, expected_psi):
    job_id = net.submit(TRAIN.format(trees=200))  # the most the sandbox owners allow; seconds of fitting
    net.wait_state(job_id, {"running"}, timeout=60)
    time.sleep(0.5)
    net.kill("compute-1")
    assert net.status(job_id).state == "running"  # nobody else can know the enclave died
    net.restart("compute-1")
    st = net.wait_state(job_id, {"failed", "succeeded"}, timeout=30)
    assert_failed_cleanly(net, job_id, st, "compute node compute-1 restarted", "per-job keys died with it")
    assert any(e["event"] == "job_failed" and e["job_id"] == job_id and "restarted" in e["reason"]
               for e in net.audit("compute-1"))
    quick = net.submit(TRAIN.format(trees=5))
    assert net.wait_state(quick, {"succeeded", "failed"}).state == "succeeded"
    assert "metrics" in net.results(quick)
    assert_resubmission_succeeds(net, expected_psi)


def test_data_node_killed_mid_upload_reuploads_on_restart_and_the_job_resumes(net, expected_psi):
    job_id, hold = start_held_upload(net)
    net.kill("bank")
    end_hold(net, hold)
    time.sleep(1.0)
    assert net.status(job_id).state == "negotiating_keys"  # the compute enclave still holds the job
    net.restart("bank")
    st = net.wait_state(job_id, {"failed", "succeeded"}, timeout=60)
    assert st.state == "succeeded", st.reason
    assert psi_size(net.results(job_id)["size"]) == expected_psi
    shipped = [e for e in net.audit("bank") if e["event"] == "released_table" and e["job_id"] == job_id]
    assert len(shipped) == 1  # the broken stream never counted as shipped; the fresh one did
    # The compute enclave never took the cut stream as a table: it received the bank's table once.
    received = [e for e in net.audit("compute-1")
                if e["event"] == "table_received" and e["job_id"] == job_id and e["party"] == "bank"]
    assert len(received) == 1


def test_coordinator_killed_mid_upload_resumes(net, expected_psi):
    job_id, hold = start_held_upload(net)
    net.kill("coordinator")
    end_hold(net, hold)
    time.sleep(2.0)  # the upload finishes and the job runs while the coordinator is down
    net.restart("coordinator")
    st = net.wait_state(job_id, {"failed", "succeeded"}, timeout=60)
    assert st.state == "succeeded", st.reason
    assert psi_size(net.results(job_id)["size"]) == expected_psi


def test_coordinator_killed_mid_run_resumes(net):
    job_id = net.submit(TRAIN.format(trees=60))
    net.wait_state(job_id, {"running"}, timeout=60)
    net.kill("coordinator")
    time.sleep(2.0)
    net.restart("coordinator")
    st = net.wait_state(job_id, {"failed", "succeeded"}, timeout=60)
    assert st.state == "succeeded", st.reason
    assert "metrics" in net.results(job_id)


def test_partition_longer_than_the_retries_fails_the_job_with_the_reason(net, expected_psi):
    job_id, hold = start_held_upload(net)
    net.bank_wire.partition()  # drops the live stream and refuses new connections
    end_hold(net, hold)
    try:
        st = net.wait_state(job_id, {"failed", "succeeded"}, timeout=60)
    finally:
        net.bank_wire.heal()
    assert_failed_cleanly(net, job_id, st, "bank could not ship customers to compute-1: transport.unavailable")
    assert any(e["event"] == "upload_failed" and e["job_id"] == job_id for e in net.audit("bank"))
    # The compute enclave drops the job's keys and inputs when told it failed.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
            e["event"] == "job_dropped" and e["job_id"] == job_id for e in net.audit("compute-1")):
        time.sleep(0.2)
    assert any(e["event"] == "job_dropped" and e["job_id"] == job_id for e in net.audit("compute-1"))
    assert_resubmission_succeeds(net, expected_psi)


def test_partition_healed_within_the_retries_resumes(net, expected_psi):
    before = net.log("bank").count("upload to compute-1 broke")
    job_id, hold = start_held_upload(net)
    net.bank_wire.partition()
    end_hold(net, hold)
    deadline = time.monotonic() + 30
    while net.log("bank").count("upload to compute-1 broke") == before and time.monotonic() < deadline:
        time.sleep(0.02)
    net.bank_wire.heal()  # the next attempt comes a second after the first failed
    assert "attempt 1 of 3" in net.log("bank")
    st = net.wait_state(job_id, {"failed", "succeeded"}, timeout=60)
    assert st.state == "succeeded", st.reason
    assert psi_size(net.results(job_id)["size"]) == expected_psi


def test_silent_partition_is_detected_by_keepalive_and_the_upload_resumes(net, expected_psi):
    """A partition that closes nothing: the proxy keeps both TCP connections open and stops
    forwarding the bank's bytes, as a dropped route or a dead middlebox does. Without gRPC
    keepalive the bank would wait on the stream for its hour-long deadline; with it, the
    unanswered pings end the stream, the bank retries, and the job finishes."""
    before = net.log("bank").count("upload to compute-1 broke")
    connections = net.bank_wire.connections
    start = time.monotonic()
    job_id, hold = start_held_upload(net)  # nothing forwarded, nothing closed, for up to 60 s
    try:
        while net.log("bank").count("upload to compute-1 broke") == before and time.monotonic() - start < 60:
            time.sleep(0.2)
        detected = time.monotonic() - start
    finally:
        end_hold(net, hold)
    assert net.log("bank").count("upload to compute-1 broke") > before, "the silent stall was never detected"
    assert detected < 45, f"detected after {detected:.0f} s; keepalive is 10 s + 10 s"
    assert net.status(job_id).state not in ("failed", "succeeded")  # a broken stream is not yet a failure
    st = net.wait_state(job_id, {"failed", "succeeded"}, timeout=60)
    assert st.state == "succeeded", st.reason
    assert net.bank_wire.connections > connections  # the retry came over a fresh connection
    assert psi_size(net.results(job_id)["size"]) == expected_psi


def test_compute_to_coordinator_partition_healed_resumes(net):
    job_id = net.submit(TRAIN.format(trees=40))
    net.wait_state(job_id, {"running"}, timeout=60)
    net.compute_coordinator_wire.partition()
    try:
        time.sleep(3.0)  # the enclave finishes and keeps retrying to post its results
        assert net.status(job_id).state == "running"
    finally:
        net.compute_coordinator_wire.heal()
    st = net.wait_state(job_id, {"failed", "succeeded"}, timeout=60)
    assert st.state == "succeeded", st.reason
    assert "metrics" in net.results(job_id)
