"""Shared tools for the attack suite: a real sandbox network on loopback, proxies that tamper
with TLS records, the members' identities (TLS and keys) for direct calls, and readers for
job status and the audit chains.

Nothing here fakes a component: the daemons are the real processes started by
`teenet.cli.sandbox`; the attacker uses the sandbox's own PKI, keys and simulated platform
(what an insider or a compromised host would hold) and the same library code the daemons run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import grpc
import yaml

from netproxy import RecordingProxy

from teenet.proto import teenet_pb2 as pb
from teenet.proto import teenet_pb2_grpc as rpc

TERMINAL = {"succeeded", "failed", "cancelled"}


# --- the network ---------------------------------------------------------------------------

@dataclass
class AttackNet:
    directory: Path
    compute_wire: RecordingProxy
    coordinator_wire: RecordingProxy | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __truediv__(self, other: str) -> Path:
        return self.directory / other

    # identities ------------------------------------------------------------------------
    def tls(self, member: str):
        from teenet.pki import TlsFiles

        pki = self.directory / "pki"
        return TlsFiles(pki / "ca.pem", pki / f"{member}.pem", pki / f"{member}.key")

    def keys(self, member: str):
        from teenet.identity import MemberKeys

        return MemberKeys.load(self.directory / "members" / member / "keys")

    @property
    def consortium(self):
        from teenet.config import load_consortium

        return load_consortium(self.directory / "consortium.yaml")

    def listen_port(self, config: str) -> int:
        """The port a daemon really listens on (behind any proxy), from its own config."""
        data = yaml.safe_load((self.directory / f"{config}.yaml").read_text())
        return int(data["listen"].rsplit(":", 1)[1])

    def coordinator_stub(self, member: str, port: int | None = None):
        from teenet.pki import secure_channel

        port = port or self.listen_port("coordinator")
        channel = secure_channel(f"127.0.0.1:{port}", self.tls(member), server_name="coordinator")
        return channel, rpc.CoordinatorStub(channel)

    def compute_stub(self, member: str, compute: str = "compute-1"):
        from teenet.pki import secure_channel

        channel = secure_channel(f"127.0.0.1:{self.listen_port(compute)}", self.tls(member), server_name=compute)
        return channel, rpc.ComputeStub(channel)

    # audit -----------------------------------------------------------------------------
    def audit(self, node: str) -> list[dict]:
        from teenet.audit import read_log

        entries, _ = read_log(self.directory / "state" / node / "audit.db")
        return [dict(e.event) for e in entries]

    def audit_for(self, node: str, job_id: str, event: str | None = None) -> list[dict]:
        return [e for e in self.audit(node) if e.get("job_id") == job_id and (event is None or e["event"] == event)]

    def log_text(self, name: str) -> str:
        return (self.directory / "logs" / f"{name}.log").read_text(errors="replace")


def edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    from teenet.yamlload import dump_yaml

    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(dump_yaml(data))


def interpose(directory: Path, *, coordinator: bool = True) -> tuple[RecordingProxy | None, RecordingProxy]:
    """Point the consortium's compute-1 (and coordinator) endpoints at recording proxies."""
    path = directory / "consortium.yaml"
    text = path.read_text()
    data = yaml.safe_load(text)
    compute_port = int(data["members"]["compute-1"]["endpoint"].rsplit(":", 1)[1])
    compute_wire = RecordingProxy(compute_port)
    text = text.replace(f"127.0.0.1:{compute_port}", f"127.0.0.1:{compute_wire.port}")
    coordinator_wire = None
    if coordinator:
        coord_port = int(data["coordinator"]["endpoint"].rsplit(":", 1)[1])
        coordinator_wire = RecordingProxy(coord_port)
        text = text.replace(f"127.0.0.1:{coord_port}", f"127.0.0.1:{coordinator_wire.port}")
    path.write_text(text)
    return coordinator_wire, compute_wire


def start_node(directory: Path, name: str, *, pythonpath: Path | None = None, timeout: float = 60.0) -> dict:
    """Start `teenet node serve --config <name>.yaml` as a process (optionally from another code
    tree) and register it in the sandbox's process file so `down_sandbox` stops it."""
    from teenet.cli.sandbox import PROCESS_FILE, _wait_ready

    log = directory / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    args = ["node", "serve", "--config", f"{name}.yaml"]
    offset = log.stat().st_size if log.exists() else 0  # a restart appends: wait for the new start
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "teenet.cli.main", "--verbose", *args], cwd=directory,
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    p = {"name": name, "pid": proc.pid, "log": str(log), "args": args, "log_offset": offset}
    pf = directory / PROCESS_FILE
    procs = json.loads(pf.read_text()) if pf.exists() else []
    pf.parent.mkdir(parents=True, exist_ok=True)
    pf.write_text(json.dumps(procs + [p], indent=2))
    _wait_ready(p, " up; enclave ", timeout)
    return p


def restart_node(directory: Path, name: str, timeout: float = 30.0) -> dict:
    """Stop the running `name` daemon of this sandbox (SIGTERM, by its pid in the process
    file, which this test run started) and start it again with the same state."""
    import signal

    from teenet.cli.sandbox import PROCESS_FILE

    pf = directory / PROCESS_FILE
    procs = json.loads(pf.read_text())
    mine = [p for p in procs if p["name"] == name]
    for p in mine:
        try:
            os.kill(p["pid"], signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:  # a child of this test process stays a zombie until reaped
                if os.waitpid(p["pid"], os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                try:
                    os.kill(p["pid"], 0)
                except ProcessLookupError:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError(f"{name} (pid {p['pid']}) did not stop within {timeout:.0f}s")
    pf.write_text(json.dumps([p for p in procs if p["name"] != name], indent=2))
    return start_node(directory, name)


def one_byte_copy(dest: Path) -> tuple[Path, str]:
    """Copy the installed teenet packages into `dest` in their import layout and change ONE
    byte of one module (a letter in a docstring). Returns (changed file, what changed)."""
    import shutil

    from teenet.attestation.measure import installed_package_dirs

    dirs = installed_package_dirs()
    root = dest / "teenet"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(dirs["teenet"], root, ignore=ignore)
    for name, folder in dirs.items():
        if name != "teenet":
            sub = root / name.split(".", 1)[1]
            if sub.exists():
                shutil.rmtree(sub)
            shutil.copytree(folder, sub, ignore=ignore)
    target = root / "models" / "psi.py"
    data = bytearray(target.read_bytes())
    i = data.index(b"intersection") if b"intersection" in data else data.index(b"the")
    before = chr(data[i])
    data[i] = ord(before.upper()) if before.islower() else ord(before.lower())
    target.write_bytes(bytes(data))
    return target, f"{before!r} -> {chr(data[i])!r} at byte {i} of teenet/models/psi.py"


# --- the analyst, over gRPC (what `teenet job ...` does) ------------------------------------

class Analyst:
    def __init__(self, net: AttackNet, member: str = "analyst", port: int | None = None) -> None:
        self.net = net
        self.name = member
        self.channel, self.stub = net.coordinator_stub(member, port)
        self.keys = net.keys("analyst") if member == "analyst" else None

    def close(self) -> None:
        self.channel.close()

    def sign(self, text: str, *, key=None, analyst: str = "analyst"):
        from teenet.jobspec import parse_job_spec, sign_job

        spec = parse_job_spec(text, source="attack job")
        return sign_job(spec, analyst, self.net.consortium.name, key or self.keys.signing)

    def submit(self, text: str, *, validate: bool = True) -> str:
        """Sign and submit a job. `validate=False` skips the CLI's own checks, as a hostile
        analyst would."""
        if validate:
            from teenet.jobspec import check_against_consortium, parse_job_spec
            from teenet.models import InputSpec, ReleaseRequest, validate_job

            spec = parse_job_spec(text, source="attack job")
            check_against_consortium(spec, self.net.consortium)
            validate_job(spec.function, [InputSpec(i.party, i.table, tuple(i.keys), tuple(i.columns))
                                         for i in spec.inputs],
                         dict(spec.params), [ReleaseRequest(r.kind, tuple(r.to)) for r in spec.release])
        signed = self.sign(text)
        return self.stub.SubmitJob(signed.to_proto(), timeout=10).job_id

    def status(self, job_id: str) -> pb.JobStatus:
        return self.stub.GetJob(pb.JobRef(job_id=job_id), timeout=10)

    def wait(self, job_id: str, states: Iterable[str] = TERMINAL, timeout: float = 60.0) -> pb.JobStatus:
        states = set(states)
        deadline = time.monotonic() + timeout
        st = self.status(job_id)
        while st.state not in states:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id[:12]} stayed {st.state} ({st.reason})")
            time.sleep(0.1)
            st = self.status(job_id)
        return st

    def cancel(self, job_id: str, reason: str) -> pb.JobStatus:
        from teenet.canonical import domain_message

        signature = self.keys.signing.sign(domain_message("teenet/cancel/v1", bytes.fromhex(job_id),
                                                          reason.encode("utf-8")))
        return self.stub.CancelJob(pb.CancelRequest(job_id=job_id, analyst=self.name, reason=reason,
                                                    signature=signature), timeout=10)

    def result(self, job_id: str):
        """What `teenet job result` does: fetch, verify offline, open."""
        from teenet.node.results import fetch_and_open

        return fetch_and_open(self.stub, job_id, "analyst", self.keys, self.net.consortium,
                              sim_dir=self.net / "sim-platform")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def plaintext_needles(net: AttackNet, parties: Iterable[tuple[str, str]], rows: int = 150) -> list[bytes]:
    """Values of the input tables (ids as text and as int64, floats as text) to search for."""
    import pyarrow.parquet as pq

    needles: list[bytes] = []
    for party, table in parties:
        df = pq.read_table(net / "data" / party / f"{table}.parquet").to_pandas().head(rows)
        for cid in df["customer_id"]:
            needles += [str(cid).encode(), int(cid).to_bytes(8, "little")]
        for col in df.columns:
            if df[col].dtype.kind == "f":
                needles += [repr(float(v)).encode() for v in df[col] if len(repr(float(v))) >= 7]
    return needles


def leaked(needles: list[bytes], blob: bytes) -> list[bytes]:
    return [n for n in needles if len(n) >= 7 and n in blob]


# --- tampering below TLS ---------------------------------------------------------------------

class TlsRecordTamper:
    """A `RecordingProxy.tamper` hook that parses the client->server byte stream of each
    connection into TLS records and, once `after` bytes have passed (the handshake and the
    start of the upload), applies `action` to the next application-data record:
    flip (one bit), drop, duplicate, reorder (swap with the following record).
    Each pump thread is one connection direction, so state is kept per thread."""

    def __init__(self, action: str, after: int = 6000) -> None:
        assert action in ("flip", "drop", "duplicate", "reorder")
        self.action = action
        self.after = after
        self.applied = 0
        self._local = threading.local()
        self._lock = threading.Lock()

    def __call__(self, direction: str, data: bytes) -> bytes | None:
        if direction != "up":
            return data
        st = self._local
        if not hasattr(st, "buf"):
            st.buf, st.seen, st.done, st.held = bytearray(), 0, False, None
        st.buf += data
        out = bytearray()
        while len(st.buf) >= 5:
            length = int.from_bytes(st.buf[3:5], "big")
            if len(st.buf) < 5 + length:
                break
            record = bytes(st.buf[:5 + length])
            del st.buf[:5 + length]
            offset, st.seen = st.seen, st.seen + len(record)
            if st.held is not None:  # reorder: the held record goes after this one
                out += record + st.held
                st.held = None
                continue
            if st.done or record[0] != 0x17 or offset < self.after:
                out += record
                continue
            st.done = True
            with self._lock:
                self.applied += 1
            if self.action == "flip":
                out += record[:-1] + bytes([record[-1] ^ 0x01])
            elif self.action == "duplicate":
                out += record + record
            elif self.action == "reorder":
                st.held = record
            # drop: nothing
        return bytes(out)


class Stall:
    """A tamper hook that holds client->server bytes until released (bounded)."""

    def __init__(self, limit: float = 15.0) -> None:
        self.release = threading.Event()
        self.limit = limit
        self.held = 0

    def __call__(self, direction: str, data: bytes) -> bytes | None:
        if direction == "up" and not self.release.is_set():
            self.held += 1
            self.release.wait(self.limit)
        return data


# --- raw gRPC --------------------------------------------------------------------------------

def raw_unary(channel: grpc.Channel, method: str, payload: bytes, timeout: float = 10.0) -> bytes:
    """Call `method` with `payload` as the serialized request, bypassing protobuf."""
    call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return call(payload, timeout=timeout)


def rpc_error(fn: Callable[[], Any]) -> grpc.RpcError:
    try:
        fn()
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call was accepted")
