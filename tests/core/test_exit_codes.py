"""Every command's exit code, through the installed `teenet` as a real process (docs/cli.md).

0 only when what was asked succeeded; 1 when teenet refused or what was asked failed; 2 for
usage errors. Scripts and CI trust these codes, so each command's failure path runs here
once, against a real sandbox network where it needs one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TEENET = Path(sys.executable).with_name("teenet")


def teenet(*args: object, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TEENET_CONFIG"}
    done = subprocess.run([str(TEENET), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox

    assert TEENET.is_file(), f"the installed command is missing: {TEENET}"
    d = tmp_path_factory.mktemp("exitcodes")
    init_sandbox(d, rows=500)
    up_sandbox(d)
    # A job an owner's rules refuse: telco lets its ids go to telco only.
    (d / "jobs" / "ids.yaml").write_text(
        "name: ids\nfunction: psi\ncompute: compute-1\ninputs:\n"
        "  - {party: bank, table: customers, key: customer_id}\n"
        "  - {party: telco, table: usage, key: customer_id}\n"
        "release:\n  - {kind: ids, to: [bank]}\n")
    # A job the insurer's rules leave to its operator (its auto-approve has no train).
    (d / "jobs" / "waits.yaml").write_text(
        "name: waits\nfunction: train\ncompute: compute-1\ninputs:\n"
        "  - {party: bank, table: customers, key: customer_id, columns: [income, defaulted]}\n"
        "  - {party: insurer, table: policies, key: customer_id, columns: [premium]}\n"
        "params: {model: logistic_regression, label: {party: bank, column: defaulted}}\n"
        "release:\n  - {kind: metrics, to: [analyst]}\n")
    # The same analyst, pointed at a coordinator nobody listens on.
    consortium = (d / "consortium.yaml").read_text()
    endpoint = json.loads(json.dumps(__import__("yaml").safe_load(consortium)))["coordinator"]["endpoint"]
    (d / "consortium-dead.yaml").write_text(consortium.replace(endpoint, f"127.0.0.1:{_free_port()}"))
    (d / "analyst-dead.yaml").write_text((d / "analyst.yaml").read_text().replace("consortium.yaml",
                                                                                   "consortium-dead.yaml"))
    try:
        yield d
    finally:
        down_sandbox(d)


def _submit_waiting(net: Path, spec: str) -> tuple[subprocess.Popen, str]:
    """`job submit --wait` as a background process; returns it and the job id it printed."""
    proc = subprocess.Popen([str(TEENET), "job", "submit", "--config", net / "analyst.yaml", net / "jobs" / spec,
                             "--wait", "--timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "as job" in line, line + proc.stderr.read()
    return proc, line.rsplit(" ", 1)[1].strip()


def test_submit_wait_exits_0_on_success_and_1_when_the_job_is_rejected_or_cancelled(net):
    ok = teenet("job", "submit", "--config", net / "analyst.yaml", net / "jobs" / "psi-overlap.yaml", "--wait",
                "--json", "--timeout", "120", timeout=180)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["state"] == "succeeded"

    refused = teenet("job", "submit", "--config", net / "analyst.yaml", net / "jobs" / "ids.yaml", "--wait",
                     "--timeout", "120", timeout=180)
    assert refused.returncode == 1 and "failed" in refused.stdout, refused.stdout + refused.stderr

    waiting, job_id = _submit_waiting(net, "waits.yaml")
    rejected = teenet("approvals", "reject", job_id[:12], "--config", net / "insurer.yaml", "--reason", "not now")
    assert rejected.returncode == 0, rejected.stderr
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 1, out + err
    assert "failed" in out and "not now" in out

    waiting, job_id = _submit_waiting(net, "waits.yaml")
    cancelled = teenet("job", "cancel", job_id, "--config", net / "analyst.yaml")
    assert cancelled.returncode == 0, cancelled.stderr
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 1 and "cancelled" in out, out + err

    # What was asked about an ended job: its status is read (0); cancelling it again, or
    # fetching results it never had, fails (1).
    assert teenet("job", "status", job_id, "--config", net / "analyst.yaml").returncode == 0
    again = teenet("job", "cancel", job_id, "--config", net / "analyst.yaml")
    assert again.returncode == 1 and "cancel" in again.stderr
    none = teenet("job", "result", job_id, "--config", net / "analyst.yaml", "--out", net / "r")
    assert none.returncode == 1 and none.stderr.strip()


def test_audit_verify_exits_1_on_a_tampered_chain_with_and_without_json(net, tmp_path):
    log = tmp_path / "audit.db"
    for suffix in ("", "-wal", "-shm"):
        if (net / "state" / "bank" / f"audit.db{suffix}").exists():
            shutil.copy(net / "state" / "bank" / f"audit.db{suffix}", tmp_path / f"audit.db{suffix}")
    intact = teenet("audit", "verify", "--db", log, "--json")
    assert intact.returncode == 0 and json.loads(intact.stdout)["ok"] is True, intact.stderr
    with sqlite3.connect(log) as conn:
        (payload,) = conn.execute("SELECT payload FROM audit_entries WHERE seq = 1").fetchone()
        conn.execute("UPDATE audit_entries SET payload = ? WHERE seq = 1", (payload.replace("bank", "bonk", 1),))
    as_json = teenet("audit", "verify", "--db", log, "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["ok"] is False
    as_text = teenet("audit", "verify", "--db", log)
    assert as_text.returncode == 1 and "audit.chain" in as_text.stderr


def test_each_command_fails_with_exit_1_and_one_line(net, tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00" * 100)
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("name: bad\nfunction: psi\ncompute: compute-1\ninputs: []\nrelease: []\n")
    missing = tmp_path / "missing.yaml"
    cases = [
        ("job", "validate", bad_spec),
        ("job", "submit", "--config", net / "analyst-dead.yaml", net / "jobs" / "psi-overlap.yaml"),
        ("job", "status", "abcdef", "--config", net / "analyst-dead.yaml"),
        ("job", "status", "abcdef0123", "--config", net / "analyst.yaml"),
        ("job", "list", "--config", net / "analyst-dead.yaml"),
        ("job", "cancel", "0" * 64, "--config", net / "analyst.yaml"),
        ("job", "result", "0" * 64, "--config", net / "analyst.yaml", "--out", tmp_path / "r"),
        ("approvals", "list", "--config", missing),
        ("approvals", "approve", "abcdef0123", "--config", net / "bank.yaml"),
        ("approvals", "reject", "abcdef0123", "--config", net / "bank.yaml", "--reason", "x"),
        ("approvals", "revoke", "abcdef0123", "--config", net / "bank.yaml", "--reason", "x"),
        ("audit", "show", "--db", tmp_path / "no-such.db"),
        ("audit", "verify", "--config", missing),
        ("attest", "verify", garbage),
        ("node", "serve", "--config", missing),
        ("coordinator", "serve", "--config", missing),
        ("node", "protect-keys", "--config", missing),
        ("coordinator", "protect-keys", "--config", missing),
        ("sandbox", "up", tmp_path),
        ("sandbox", "status", tmp_path),
        ("sandbox", "down", tmp_path),
        ("sandbox", "init", tmp_path / "x", "--data", "bank:t=" + str(garbage)),
        ("demo", "--dir", garbage),
    ]
    for args in cases:
        done = teenet(*args, timeout=120)
        assert done.returncode == 1, (args, done.returncode, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, done.stderr)


def test_usage_errors_exit_2_for_every_group():
    for group in ("enclave", "attest", "job", "approvals", "audit", "node", "coordinator", "sandbox", "demo"):
        done = teenet(group, "--no-such-option")
        assert done.returncode == 2, (group, done.stderr)
        assert "No such option" in done.stderr
    assert teenet().returncode == 2
    assert teenet("no-such-group").returncode == 2
    assert teenet("enclave", "measure").returncode == 0
    assert teenet("--help").returncode == 0


def test_a_waiting_submit_that_times_out_exits_1(net):
    start = time.monotonic()
    done = teenet("job", "submit", "--config", net / "analyst.yaml", net / "jobs" / "waits.yaml", "--wait",
                  "--timeout", "1", timeout=60)
    assert done.returncode == 1 and "did not finish" in done.stderr
    assert time.monotonic() - start < 30
