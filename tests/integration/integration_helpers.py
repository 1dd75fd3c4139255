"""Helpers for the integration tests: run the CLI in-process, write job specs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from teenet.cli.main import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the `teenet` CLI in this process (the daemons are real separate processes)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys, *args: str):
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def write_job(directory: Path, name: str, text: str) -> Path:
    p = directory / "jobs" / f"{name}.yaml"
    p.write_text(text)
    return p


def job_status(capsys, net, job_id):
    """`teenet job status JOB --json` as the sandbox's analyst sees it."""
    return cli_json(capsys, "job", "status", job_id, "--config", net / "analyst.yaml")


def until_status(capsys, net, job_id, done, timeout):
    """Poll the job's status until `done(status)` or `timeout` seconds; the last status."""
    deadline = time.monotonic() + timeout
    st = job_status(capsys, net, job_id)
    while not done(st) and time.monotonic() < deadline:
        time.sleep(0.1)
        st = job_status(capsys, net, job_id)
    return st
