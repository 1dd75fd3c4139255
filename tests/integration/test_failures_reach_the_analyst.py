"""Every failure reaches the analyst within seconds, with its reason and no data value:
a job waiting for a person says whose operator and why (and `--wait` says so when it gives
up); a table its owner cannot read fails the job at decide time, once; a compute node that
stops heart-beating has its jobs failed by the coordinator after a bounded silence.

The sandbox's coordinator is configured with `compute_silence: 3` so the test is quick.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import yaml

from integration_helpers import cli_json, run_cli, write_job, job_status, until_status

pytestmark = pytest.mark.slow

SILENCE = 3.0
SECRET_CELL = "QZX-CELL-7731"  # in the malformed row; must never appear in a reason

TRAIN_WITH_INSURER = """\
name: {name}
function: train
compute: compute-1
inputs:
  - {{party: bank,    table: customers, key: customer_id, columns: [income, defaulted]}}
  - {{party: insurer, table: policies,  key: customer_id, columns: [claims, premium]}}
params: {{layout: vertical, model: logistic_regression, label: {{party: bank, column: defaulted}},
         test_fraction: 0.25, seed: 3}}
release:
  - {{kind: metrics, to: [analyst]}}
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("failures")
    init_sandbox(d, rows=2000)
    coordinator = yaml.safe_load((d / "coordinator.yaml").read_text())
    coordinator["compute_silence"] = SILENCE
    (d / "coordinator.yaml").write_text(yaml.safe_dump(coordinator))
    # The telco's small usage table as a CSV with one malformed row (a missing field).
    usage = d / "data" / "telco" / "usage-broken.csv"
    usage.write_text("customer_id,minutes,data_gb,late_payments\n1,10,1.5,0\n2,20,2.5,1\n"
                     f"{SECRET_CELL},30\n4,40,4.5,0\n")
    telco = yaml.safe_load((d / "telco.yaml").read_text())
    telco["tables"]["usage"] = {"format": "csv", "path": str(usage)}
    (d / "telco.yaml").write_text(yaml.safe_dump(telco))
    up_sandbox(d)
    try:
        yield d
    finally:
        down_sandbox(d)


_status = job_status
_until = until_status


def test_a_job_waiting_for_an_operator_says_whose_and_why(net, capsys):
    spec = write_job(net, "needs-insurer", TRAIN_WITH_INSURER.format(name="needs-insurer"))
    started = time.monotonic()
    code, out, err = run_cli(capsys, "job", "submit", spec, "--config", net / "analyst.yaml", "--wait",
                             "--timeout", "4")
    assert code != 0 and time.monotonic() - started < 15
    assert "did not finish within 4s" in err and "insurer: waiting for insurer's operator" in err, err
    assert "teenet approvals approve" in err and "Traceback" not in err
    job_id = out.split("as job ")[1].split()[0]
    insurer = next(d for d in _status(capsys, net, job_id)["decisions"] if d["party"] == "insurer")
    assert insurer["decision"] == "pending"
    assert insurer["reason"].startswith("waiting for insurer's operator: "), insurer
    code, text, _ = run_cli(capsys, "job", "status", job_id, "--config", net / "analyst.yaml")
    assert "insurer: pending (waiting for insurer's operator" in text
    cli_json(capsys, "job", "cancel", job_id, "--config", net / "analyst.yaml")


def test_a_table_its_owner_cannot_read_fails_the_job_at_decide_time(net, capsys):
    started = time.monotonic()
    job_id = cli_json(capsys, "job", "submit", net / "jobs" / "psi-overlap.yaml", "--config",
                      net / "analyst.yaml")["job_id"]
    st = _until(capsys, net, job_id, lambda s: s["state"] in ("failed", "succeeded"), 15)
    assert st["state"] == "failed" and time.monotonic() - started < 15, st
    assert st["reason"] == "rejected by telco: telco could not read usage: input.source", st
    assert SECRET_CELL not in json.dumps(st)
    # decided once: one rejection in the telco's audit, and no traceback in its log
    from teenet.audit import read_log

    entries, _ = read_log(net / "state" / "telco" / "audit.db")
    rejected = [e.event for e in entries if e.event.get("job_id") == job_id and e.event["event"] == "rejected"]
    assert len(rejected) == 1 and SECRET_CELL not in json.dumps(rejected)
    time.sleep(1.0)  # a looping decide would log again and again
    log = (net / "logs" / "telco.log").read_text()
    assert "Traceback" not in log and "unexpected error in decide" not in log


def test_a_compute_node_that_stops_heart_beating_fails_its_jobs(net, capsys):
    from teenet.cli.sandbox import PROCESS_FILE

    procs = {p["name"]: p for p in json.loads((net / PROCESS_FILE).read_text())}
    spec = write_job(net, "held-mid-job", TRAIN_WITH_INSURER.format(name="held-mid-job"))
    job_id = cli_json(capsys, "job", "submit", spec, "--config", net / "analyst.yaml")["job_id"]
    st = _until(capsys, net, job_id, lambda s: any(d["party"] == "bank" and d["decision"] == "approved"
                                                   for d in s["decisions"]), 30)
    deadline = time.monotonic() + 30  # the insurer's node has the job waiting for its operator
    while not any(r["job_id"] == job_id for r in cli_json(capsys, "approvals", "list", "--config",
                                                          net / "insurer.yaml")):
        assert time.monotonic() < deadline, "the insurer never listed the job"
        time.sleep(0.1)
    # Freeze the bank, so once approved the job waits for its table, mid-negotiation.
    os.kill(procs["bank"]["pid"], signal.SIGSTOP)
    try:
        cli_json(capsys, "approvals", "approve", job_id, "--config", net / "insurer.yaml")
        st = _until(capsys, net, job_id, lambda s: s["state"] in ("negotiating_keys", "running", "failed"), 30)
        assert st["state"] in ("negotiating_keys", "running"), st
        # Well past the bound while alive: a live compute node is not failed (it keeps polling).
        time.sleep(SILENCE + 2)
        assert _status(capsys, net, job_id)["state"] in ("negotiating_keys", "running")
        os.kill(procs["compute-1"]["pid"], signal.SIGKILL)
        killed = time.monotonic()
        st = _until(capsys, net, job_id, lambda s: s["state"] == "failed", SILENCE + 10)
        took = time.monotonic() - killed
    finally:
        os.kill(procs["bank"]["pid"], signal.SIGCONT)
    assert st["state"] == "failed", st
    assert st["reason"].startswith("compute node compute-1 stopped heart-beating"), st
    assert SILENCE - 1.2 <= took <= SILENCE + 3, took  # its last poll was at most ~1 s before the kill
    # durable and audited: the coordinator's chain records the failure and who decided it
    from teenet.audit import read_log

    entries, _ = read_log(net / "state" / "coordinator" / "coordinator.db")
    assert any(e.event.get("job_id") == job_id and e.event.get("to") == "failed" and e.event.get("by") == "coordinator"
               for e in entries)
