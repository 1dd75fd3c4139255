"""A real sandbox network for fault tests: processes we can kill and restart, proxies we
can hold mid-stream or partition, and an analyst client that submits, waits and opens results.

The bank reaches compute-1 through its own proxy (`bank_wire`: the bank's node reads a copy
of the consortium file that points compute-1 at the proxy), so a test can stop the bank's
upload mid-stream. compute-1 reaches the coordinator through `compute_coordinator_wire`.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pyarrow.parquet as pq
import yaml

from netproxy import RecordingProxy
from teenet.cli.sandbox import PROCESS_FILE, _alive, _wait_ready, start_process
from teenet.config import load_analyst_config
from teenet.identity import MemberKeys
from teenet.jobspec import parse_job_spec, sign_job
from teenet.node.links import CoordinatorLink
from teenet.node.results import fetch_and_open
from teenet.proto import teenet_pb2 as pb

TERMINAL = {"succeeded", "failed", "cancelled"}
TABLES = {"bank": "customers", "telco": "usage", "insurer": "policies"}


class Hold:
    """A proxy tamper hook: forward the first `budget` upstream bytes, then stop forwarding
    (the sender's stream stalls mid-way) until `release()`, for at most `limit` seconds."""

    def __init__(self, budget: int, limit: float = 60.0) -> None:
        self.budget, self.limit = budget, limit
        self.passed = 0
        self.holding = threading.Event()
        self._release = threading.Event()

    def __call__(self, direction: str, data: bytes) -> bytes:
        if direction == "up" and not self._release.is_set():
            if self.passed >= self.budget:
                self.holding.set()
                self._release.wait(self.limit)
            self.passed += len(data)
        return data

    def release(self) -> None:
        self._release.set()


@dataclass
class FaultNet:
    directory: Path
    bank_wire: RecordingProxy
    compute_coordinator_wire: RecordingProxy
    analyst_cfg: object = None
    keys: MemberKeys | None = None
    link: CoordinatorLink | None = None
    submitted: list[str] = field(default_factory=list)

    def __truediv__(self, other: str) -> Path:
        return self.directory / other

    # processes ------------------------------------------------------------------------------
    def _procs(self) -> list[dict]:
        return json.loads((self.directory / PROCESS_FILE).read_text())

    def pid(self, name: str) -> int:
        return next(p for p in self._procs() if p["name"] == name)["pid"]

    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up of any kind, as a crash or a power cut."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"{name} survived SIGKILL"

    def restart(self, name: str) -> None:
        procs = self._procs()
        old = next(p for p in procs if p["name"] == name)
        assert not _alive(old["pid"]), f"{name} is still running"
        fresh = start_process(self.directory, name, old["args"])
        (self.directory / PROCESS_FILE).write_text(json.dumps([fresh if p is old else p for p in procs]))
        _wait_ready(fresh, "listening" if name == "coordinator" else " up; enclave ", 60)

    def revive(self) -> None:
        """Restart whatever a failed test left dead, and put the proxies back to forwarding."""
        self.bank_wire.tamper = None
        self.bank_wire.heal()
        self.compute_coordinator_wire.heal()
        for p in self._procs():
            if not _alive(p["pid"]):
                self.restart(p["name"])

    def log(self, name: str) -> str:
        return (self.directory / "logs" / f"{name}.log").read_text(errors="replace")

    # the analyst ------------------------------------------------------------------------------
    def connect(self) -> None:
        self.analyst_cfg = load_analyst_config(self.directory / "analyst.yaml")
        self.keys = MemberKeys.load(self.analyst_cfg.keys_dir)
        self.link = CoordinatorLink(self.analyst_cfg.coordinator, self.analyst_cfg.tls,
                                    self.analyst_cfg.consortium.coordinator_name)

    def submit(self, spec_text: str) -> str:
        """Validate, add a fresh nonce, sign and submit (as `teenet job submit` does)."""
        spec = parse_job_spec(spec_text, source="fault-test.yaml")
        signed = sign_job(spec, self.analyst_cfg.analyst, self.analyst_cfg.consortium.name, self.keys.signing)
        job_id = self.link.stub.SubmitJob(signed.to_proto(), timeout=10).job_id
        self.submitted.append(job_id)
        return job_id

    def status(self, job_id: str) -> pb.JobStatus | None:
        try:
            return self.link.stub.GetJob(pb.JobRef(job_id=job_id), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return None
            raise

    def wait_state(self, job_id: str, states: set[str], timeout: float = 60.0) -> pb.JobStatus:
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self.status(job_id) or st
            if st is not None and st.state in states:
                return st
            time.sleep(0.1)
        raise AssertionError(f"job {job_id[:12]} stayed {st.state if st else 'unknown'} "
                             f"({st.reason if st else ''}) for {timeout:.0f}s, expected {sorted(states)}")

    def results(self, job_id: str, recipient: str = "analyst"):
        """Fetch, verify and open the analyst's results, as `teenet job result` does."""
        opened, _claims = fetch_and_open(self.link.stub, job_id, recipient, self.keys,
                                         self.analyst_cfg.consortium, sim_dir=self.directory / "sim-platform")
        return {r.kind: r for r in opened}

    def mailbox(self, job_id: str) -> list:
        """The sealed results the coordinator holds for a job (any recipient), from its own reply."""
        parts = list(self.link.stub.FetchResultStream(pb.FetchResultsRequest(job_id=job_id, recipient="analyst"),
                                                      timeout=10))
        heads = [p.head for p in parts if p.WhichOneof("part") == "head"]
        return heads + list(parts[0].opening.status.results)

    def listed(self) -> set[str]:
        jobs = self.link.stub.ListJobs(pb.ListJobsRequest(limit=1000), timeout=10).jobs
        return {j.job_id for j in jobs}

    def audit(self, node: str) -> list[dict]:
        from teenet.audit import read_log

        entries, _ = read_log(self.directory / "state" / node / "audit.db")
        return [dict(e.event) for e in entries]

    def close(self) -> None:
        if self.link is not None:
            self.link.close()


def setup_fault_network(d: Path, *, rows: int, computes: int = 1) -> FaultNet:
    """init a sandbox in `d`, put the proxies in place, start it. The caller downs it."""
    from teenet.cli.sandbox import init_sandbox, up_sandbox

    init_sandbox(d, rows=rows, computes=computes)
    consortium = yaml.safe_load((d / "consortium.yaml").read_text())
    compute_port = int(consortium["members"]["compute-1"]["endpoint"].rsplit(":", 1)[1])
    coordinator_port = int(consortium["coordinator"]["endpoint"].rsplit(":", 1)[1])
    bank_wire = RecordingProxy(compute_port)
    compute_coordinator_wire = RecordingProxy(coordinator_port)
    text = (d / "consortium.yaml").read_text()
    (d / "consortium-bank.yaml").write_text(text.replace(f"127.0.0.1:{compute_port}", f"127.0.0.1:{bank_wire.port}"))
    bank = (d / "bank.yaml").read_text()
    assert "consortium: consortium.yaml" in bank
    (d / "bank.yaml").write_text(bank.replace("consortium: consortium.yaml", "consortium: consortium-bank.yaml"))
    with open(d / "compute-1.yaml", "a") as fh:
        fh.write(f"coordinator: 127.0.0.1:{compute_coordinator_wire.port}\n")
    up_sandbox(d)
    net = FaultNet(d, bank_wire, compute_coordinator_wire)
    net.connect()
    return net


def key_sets(directory: Path) -> dict[str, set[int]]:
    return {p: set(pq.read_table(directory / "data" / p / f"{t}.parquet", columns=["customer_id"])
                   ["customer_id"].to_pylist()) for p, t in TABLES.items()}


def psi_size(result) -> int:
    """The intersection size in a released `size` result (JSON with a size field)."""
    body = json.loads(result.payload)
    for key in ("size", "intersection_size", "count"):
        if isinstance(body.get(key), int):
            return body[key]
    raise AssertionError(f"no size in {body}")
