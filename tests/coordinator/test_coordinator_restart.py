"""The coordinator as a real process: kill -9 mid-job, restart, nothing lost; SIGTERM stops
it cleanly with a signed checkpoint over the whole audit chain."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator_testkit import World, make_world
from teenet.audit import load_audit_key, read_log, verify_chain
from teenet.identity import b64_raw
from teenet.pki import DevPki, TlsFiles, secure_channel
from teenet.proto import teenet_pb2 as pb
from teenet.proto import teenet_pb2_grpc as rpc

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_consortium(path: Path, world: World) -> None:
    lines = ["consortium: test-consortium",
             'coordinator: {name: coordinator, endpoint: "127.0.0.1:7400"}',
             f"attestation: {{allow_simulated: true, measurements: ['{'ab' * 48}']}}",
             "members:"]
    for name, role in (("alice", "analyst"), ("bank", "data"), ("telco", "data"), ("enclave", "compute")):
        keys = world.keys[name].public()
        lines += [f"  {name}:", f"    role: {role}", f"    signing_key: {b64_raw(keys.signing)}",
                  f"    hpke_key: {b64_raw(keys.hpke)}"]
        if role == "compute":
            lines.append('    endpoint: "127.0.0.1:7100"')
    path.write_text("\n".join(lines) + "\n")


class Process:
    def __init__(self, config: Path, log: Path) -> None:
        self.log = log.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "teenet.cli.main", "coordinator", "serve",
                                      "--config", str(config)], stdout=self.log, stderr=self.log, env=env)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def wait_serving(port: int, tls: TlsFiles, proc: Process, log: Path) -> None:
    deadline = time.monotonic() + 30
    with secure_channel(f"127.0.0.1:{port}", tls, server_name="coordinator") as ch:
        health = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if proc.proc.poll() is not None:
                pytest.fail(f"coordinator exited with {proc.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service="teenet.v1.Coordinator"), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    pytest.fail(f"coordinator did not become healthy: {log.read_text()[-2000:]}")


def test_kill_9_then_restart_loses_nothing_and_the_job_continues(tmp_path):
    world = make_world()
    pki = DevPki.create(tmp_path / "pki")
    tls = {name: pki.issue(name) for name in ("coordinator", "alice", "bank", "telco", "enclave")}
    write_consortium(tmp_path / "consortium.yaml", world)
    port = free_port()
    config = tmp_path / "coordinator" / "coordinator.yaml"
    config.parent.mkdir(mode=0o700)  # the state folder by default: it holds the audit key
    config.write_text(f'name: coordinator\nlisten: "127.0.0.1:{port}"\nconsortium: ../consortium.yaml\n'
                      f"checkpoint_every: 1000\n"
                      f"tls: {{ca: ../pki/ca.pem, cert: ../pki/coordinator.pem, key: ../pki/coordinator.key}}\n")
    log = tmp_path / "coordinator.log"

    channels: list[grpc.Channel] = []

    def stub(member: str) -> rpc.CoordinatorStub:
        channels.append(secure_channel(f"127.0.0.1:{port}", tls[member], server_name="coordinator"))
        return rpc.CoordinatorStub(channels[-1])

    first = Process(config, log)
    try:
        wait_serving(port, tls["alice"], first, log)
        raw, analyst, sig = world.signed_job()
        job_id = stub("alice").SubmitJob(pb.SignedJob(canonical_spec=raw, analyst=analyst, signature=sig),
                                         timeout=10).job_id
        d_raw, d_sig = world.decision(job_id, "bank")
        stub("bank").SubmitDecision(pb.SignedDecision(job_id=job_id, party="bank", decision=d_raw,
                                                      signature=d_sig), timeout=10)
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(10) == -signal.SIGKILL
    finally:
        first.close()

    second = Process(config, log)
    try:
        wait_serving(port, tls["alice"], second, log)
        status = stub("alice").GetJob(pb.JobRef(job_id=job_id), timeout=10)
        assert status.state == "awaiting_approvals"
        assert [(d.party, d.decision) for d in status.decisions] == [("bank", "approved"), ("telco", "pending")]
        d_raw, d_sig = world.decision(job_id, "telco")
        stub("telco").SubmitDecision(pb.SignedDecision(job_id=job_id, party="telco", decision=d_raw,
                                                       signature=d_sig), timeout=10)
        items = stub("enclave").Poll(pb.PollRequest(node="enclave"), timeout=10).items
        assert [(i.kind, i.job_id) for i in items] == [("compute", job_id)]
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(20) == 0
    finally:
        second.close()
        for ch in channels:
            ch.close()

    text = log.read_text()
    assert "awaiting_approvals -> approved" in text          # one log line per state change
    assert d_sig.hex() not in text and raw.decode() not in text
    entries, checkpoints = read_log(tmp_path / "coordinator" / "coordinator.db")
    audit_key = load_audit_key(tmp_path / "coordinator" / "audit.key", create=False)
    report = verify_chain(entries, checkpoints, audit_key.public_key())
    assert report.ok, report.first_break
    assert checkpoints[-1].seq == entries[-1].seq             # the shutdown checkpoint pins the tail
    assert [e.event.get("to") for e in entries if e.event.get("type") == "job.state"] == \
        ["awaiting_approvals", "approved"]


def test_a_bad_config_is_one_line_and_exit_1(tmp_path):
    config = tmp_path / "coordinator.yaml"
    config.write_text('name: coordinator\nlisten: "127.0.0.1:1"\nconsortium: missing.yaml\n'
                      "tls: {ca: ca.pem, cert: c.pem, key: c.key}\n")
    proc = subprocess.run([sys.executable, "-m", "teenet.cli.main", "coordinator", "serve", "--config",
                           str(config)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "missing.yaml" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
