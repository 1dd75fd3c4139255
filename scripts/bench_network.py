"""A real sandbox network for the benchmark: own Parquet tables, jobs timed end to end.

`BenchNetwork` makes a sandbox (teenet.cli.sandbox) whose parties hold the benchmark's
tables, starts the five daemons as processes on loopback, and runs jobs as the analyst
does: validate, sign, submit, wait, fetch, verify the enclave's evidence and signature,
decrypt. `run_job` times submit -> verified result and reads the coordinator's own
timestamps (read-only) to split that time per hop. Each daemon's peak memory is read
from /proc/<pid>/status (VmHWM) and can be reset between cases (clear_refs 5).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

POLL_SECONDS = 0.025  # between status polls when the coordinator answers without waiting


@dataclass
class JobRun:
    name: str
    job_id: str
    state: str
    reason: str
    seconds: float                       # submit -> verified, decrypted results
    hops: dict[str, float] = field(default_factory=dict)
    results: list[Any] = field(default_factory=list)  # OpenedResult
    claims: Any = None


class BenchNetwork:
    """A sandbox consortium on loopback whose parties hold the given tables."""

    def __init__(self, directory: Path, own: dict[str, dict[str, Path]], *, synthetic_rows: int = 500) -> None:
        from teenet.cli.sandbox import init_sandbox

        self.directory = directory.resolve()
        init_sandbox(self.directory, rows=synthetic_rows, own=own, force=True, jobs_from_data=False)
        self._let_insurer_train()
        self.up = False
        self.analyst = None

    def _let_insurer_train(self) -> None:
        """The sandbox insurer auto-approves psi and aggregate only; this owner also allows train."""
        path = self.directory / "insurer.yaml"
        if not path.exists():  # the insurer holds no table in this run
            return
        config = yaml.safe_load(path.read_text())
        for rule in config["policy"]["auto_approve"]:
            if "train" not in rule["functions"]:
                rule["functions"].append("train")
        from teenet.yamlload import dump_yaml

        path.write_text(dump_yaml(config, header="# insurer's node (benchmark: auto-approves train too)\n"))

    def start(self) -> None:
        from teenet.cli.sandbox import up_sandbox

        up_sandbox(self.directory)
        self.up = True
        self.analyst = AnalystClient(self.directory / "analyst.yaml")

    def stop(self) -> None:
        from teenet.cli.sandbox import down_sandbox

        if self.analyst is not None:
            self.analyst.link.close()
            self.analyst = None
        if self.up:
            down_sandbox(self.directory)
            self.up = False

    def __enter__(self) -> "BenchNetwork":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # processes ----------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        procs = json.loads((self.directory / "run" / "processes.json").read_text())
        return {p["name"]: int(p["pid"]) for p in procs}

    def reset_peaks(self) -> bool:
        """Reset every daemon's peak RSS to its current RSS (Linux clear_refs 5)."""
        ok = True
        for pid in self.pids().values():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    def memory(self) -> dict[str, dict[str, float]]:
        """Each daemon's peak (VmHWM) and current (VmRSS) resident memory, MiB."""
        out = {}
        for name, pid in self.pids().items():
            out[name] = {"peak_mib": _status_mib(pid, "VmHWM"), "rss_mib": _status_mib(pid, "VmRSS")}
        return out

    # jobs ---------------------------------------------------------------------------------
    def write_job(self, name: str, text: str) -> Path:
        path = self.directory / "jobs" / f"{name}.yaml"
        path.write_text(text)
        return path

    def run_job(self, name: str, text: str, timeout: float = 600.0) -> JobRun:
        """Submit a job as the analyst and wait for its verified results (or its failure)."""
        from teenet.jobspec import sign_job
        from teenet.node.results import fetch_and_open
        from teenet.proto import teenet_pb2 as pb

        assert self.analyst is not None, "start() the network first"
        analyst = self.analyst
        spec = analyst.validate(self.write_job(name, text))  # as `teenet job submit` does, before the clock
        start = time.perf_counter()
        signed = sign_job(spec, analyst.name, analyst.consortium.name, analyst.keys.signing)
        job_id = analyst.stub.SubmitJob(signed.to_proto(), timeout=10).job_id
        deadline = time.monotonic() + timeout
        seen = 0.0
        while True:  # a long poll, as `teenet job submit --wait` does
            status = analyst.stub.GetJob(pb.JobRef(job_id=job_id, wait_ms=5000, updated_after=seen), timeout=15)
            if status.state in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {name} did not finish within {timeout:.0f}s (state {status.state})")
            if status.updated_at == seen:
                time.sleep(POLL_SECONDS)  # the coordinator did not wait
            seen = status.updated_at
        if status.state != "succeeded":
            return JobRun(name, job_id, status.state, status.reason, time.perf_counter() - start,
                          self.hops(job_id))
        opened, claims = fetch_and_open(analyst.stub, job_id, analyst.name, analyst.keys,
                                        analyst.consortium, sim_dir=self.directory / "sim-platform")
        seconds = time.perf_counter() - start
        return JobRun(name, job_id, status.state, "", seconds, self.hops(job_id), opened, claims)

    def run_job_shell(self, name: str, text: str, timeout: float = 600.0) -> "ShellRun":
        """The same job as a user runs it from a shell: one `teenet job submit --wait --out DIR`
        process, which submits, waits, then fetches, verifies, decrypts and writes the results,
        timed from its start to its exit. The spec is validated first, outside the clock, as the
        README's own-data path does (`teenet job validate` records the pass, so submit does not
        import the models)."""
        import subprocess
        import sys

        teenet = Path(sys.executable).with_name("teenet")
        config = self.directory / "analyst.yaml"
        spec = self.write_job(name, text)
        env = dict(os.environ, TEENET_CACHE_DIR=str(self.directory / "cli-cache"))
        env.pop("TEENET_CONFIG", None)

        def run(*args: object) -> tuple[subprocess.CompletedProcess, float]:
            start = time.perf_counter()
            done = subprocess.run([str(teenet), *map(str, args)], capture_output=True, text=True, env=env,
                                  timeout=timeout)
            return done, time.perf_counter() - start

        checked, _ = run("job", "validate", spec, "--config", config)
        if checked.returncode != 0:
            raise SystemExit(f"bench: job {name} does not validate: {checked.stderr.strip()}")
        done, seconds = run("job", "submit", spec, "--config", config, "--wait", "--json", "--timeout", str(timeout),
                            "--out", self.directory / "shell-results" / name)
        try:
            data = json.loads(done.stdout)
        except ValueError:
            data = {}
        job_id = data.get("job_id", "")
        if done.returncode != 0 or "result" not in data:
            return ShellRun(name, job_id, "failed", data.get("reason") or done.stderr.strip() or done.stdout[-300:],
                            seconds)
        files = [Path(f) for f in data["result"]["files"]]
        return ShellRun(name, job_id, "succeeded", "", seconds, files, self.hops(job_id))

    def hops(self, job_id: str) -> dict[str, float]:
        """Seconds from submission to each step, from the coordinator's records (read-only)."""
        db = self.directory / "state" / "coordinator" / "coordinator.db"
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            created, approved, ended = conn.execute(
                "SELECT created_at, approved_at, terminal_at FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            decided = conn.execute("SELECT max(received_at) FROM decisions WHERE job_id = ?", (job_id,)).fetchone()[0]
            offered = conn.execute("SELECT received_at FROM offers WHERE job_id = ?", (job_id,)).fetchone()
            uploads = conn.execute("SELECT min(reported_at), max(reported_at) FROM uploads WHERE job_id = ?",
                                   (job_id,)).fetchone()
            running = conn.execute("SELECT min(at) FROM status_events WHERE job_id = ? AND event = 'running'",
                                   (job_id,)).fetchone()[0]
            posted = conn.execute("SELECT max(posted_at) FROM results WHERE job_id = ?", (job_id,)).fetchone()[0]
        finally:
            conn.close()
        marks = {"all_decisions": decided, "approved": approved, "offer_posted": offered[0] if offered else None,
                 "first_upload_reported": uploads[0], "last_upload_reported": uploads[1],
                 "running_reported": running, "results_posted": posted, "terminal": ended}
        return {k: round(v - created, 3) for k, v in marks.items() if v is not None}


@dataclass
class ShellRun:
    """A job run from the shell: one `teenet job submit --wait --out DIR` process."""

    name: str
    job_id: str
    state: str
    reason: str
    seconds: float                       # the process, start to exit: submit, wait, fetch, verify, write
    files: list[Path] = field(default_factory=list)
    hops: dict[str, float] = field(default_factory=dict)


TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class AnalystClient:
    """The analyst's config, keys and mutual-TLS link to the coordinator."""

    def __init__(self, config: Path) -> None:
        from teenet.config import load_analyst_config
        from teenet.identity import MemberKeys
        from teenet.node.links import CoordinatorLink

        cfg = load_analyst_config(config)
        self.name, self.consortium = cfg.analyst, cfg.consortium
        self.keys = MemberKeys.load(cfg.keys_dir)
        self.link = CoordinatorLink(cfg.coordinator, cfg.tls, self.consortium.coordinator_name)

    @property
    def stub(self):
        return self.link.stub

    def validate(self, path: Path):
        """Schema, the consortium's catalog and the function's parameters, as `teenet job validate`."""
        from teenet.jobspec import check_against_consortium, parse_job_spec
        from teenet.models import InputSpec, ReleaseRequest, validate_job

        spec = parse_job_spec(path, source=str(path))
        check_against_consortium(spec, self.consortium, source=str(path))
        validate_job(spec.function, [InputSpec(i.party, i.table, tuple(i.keys), tuple(i.columns))
                                     for i in spec.inputs],
                     dict(spec.params), [ReleaseRequest(r.kind, tuple(r.to)) for r in spec.release])
        return spec


def _status_mib(pid: int, field_name: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def psi_job(name: str, table: str, parties: tuple[str, ...] = ("bank", "telco")) -> str:
    inputs = "".join(f"  - {{party: {p}, table: {table}, key: customer_id, columns: []}}\n" for p in parties)
    return (f"name: {name}\nfunction: psi\ncompute: compute-1\ninputs:\n{inputs}"
            "release:\n  - {kind: size, to: [analyst]}\n")


def train_job(name: str, tables: dict[str, str], columns: dict[str, list[str]], model: str,
              label: str, test_fraction: float, seed: int, hyperparameters: dict[str, Any] | None = None) -> str:
    inputs = "".join(f"  - {{party: {p}, table: {t}, key: customer_id, columns: [{', '.join(columns[p])}]}}\n"
                     for p, t in tables.items())
    hyper = f", hyperparameters: {json.dumps(hyperparameters)}" if hyperparameters else ""
    return (f"name: {name}\nfunction: train\ncompute: compute-1\ninputs:\n{inputs}"
            f"params: {{layout: vertical, model: {model}, label: {{party: bank, column: {label}}}, "
            f"test_fraction: {test_fraction}, seed: {seed}{hyper}}}\n"
            "release:\n  - {kind: model, to: [analyst]}\n  - {kind: metrics, to: [analyst]}\n")
