"""Witnessed audit logs over the real network (teenet/witness.py): processes on loopback.

A data node (the bank) rewrites one past entry of its audit log and re-signs the result
with its real key; every other member node catches it (the consistency proof from the
head it cosigned fails), audits the alarm, and refuses new jobs with the bank until its
operator acknowledges. The split view is covered in-process (tests/core/test_witness.py).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from integration_helpers import cli_json, run_cli, write_job

pytestmark = pytest.mark.slow

WITNESSES = ("insurer", "telco", "compute-1")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("witness")
    init_sandbox(d, rows=400)
    up_sandbox(d)
    try:
        yield d
    finally:
        down_sandbox(d)


def _status(capsys, net, node):
    return {r["member"]: r for r in cli_json(capsys, "audit", "witness-status", "--config", net / f"{node}.yaml")["logs"]}


def _until(check, timeout=40.0):
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.3)
    return check()


def _stop(net, name):
    procs = json.loads((net / "run" / "processes.json").read_text())
    pid = next(p["pid"] for p in procs if p["name"] == name)
    os.kill(pid, signal.SIGTERM)
    assert _until(lambda: not _alive(pid), 20)


def _alive(pid):
    try:
        os.kill(pid, 0)
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True
    except OSError:
        return False


def _rewrite_and_resign(net):
    """The bank's operator rewrites entry 1 of its log, re-chains it, and signs a new head
    with the bank's real key: a history that no longer extends the one it published."""
    from teenet.audit import AuditLog, entry_hash_of
    from teenet.identity import MemberKeys

    path = net / "state" / "bank" / "audit.db"
    conn = sqlite3.connect(path, isolation_level=None)
    rows = conn.execute("SELECT seq, payload FROM audit_entries ORDER BY seq").fetchall()
    prev = bytes(32)
    conn.execute("BEGIN")
    for seq, payload in rows:
        if seq == 1:
            payload = payload.replace('"event":{', '"event":{"rewritten":true,', 1)
        digest = entry_hash_of(seq, prev, payload.encode())
        conn.execute("UPDATE audit_entries SET prev_hash = ?, entry_hash = ?, payload = ? WHERE seq = ?",
                     (prev.hex(), digest.hex(), payload, seq))
        prev = digest
    conn.execute("DELETE FROM audit_checkpoints")
    conn.execute("DELETE FROM audit_tree_heads")
    conn.execute("COMMIT")
    conn.close()
    log = AuditLog(path, MemberKeys.load(net / "members" / "bank" / "keys").signing)
    log.append({"event": "note", "node": "bank"})
    log.checkpoint()
    log.close()
    return len(rows) + 1


TEENET = Path(sys.executable).with_name("teenet")


def teenet(*args) -> subprocess.CompletedProcess:
    """The installed `teenet` as a real process (its exit code is what scripts see)."""
    env = {k: v for k, v in os.environ.items() if k != "TEENET_CONFIG"}
    done = subprocess.run([str(TEENET), *map(str, args)], capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def test_lineage_show_says_whether_a_quorum_witnessed_the_result_with_each_exit_code(net, capsys, tmp_path):
    """`lineage show` exits 0 once a quorum cosigned a checkpoint covering the drop event,
    3 while not (here: a checkpoints file without the cosignatures), 1 when broken; the
    coordinator's own log is witnessed too (the sandbox's consortium file names its key)."""
    out = cli_json(capsys, "job", "submit", net / "jobs" / "psi-overlap.yaml", "--config", net / "analyst.yaml",
                   "--wait")
    assert out["state"] == "succeeded", out
    done = teenet("job", "result", out["job_id"], "--config", net / "analyst.yaml", "--out", tmp_path, "--json")
    assert done.returncode == 0, done.stderr  # verified results: witnessed or not yet, never a failure
    shown = json.loads(done.stdout)["lineage"][0]
    assert shown["status"] in ("witnessed", "unwitnessed") and shown["witnessing"][0]["log"] == "drop"
    assert (tmp_path / "checkpoints.json").is_file()
    result, saved = tmp_path / "lineage-size.json", tmp_path / "saved-checkpoints.json"
    args = ("lineage", "show", result, "--config", net / "analyst.yaml")
    assert _until(lambda: teenet(*args, "--save-checkpoints", saved).returncode == 0, 60)
    report = json.loads(teenet(*args, "--json").stdout)
    drop = report["witnessing"][0]
    assert report["status"] == "witnessed" and drop["member"] == "compute-1"
    # each owner's own `shipped` entry is named by the result, proven and witnessed too
    assert {w["log"]: w["state"] for w in report["witnessing"][1:]} == {
        f"shipped:{i['party']}/{i['table']}": "witnessed" for i in report["lineage"]["inputs"]}
    assert {link["link"] for link in report["links"] if link["link"].startswith("shipped.")} == {
        "shipped.bank/customers", "shipped.telco/usage", "shipped.insurer/policies"}
    assert drop["cosignatures"] >= 1 and drop["cosigned_size"] >= drop["size"]
    # offline, from the saved checkpoints file
    done = teenet(*args, "--checkpoints", saved)
    assert done.returncode == 0 and "lineage verified and witnessed" in done.stdout, done.stdout + done.stderr
    # without the cosignatures: verified, not yet witnessed (3), said plainly
    doc = json.loads(saved.read_text())
    for entry in doc["logs"].values():
        entry["cosignatures"] = []
    stripped = tmp_path / "stripped.json"
    stripped.write_text(json.dumps(doc))
    done = teenet(*args, "--checkpoints", stripped)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "not yet witnessed" in done.stdout and "error" not in done.stderr
    # an edited lineage: broken (1), naming the link
    edited = json.loads(result.read_text())
    st = json.loads(base64.b64decode(edited["result"]["statement"]))
    st["lineage"]["inputs"][0]["fingerprint"] = "00" * 32
    edited["result"]["statement"] = base64.b64encode(json.dumps(st).encode()).decode()
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    done = teenet("lineage", "show", tmp_path / "edited.json", "--config", net / "analyst.yaml",
                  "--checkpoints", saved)
    assert done.returncode == 1 and "statement.signature" in done.stderr, done.stderr
    # the coordinator's log: witnessed by the members, like theirs
    assert _until(lambda: _status(capsys, net, "insurer").get("coordinator", {}).get("cosigned_size", 0) > 0)
    status = cli_json(capsys, "audit", "witness-status", "--config", net / "telco.yaml")
    assert status["coordinator_log"] == "witnessed"


def test_an_owner_registers_a_tables_fingerprint_in_its_witnessed_log(net, capsys):
    done = teenet("catalog", "register", "customers", "--config", net / "bank.yaml", "--json")
    assert done.returncode == 0, done.stderr
    reg = json.loads(done.stdout)
    assert reg["table"] == "customers" and len(reg["fingerprint"]) == 64
    assert reg["rows"] == "<10" or int(reg["rows"]) % reg["k"] == 0  # rounded per the release rules
    # the registration is in the bank's log, and the other members cosign a head covering it
    assert _until(lambda: _status(capsys, net, "insurer")["bank"]["cosigned_size"] >= reg["tree_head_size"])
    shown = json.loads(teenet("catalog", "show", "--config", net / "bank.yaml", "--json").stdout)
    assert [r["fingerprint"] for r in shown["registrations"]][-1] == reg["fingerprint"]
    assert shown["registrations"][-1]["witnessed"] == "yes", shown  # judged on the coordinator's board
    bad = teenet("catalog", "register", "accounts", "--config", net / "bank.yaml")
    assert bad.returncode == 1 and "field 'tables'" in bad.stderr and "customers" in bad.stderr
    assert teenet("catalog", "show", "--config", net / "compute-1.yaml").returncode == 1


def test_the_compute_enclave_itself_refuses_a_job_with_a_party_it_caught_equivocating(net, capsys, tmp_path):
    """Only compute-1 is shown a fork of the bank's log (a second history, really signed by
    the bank, of the size compute-1 cosigned). The data nodes see nothing wrong and approve;
    compute-1's own path (node/compute_role.py on_compute) refuses the job: no keys are made,
    no offer is posted, no table is shipped."""
    from teenet.audit import AuditLog, default_origin
    from teenet.identity import MemberKeys
    from teenet.node.store import NodeStore
    from teenet.witness import CheckpointBoard, publish, witnessed_members
    from teenet.coordinator.store import CoordinatorStore
    from teenet.config import load_consortium

    consortium = load_consortium(net / "consortium.yaml")
    members = witnessed_members(consortium)
    bank_key = MemberKeys.load(net / "members" / "bank" / "keys").signing
    origin = default_origin(bank_key.public_key())
    store = NodeStore(net / "state" / "compute-1" / "node.db")
    try:
        witness = store.witness("compute-1", MemberKeys.load(net / "members" / "compute-1" / "keys").signing,
                                members)
        if witness.head(origin) is None:  # run alone: give the bank's log a head to cosign
            assert teenet("catalog", "register", "customers", "--config", net / "bank.yaml").returncode == 0
        assert _until(lambda: witness.head(origin) is not None)
        size = witness.head(origin)[0]
        fork = AuditLog(tmp_path / "fork.db", bank_key, checkpoint_every=1_000_000)
        for i in range(size):
            fork.append({"event": "forked", "i": i})
        fork.checkpoint()
        board = CheckpointBoard(CoordinatorStore(tmp_path / "board.db").conn, threading.RLock(), members)
        publish(fork, "bank", board)
        cosigned, raised = witness.check_log(board, origin)
        assert cosigned == 0 and [(e.member, e.kind) for e in raised] == [("bank", "inconsistent")]
    finally:
        store.close()
    for other in ("insurer", "telco"):
        assert not _status(capsys, net, other)["bank"]["blocked"]

    spec = write_job(net, "psi-compute-caught",
                     (net / "jobs" / "psi-overlap.yaml").read_text().replace("psi-overlap", "psi-compute-caught"))
    out = cli_json_exit(capsys, "job", "submit", spec, "--config", net / "analyst.yaml", "--wait", "--timeout", "30")
    assert out["state"] == "failed" and "member.equivocated" in out["reason"], out
    assert "teenet/audit/" not in out["reason"] and origin not in out["reason"]
    job_id = out["job_id"]
    events = _audit_events(net, "compute-1", job_id)
    assert [e["event"] for e in events] == ["job_failed"] and "member.equivocated" in events[0]["reason"]
    for party in ("bank", "telco", "insurer"):  # nothing was sealed to or received by the enclave
        assert not {"released_table", "shipped"} & {e["event"] for e in _audit_events(net, party, job_id)}
    assert teenet("audit", "acknowledge", "bank", "--config", net / "compute-1.yaml").returncode == 0


def _audit_events(net, node, job_id):
    from teenet.audit import read_log

    return [dict(e.event) for e in read_log(net / "state" / node / "audit.db")[0] if e.event.get("job_id") == job_id]


def test_a_rewritten_log_is_caught_by_every_witness_and_jobs_with_it_wait_for_the_operator(net, capsys):
    from teenet.cli.sandbox import up_sandbox

    out = cli_json(capsys, "job", "submit", net / "jobs" / "psi-overlap.yaml", "--config", net / "analyst.yaml",
                   "--wait")
    assert out["state"] == "succeeded", out
    # every witness cosigns the bank's log, and the bank the others'
    assert _until(lambda: all(_status(capsys, net, w)["bank"]["cosigned_size"] > 0 for w in WITNESSES))
    assert _until(lambda: _status(capsys, net, "bank")["insurer"]["cosigned_size"] > 0)
    cosigned = _status(capsys, net, "insurer")["bank"]["cosigned_size"]
    assert not any(r["blocked"] for r in _status(capsys, net, "insurer").values())
    # the board holds every member's heads and the coordinator's own, each from its owner
    board = sqlite3.connect(net / "state" / "coordinator" / "coordinator.db")
    publishers = {r[0] for r in board.execute("SELECT DISTINCT publisher FROM published_checkpoints")}
    board.close()
    assert {"bank", "insurer", "telco", "compute-1", "coordinator"} <= publishers, publishers

    _stop(net, "bank")
    # The bank kept publishing (and witnesses cosigning) its genuine heads until it stopped:
    # the largest one it published is the last honest head anyone may have cosigned.
    board = sqlite3.connect(net / "state" / "coordinator" / "coordinator.db")
    honest = board.execute("SELECT MAX(size) FROM published_checkpoints WHERE publisher = 'bank'").fetchone()[0]
    board.close()
    assert honest >= cosigned
    size = _rewrite_and_resign(net)
    assert size > honest
    up_sandbox(net)
    assert _until(lambda: all(_status(capsys, net, w)["bank"]["blocked"] for w in WITNESSES))
    for w in WITNESSES:
        st = _status(capsys, net, w)
        assert st["bank"]["cosigned_size"] <= honest  # nothing past the rewrite was cosigned
        assert not st["insurer" if w != "insurer" else "telco"]["blocked"]
    cosigned = _status(capsys, net, "insurer")["bank"]["cosigned_size"]  # the insurer's last verified head
    # the alarm is in the witness's own log, with both checkpoints as evidence
    code, text, _ = run_cli(capsys, "audit", "verify", "--config", net / "insurer.yaml")
    assert code == 1 and "EQUIVOCATION" in text and "bank" in text
    verified = cli_json_exit(capsys, "audit", "verify", "--config", net / "insurer.yaml")
    assert verified["ok"] is True  # the insurer's own chain is fine; the alarm is about the bank
    alarm = verified["witnessing"]["equivocations"][0]
    assert alarm["member"] == "bank" and alarm["kind"] == "inconsistent"
    assert f"\n{size}\n" in alarm["evidence"]["conflicting"]
    assert f"\n{cosigned}\n" in alarm["evidence"]["verified"]

    # a new job with the bank is refused, with the fixed reason and no value
    spec = write_job(net, "psi-after-rewrite",
                     (net / "jobs" / "psi-overlap.yaml").read_text().replace("psi-overlap", "psi-after-rewrite"))
    out = cli_json_exit(capsys, "job", "submit", spec, "--config", net / "analyst.yaml", "--wait", "--timeout", "30")
    assert out["state"] == "failed" and "member.equivocated" in out["reason"], out
    assert "teenet/audit/" not in out["reason"]

    # the operators acknowledge (audited); the next job runs again
    for w in WITNESSES:
        assert run_cli(capsys, "audit", "acknowledge", "bank", "--config", net / f"{w}.yaml")[0] == 0
        assert not _status(capsys, net, w)["bank"]["blocked"]
    assert run_cli(capsys, "audit", "acknowledge", "bank", "--config", net / "insurer.yaml")[0] == 1
    spec = write_job(net, "psi-acknowledged",
                     (net / "jobs" / "psi-overlap.yaml").read_text().replace("psi-overlap", "psi-acknowledged"))
    out = cli_json(capsys, "job", "submit", spec, "--config", net / "analyst.yaml", "--wait")
    assert out["state"] == "succeeded", out
    from teenet.audit import read_log

    events = [dict(e.event) for e in read_log(net / "state" / "insurer" / "audit.db")[0]]
    assert [e["event"] for e in events if e["event"] in ("member_equivocated", "equivocation_acknowledged")] == \
        ["member_equivocated", "equivocation_acknowledged"]


def cli_json_exit(capsys, *args):
    """The JSON a command prints, whatever its exit code."""
    _, out, err = run_cli(capsys, *args, "--json")
    assert out, err
    return json.loads(out)
