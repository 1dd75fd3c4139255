"""A partition upload to a cluster worker that breaks is sent again, alone (node/cluster_ship.py).

Real components end to end: two workers, each a real upload service over TLS with its own
per-job session (worker 0 in this process, worker 1 in a child process, since a worker's
job state is per process), a leader's cluster offer signed and verified as a data node
verifies it, the data node's real catalog (a Parquet file), audit log and store, and
tests/netproxy.py between the data node and worker 0 to cut a stream part-way. Shown: the
broken partition is sent again over a fresh connection and lands once with exactly its
rows, the other partition is sent once, `shipped` is written once with the fingerprint the
workers computed; a broken stream leaves nothing on the worker; a refusal is not retried;
the attempts are bounded and the job then fails with `input.unshippable` naming the worker;
a partition already received is refused when sent again and never replaced.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from teenet.attestation.measure import enclave_measurement
from teenet.attestation.policy import policy_from_config
from teenet.attestation.roots import default_trust_roots
from teenet.attestation.sim import SimulatedPlatform, UnsafeSimulatedAttester
from teenet.cluster import jobs
from teenet.cluster.ca import ClusterCA, cert_pem, key_pem, new_key
from teenet.cluster.partition import clustered_root, job_normalisation, partition_rows
from teenet.cluster.upload import UploadService
from teenet.negotiation import (ComputeEnclaveSession, ComputeOffer, DataEnclaveSession, HpkeSuite, WorkerEntry,
                                build_cluster_offer, verify_cluster_offer, verify_compute_offer)

PARAMS = {"normalise": {"type": "int"}}
INPUTS = [("bank", "customers", ("customer_id",), ("customer_id", "income"))]
ROWS = 40_000  # about 320 kB sealed per partition: a cut at CUT_AT is well inside the stream
CUT_AT = 64 << 10
PARTITION_KEY = bytes(range(32))


def _policy(measurement: bytes):
    return policy_from_config({"allow_simulated": True, "measurements": [measurement.hex()]}, source="test")


def _held(job_id: str) -> dict:
    """What this process's worker holds of a job: per table its ids, and its arrivals."""
    state = jobs.job(job_id)
    if state is None:
        return {"tables": {}, "arrivals": []}
    return {"tables": {f"{p}/{t}": sorted(tab.column("customer_id").to_pylist()) for (p, t), tab in state.tables.items()},
            "arrivals": [{k: a[k] for k in ("party", "table", "rows", "root")} for a in state.arrivals]}


# worker 1: a child process ----------------------------------------------------------------

def _worker_main(folder: Path) -> None:
    """A worker process: its upload service, its jobs; opens, reports and drops jobs on stdin."""
    cfg = json.loads((folder / "worker.json").read_text())
    platform = SimulatedPlatform.load_or_create(Path(cfg["platform"]))
    measurement = bytes.fromhex(cfg["measurement"])
    attester = UnsafeSimulatedAttester(platform, measurement)
    roots = default_trust_roots(sim_ark=platform.ark)
    cert, key, ca = ((folder / f).read_bytes() for f in ("cert.pem", "key.pem", "ca.pem"))
    upload = UploadService(cert, key, ca, "127.0.0.1").start()
    der = (folder / "cert.der").read_bytes()
    jobs.set_context(jobs.WorkerContext(cfg["name"], attester, roots, der, upload))
    print(json.dumps({"endpoint": upload.endpoint}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "open":
            public = jobs.open_job(req["job"], cfg["partition"], 2, PARTITION_KEY, job_normalisation(PARAMS),
                                   INPUTS, _policy(measurement), bytes.fromhex(req["consortium_ca"]),
                                   HpkeSuite.X25519.value)
            out = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in public.items()}
        elif req["op"] == "held":
            out = _held(req["job"])
        else:
            out = {"dropped": jobs.drop_job(req["job"])}
        print(json.dumps(out), flush=True)
    upload.stop()


class ChildWorker:
    def __init__(self, folder: Path) -> None:
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen([sys.executable, __file__, "worker", str(folder)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=root,
                                     env={"PYTHONPATH": f"{root}:{root / 'tests'}", "PATH": "/usr/bin:/bin"})
        self.endpoint = self._read()["endpoint"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, "the child worker exited"
        return json.loads(line)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# the cluster and the data node --------------------------------------------------------------

@pytest.fixture(scope="module")
def net(sim_platform, tmp_path_factory):
    from teenet.audit import AuditLog
    from teenet.node.catalog import Catalog, CatalogTable
    from teenet.node.store import NodeStore
    from teenet.pki import DevPki

    from netproxy import RecordingProxy

    base = tmp_path_factory.getbasetemp()
    platform_dir = next(d for d in sorted(base.glob("sim-platform*"))
                        if SimulatedPlatform.load_or_create(d).ark == sim_platform.ark)
    measurement = enclave_measurement()
    attester = UnsafeSimulatedAttester(sim_platform, measurement)
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    ca = ClusterCA("test")
    pki = DevPki.create(tmp_path_factory.mktemp("pki"))

    key0 = new_key()
    cert0 = ca.issue("w0", key0.public_key(), hosts=("127.0.0.1",))
    upload0 = UploadService(cert_pem(cert0), key_pem(key0), cert_pem(ca.certificate), "127.0.0.1").start()
    der0 = cert0.public_bytes(serialization.Encoding.DER)
    jobs.set_context(jobs.WorkerContext("w0", attester, roots, der0, upload0))

    folder = tmp_path_factory.mktemp("worker1")
    key1 = new_key()
    cert1 = ca.issue("w1", key1.public_key(), hosts=("127.0.0.1",))
    der1 = cert1.public_bytes(serialization.Encoding.DER)
    (folder / "cert.pem").write_bytes(cert_pem(cert1))
    (folder / "key.pem").write_bytes(key_pem(key1))
    (folder / "ca.pem").write_bytes(cert_pem(ca.certificate))
    (folder / "cert.der").write_bytes(der1)
    (folder / "worker.json").write_text(json.dumps({"platform": str(platform_dir), "measurement": measurement.hex(),
                                                    "name": "w1", "partition": 1}))
    child = ChildWorker(folder)

    proxy0 = RecordingProxy(int(upload0.endpoint.rsplit(":", 1)[1]), max_capture=0)
    proxy1 = RecordingProxy(int(child.endpoint.rsplit(":", 1)[1]), max_capture=0)  # passes all: counts connections

    data = tmp_path_factory.mktemp("bank")
    ids = np.arange(100_000, 100_000 + ROWS)
    pq.write_table(pa.table({"customer_id": ids, "income": ids * 0.25}), data / "customers.parquet")
    audit_log = AuditLog(data / "audit.db", ed25519.Ed25519PrivateKey.generate())
    rt = types.SimpleNamespace(
        name="bank", tls=pki.issue("bank"), store=NodeStore(data / "state.db"), audit_log=audit_log,
        catalog=Catalog({"customers": CatalogTable("customers", "parquet", data / "customers.parquet", None, None)}))
    rt.audit = lambda event, **fields: audit_log.append({"event": event, "node": "bank", **fields})
    holder = types.SimpleNamespace(
        attester=attester, roots=roots, policy=_policy(measurement), pki=pki, child=child, proxies=(proxy0, proxy1),
        certs=(der0, der1), rt=rt, bank_key=x25519.X25519PrivateKey.generate(), ids=ids, reports=[],
        consortium_ca=pki.ca_path.read_bytes())
    holder.role = types.SimpleNamespace(rt=rt, _report=lambda job_id, event, detail: holder.reports.append(
        (job_id, event, detail)))
    yield holder
    for p in (proxy0, proxy1):
        p.close()
    child.close()
    upload0.stop()
    audit_log.close()
    jobs.set_context(None)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    """The shared policy, with a short delay (the policy's own is 1 s, then 2 s)."""
    import teenet.node.data_role as data_role

    monkeypatch.setattr(data_role, "UPLOAD_RETRY_DELAY", 0.05)


class Job:
    """One job offered by a leader with both workers, verified as the data node does."""

    def __init__(self, net, label: str) -> None:
        self.net = net
        self.digest = hashlib.sha256(label.encode()).digest()
        self.id = self.digest.hex()
        ca = net.consortium_ca
        public0 = jobs.open_job(self.id, 0, 2, PARTITION_KEY, job_normalisation(PARAMS), INPUTS, net.policy, ca,
                                HpkeSuite.X25519.value)
        public1 = {k: (bytes.fromhex(v) if k not in ("name", "endpoint") else v)
                   for k, v in net.child.ask(op="open", job=self.id, consortium_ca=ca.hex()).items()}
        workers = [WorkerEntry(p["name"], i, f"127.0.0.1:{proxy.port}", p["hpke_public_key"], p["signing_public_key"],
                               p["evidence"], hashlib.sha256(der).digest(), der)
                   for i, (p, proxy, der) in enumerate(zip((public0, public1), net.proxies, net.certs))]
        leader = ComputeEnclaveSession(self.digest, net.attester)
        part = build_cluster_offer(leader, "compute-1", workers, PARTITION_KEY, {"bank": net.bank_key.public_key()})
        o = leader.offer("compute-1", "127.0.0.1:1")
        offer = ComputeOffer(o.job_id, o.compute, o.suite, o.hpke_public_key, o.signing_public_key, o.evidence,
                             o.endpoint, part)
        verified = verify_compute_offer(offer, self.digest, net.policy, net.roots)
        self.vcluster = verify_cluster_offer(verified, party="bank", party_hpke=net.bank_key, policy=net.policy,
                                             roots=net.roots)
        self.session = DataEnclaveSession(self.digest, net.attester)
        self.connections = [p.connections for p in net.proxies]
        self.audit_from = len(net.rt.audit_log.entries(limit=100_000))

    def ship(self):
        from teenet.node.cluster_ship import ship_partitions

        spec = types.SimpleNamespace(params=PARAMS)
        inp = types.SimpleNamespace(party="bank", table="customers", keys=("customer_id",))
        return ship_partitions(self.net.role, self.id, spec, inp, ["customer_id", "income"], self.session,
                               self.vcluster)

    def attempts(self) -> list[int]:
        """Connections made to worker 0 and worker 1 since the job was offered."""
        return [p.connections - c for p, c in zip(self.net.proxies, self.connections)]

    def audit(self, event: str) -> list[dict]:
        out = []
        for e in self.net.rt.audit_log.entries(limit=100_000)[self.audit_from:]:
            ev = e.record()["event"]
            if ev["event"] == event and ev.get("job_id") == self.id:
                out.append(ev)
        return out

    def held(self) -> tuple[dict, dict]:
        return _held(self.id), self.net.child.ask(op="held", job=self.id)

    def expected(self, partition: int) -> list[int]:
        ids = pa.table({"customer_id": self.net.ids})
        where = partition_rows(ids, ["customer_id"], job_normalisation(PARAMS), PARTITION_KEY, 2)
        return sorted(int(i) for i in self.net.ids[where == partition])

    def reports(self) -> list[tuple[str, str]]:
        return [(event, detail) for job_id, event, detail in self.net.reports if job_id == self.id]

    def drop(self) -> None:
        jobs.drop_job(self.id)
        self.net.child.ask(op="drop", job=self.id)


def cut_stream(proxy, connections: set[int], *, after: int = CUT_AT, direction: str = "up", when=lambda: True):
    """Drop the TCP connections of proxy's `connections` (1 = its first since now) once more
    than `after` bytes went `direction` on one of them and `when()` holds."""
    first = proxy.connections
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def tamper(way: str, data: bytes):
        if way != direction:
            return data
        conn = proxy.connections - first
        with lock:
            seen[conn] = seen.get(conn, 0) + len(data)
            cut = conn in connections and seen[conn] > after and when()
        if cut:
            proxy.partition()  # shuts every live connection down ...
            proxy.heal()       # ... and takes new ones again
            return None
        return data

    proxy.tamper = tamper
    return seen


@pytest.fixture(autouse=True)
def untampered(net):
    yield
    for p in net.proxies:
        p.tamper = None
        p.heal()


def _no_cell_value(entries: list[dict], net) -> None:
    text = json.dumps(entries)
    for value in (net.ids[0], net.ids[-1], net.ids[ROWS // 2]):
        assert str(int(value)) not in text


# tests ------------------------------------------------------------------------------------

def test_a_partition_cut_mid_stream_is_sent_again_alone_and_lands_once(net):
    job = Job(net, "retry: cut once")
    before_retry: list[dict] = []
    cut_stream(net.proxies[0], {1})
    original = net.proxies[0].tamper

    def watching(way, data):  # the retry's first bytes: what did worker 0 keep of the broken stream?
        if net.proxies[0].connections - job.connections[0] == 2 and not before_retry:
            before_retry.append(_held(job.id))
        return original(way, data)

    net.proxies[0].tamper = watching
    shipped = job.ship()
    assert shipped is not None, job.reports()
    assert before_retry == [{"tables": {}, "arrivals": []}]  # the broken attempt left nothing
    assert job.attempts() == [2, 1]  # only the broken partition went again, over a fresh connection
    held0, held1 = job.held()
    assert held0["tables"] == {"bank/customers": job.expected(0)}
    assert held1["tables"] == {"bank/customers": job.expected(1)}
    assert [a["rows"] for a in held0["arrivals"]] == [len(job.expected(0))]  # exactly once
    assert [a["rows"] for a in held1["arrivals"]] == [len(job.expected(1))]
    assert shipped.rows == ROWS
    # one `shipped`, whose fingerprint is the clustered root of what the workers computed
    roots = [bytes.fromhex(h["arrivals"][0]["root"]) for h in (held0, held1)]
    assert shipped.root == clustered_root(roots)
    assert [e["fingerprint"] for e in job.audit("shipped")] == [clustered_root(roots).hex()]
    retried = job.audit("upload_retried")
    assert [(e["partition"], e["worker"], e["attempt"], e["attempts"], e["code"]) for e in retried] == \
        [(0, "w0", 1, 3, "UNAVAILABLE")]
    _no_cell_value(retried, net)
    assert job.audit("upload_failed") == [] and job.reports() == []
    job.drop()


def test_attempts_are_bounded_and_a_broken_stream_leaves_nothing(net):
    job = Job(net, "retry: cut always")
    cut_stream(net.proxies[0], {1, 2, 3, 4, 5})
    started = time.monotonic()
    assert job.ship() is None
    assert time.monotonic() - started < 5
    assert job.attempts()[0] == 3  # MAX_UPLOAD_ATTEMPTS, then no more
    assert _held(job.id) == {"tables": {}, "arrivals": []}  # nothing partial kept or counted
    assert job.reports() == [("failed", "bank could not ship customers to w0: transport.unavailable")]
    failed = job.audit("upload_failed")
    assert len(failed) == 1 and failed[0]["reason"] == job.reports()[0][1]
    assert "after 3 attempts" in failed[0]["detail"]
    assert [e["attempt"] for e in job.audit("upload_retried")] == [1, 2]
    assert len(job.audit("shipped")) <= 1  # never twice, whatever was sealed before the cut
    _no_cell_value(job.audit("upload_retried") + failed, net)
    job.drop()


def test_a_refusal_is_not_retried(net):
    job = Job(net, "retry: refused")
    jobs.drop_job(job.id)  # worker 0 no longer holds a session for the job: it refuses
    assert job.ship() is None
    assert job.attempts()[0] == 1
    assert job.reports() == [("failed", "compute node refused bank/customers: cluster.session")]
    assert job.audit("upload_retried") == []
    job.drop()


def test_an_answer_lost_after_the_worker_took_the_partition_counts_once(net):
    job = Job(net, "retry: answer lost")
    # cut worker 0's first connection on the way back, once the worker registered the partition
    cut_stream(net.proxies[0], {1}, after=0, direction="down", when=lambda: bool(_held(job.id)["tables"]))
    shipped = job.ship()
    assert shipped is not None, job.reports()
    assert job.attempts() == [2, 1]
    held0, held1 = job.held()
    assert held0["tables"] == {"bank/customers": job.expected(0)} and len(held0["arrivals"]) == 1
    assert len(held1["arrivals"]) == 1 and shipped.rows == ROWS
    assert len(job.audit("shipped")) == 1
    job.drop()


def test_a_retry_that_reads_other_rows_fails_closed(net):
    """`shipped` names the fingerprint of every partition's first sealing: a retry must carry
    the same (here the table is rewritten between the attempts)."""
    job = Job(net, "retry: table changed")
    path = net.rt.catalog.tables["customers"].path
    original = path.read_bytes()
    changed = path.with_suffix(".changed")
    pq.write_table(pa.table({"customer_id": net.ids, "income": net.ids * 0.5}), changed)
    swapped: list[bool] = []

    def after_shipped() -> bool:  # every partition sealed once: cut worker 0's stream before its end
        if not swapped and job.audit("shipped"):
            changed.replace(path)
            swapped.append(True)
        return bool(swapped)

    cut_stream(net.proxies[0], {1}, after=0, when=after_shipped)
    try:
        assert job.ship() is None
    finally:
        path.write_bytes(original)
    assert swapped and job.attempts()[0] == 2
    assert job.reports() == [("failed", "bank could not read customers: input.fingerprint")]
    assert _held(job.id) == {"tables": {}, "arrivals": []}
    assert len(job.audit("shipped")) == 1
    job.drop()


def test_a_partition_received_whole_is_refused_when_sent_again(net):
    job = Job(net, "retry: sent twice")
    assert job.ship() is not None
    held = job.held()
    job.connections = [p.connections for p in net.proxies]
    assert job.ship() is None  # every partition again, each whole: refused, not retried
    assert job.attempts() == [1, 1]
    (event, reason), = job.reports()
    assert event == "failed" and reason.startswith("compute node refused bank/customers")
    assert job.held() == held  # not replaced, not counted twice
    # another upload's rows under the same name (a swap after the fact) are refused too
    other = pa.table({"customer_id": pa.array([7], pa.int64()), "income": [1.0]})
    assert jobs.register(job.id, "bank", "customers", other, 1, b"\0" * 32) == "already"
    assert job.held() == held
    job.drop()
    assert jobs.register(job.id, "bank", "customers", other, 1, b"\0" * 32) == "dropped"


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    _worker_main(Path(sys.argv[2]))
