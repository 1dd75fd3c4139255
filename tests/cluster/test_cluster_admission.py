"""Cluster runtime: worker config, mutual-attested admission, the RA-TLS certificate, and
the leader's Dask scheduler accepting only leader-issued certificates."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from teenet.attestation.measure import enclave_measurement
from teenet.attestation.roots import default_trust_roots
from teenet.attestation.sim import UnsafeSimulatedAttester
from teenet.attestation.verifier import verify_evidence
from teenet.cluster.admission import AdmissionRefused, AdmissionServer, request_admission, verifier_policy
from teenet.cluster.ca import ClusterCA, new_key
from teenet.cluster.config import load_worker_config
from teenet.cluster.ratls import RATLS_OID, evidence_from_certificate
from teenet.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "compute-worker-2.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_worker_config_reads_and_names_bad_fields(tmp_path):
    good = _write(tmp_path, """\
        node: compute-worker-2
        role: compute-worker
        leader: 127.0.0.1:7300
        listen: 127.0.0.1
        enclave: {backend: sim, sim_dir: sim}
        allow_simulated: true
        """)
    config = load_worker_config(good)
    assert (config.node, config.leader, config.enclave.sim_dir) == ("compute-worker-2", "127.0.0.1:7300",
                                                                     tmp_path / "sim")
    cases = {
        "role: compute\n": "field 'role'",
        "leader: nowhere\n": "field 'leader'",
        "bogus: 1\n": "unknown field 'bogus'",
    }
    base = good.read_text()
    for change, expected in cases.items():
        key = change.split(":")[0]
        lines = [line for line in base.splitlines() if not line.startswith(key + ":")]
        good.write_text("\n".join(lines) + "\n" + change)
        with pytest.raises(InputError, match=expected):
            load_worker_config(good)
    good.write_text(base.replace("allow_simulated: true", "allow_simulated: false"))
    with pytest.raises(InputError, match="allow_simulated: true"):
        load_worker_config(good)
    good.write_text(base.replace("leader: 127.0.0.1:7300\n", ""))
    with pytest.raises(InputError, match="missing required field 'leader'"):
        load_worker_config(good)


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    """A simulated platform in a folder a worker process can be pointed at."""
    from teenet.attestation.sim import SimulatedPlatform

    directory = tmp_path_factory.mktemp("cluster-sim")
    return directory, SimulatedPlatform.load_or_create(directory)


@pytest.fixture()
def sim_platform(sim_dir):
    return sim_dir[1]


@pytest.fixture()
def leader(sim_platform):
    measurement = enclave_measurement()
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    ca = ClusterCA("test")
    server = AdmissionServer(ca, UnsafeSimulatedAttester(sim_platform, measurement), roots,
                             verifier_policy(measurement), lambda: "tls://127.0.0.1:1", expected_workers=2).start()
    yield server, ca, roots, measurement
    server.close()


def test_admitted_worker_gets_a_ratls_certificate_binding_its_key(leader, sim_platform):
    server, ca, roots, measurement = leader
    key = new_key()
    ca_pem, cert_pem, scheduler = request_admission(server.address, "w1", key,
                                                    UnsafeSimulatedAttester(sim_platform, measurement), roots,
                                                    verifier_policy(measurement))
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    assert cert.extensions.get_extension_for_oid(RATLS_OID).critical is False
    evidence = evidence_from_certificate(cert)
    # The evidence in the certificate verifies and binds exactly this certificate's key.
    claims = verify_evidence(evidence, roots, verifier_policy(measurement), None)
    assert claims.measurement == measurement
    assert cert.public_key() == key.public_key()
    assert scheduler == "tls://127.0.0.1:1" and set(server.admitted) == {"w1"}


def test_wrong_measurement_is_refused_and_gets_no_certificate(leader, sim_platform):
    server, ca, roots, measurement = leader
    other = bytes(48)
    with pytest.raises(AdmissionRefused, match="measurement is not in the owner's allowlist"):
        request_admission(server.address, "evil", new_key(), UnsafeSimulatedAttester(sim_platform, other), roots,
                          verifier_policy(measurement))
    assert server.admitted == {}


def test_simulated_evidence_refused_where_sim_is_not_allowed(leader, sim_platform):
    server, ca, roots, measurement = leader
    # The worker does not pin the simulated ARK: the leader's simulated evidence is refused.
    with pytest.raises(AdmissionRefused, match="leader evidence refused"):
        request_admission(server.address, "w2", new_key(), UnsafeSimulatedAttester(sim_platform, measurement),
                          default_trust_roots(), verifier_policy(measurement))
    assert server.admitted == {}


@pytest.mark.slow
def test_worker_process_joins_the_tls_scheduler_and_foreign_certs_are_refused(tmp_path, sim_dir):
    from distributed import Client

    from teenet.cluster.ca import cert_pem, key_pem
    from teenet.cluster.dask_tls import LeaderScheduler, security_for

    directory, sim_platform = sim_dir
    measurement = enclave_measurement()
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    ca = ClusterCA("it")
    scheduler = LeaderScheduler(ca)
    server = AdmissionServer(ca, UnsafeSimulatedAttester(sim_platform, measurement), roots,
                             verifier_policy(measurement), lambda: scheduler.address).start()
    config = _write(tmp_path, f"""\
        node: w1
        role: compute-worker
        leader: {server.address}
        listen: 127.0.0.1
        enclave: {{backend: sim, sim_dir: {directory}}}
        allow_simulated: true
        """)
    # The worker and leader share one simulated platform (one "machine").
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "teenet"), "node", "serve", "--config", str(config)],
                                cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        client_key = new_key()
        client_cert = ca.issue("analyst-side", client_key.public_key())
        with Client(scheduler.address, security=security_for(cert_pem(ca.certificate), cert_pem(client_cert),
                                                             key_pem(client_key)), timeout=30) as client:
            client.wait_for_workers(1, timeout=60)  # waits on the event, not a timed assertion
            assert "worker w1 admitted" in log_path.read_text()
            assert list(client.scheduler_info()["workers"].values())[0]["name"] == "w1"
            assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        foreign = ClusterCA("foreign")
        f_key = new_key()
        f_cert = foreign.issue("intruder", f_key.public_key())
        with pytest.raises((OSError, TimeoutError)):
            Client(scheduler.address, security=security_for(cert_pem(foreign.certificate), cert_pem(f_cert),
                                                            key_pem(f_key)), timeout=5)
        # A cert from another CA, but trusting the real cluster CA: the scheduler refuses it.
        with pytest.raises((OSError, TimeoutError)):
            Client(scheduler.address, security=security_for(cert_pem(ca.certificate), cert_pem(f_cert),
                                                            key_pem(f_key)), timeout=5)
        with pytest.raises((OSError, TimeoutError, ValueError)):
            Client(scheduler.address.replace("tls://", "tcp://"), timeout=5)
        assert scheduler.worker_count() == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.close()
        scheduler.close()



def test_evidence_not_binding_the_transport_key_is_refused(leader, sim_platform):
    """Evidence replayed from elsewhere (report_data not over this key and nonce) is refused."""
    server, ca, roots, measurement = leader
    real = UnsafeSimulatedAttester(sim_platform, measurement)

    class Replaying(UnsafeSimulatedAttester):
        def attest(self, report_data: bytes):  # binds other bytes than admission asked for
            return real.attest(bytes(64))

    replaying = Replaying(sim_platform, measurement)
    with pytest.raises(AdmissionRefused, match="report_data"):
        request_admission(server.address, "replay", new_key(), replaying, roots, verifier_policy(measurement))
    assert server.admitted == {}


@pytest.mark.parametrize("name", ["wörker", "w\u0663", "-w1", "w" * 65])
def test_a_worker_name_outside_ascii_letters_digits_dash_underscore_is_refused_with_a_reason(leader, sim_platform,
                                                                                            name):
    """str.isalnum() takes 'ö' and Arabic digits, which a certificate's DNS name cannot hold:
    the admission thread then died without an answer. Now the name is refused, named."""
    server, ca, roots, measurement = leader
    with pytest.raises(AdmissionRefused, match="field 'name': expected 1-64 letters, digits"):
        _admit(server, name, new_key(), sim_platform, roots, measurement)
    assert server.admitted == {}


def test_idle_connections_cannot_hold_more_than_max_handshakes_and_admission_goes_on(leader, sim_platform):
    """Anyone can connect to the admission port, and each handshake costs the leader an
    attestation: past MAX_HANDSHAKES at once, a connection is closed at once; when the idle
    ones go, a worker is admitted as usual."""
    import socket
    import time

    from teenet.cluster.admission import MAX_HANDSHAKES

    server, ca, roots, measurement = leader
    host, port = server.address.rsplit(":", 1)
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(MAX_HANDSHAKES)]
    try:
        time.sleep(0.3)  # accepted, each waiting in its TLS handshake
        extra = socket.create_connection((host, int(port)), timeout=5)
        started = time.monotonic()
        assert extra.recv(1) == b""  # closed by the leader at once, not after the 30 s timeout
        assert time.monotonic() - started < 5
        extra.close()
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    _admit(server, "after-the-flood", new_key(), sim_platform, roots, measurement)
    assert "after-the-flood" in server.admitted


# ---- re-admission of a restarted worker ----------------------------------------------------

def _admit(server, name, key, sim_platform, roots, measurement):
    return request_admission(server.address, name, key, UnsafeSimulatedAttester(sim_platform, measurement), roots,
                             verifier_policy(measurement))


def test_a_restarted_worker_is_admitted_again_only_once_the_old_one_is_gone(sim_platform):
    """A second admission of a connected worker's name is refused (retry) and changes nothing;
    once the scheduler no longer has it, the name is admitted again with fresh evidence and a
    new certificate that replaces the old entry (the expected-workers count is not spent twice)."""
    from cryptography import x509

    from teenet.cluster.admission import AdmissionRetry

    measurement = enclave_measurement()
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    connected: set[str] = set()  # the names the scheduler has now (the leader asks its scheduler)
    server = AdmissionServer(ClusterCA("re"), UnsafeSimulatedAttester(sim_platform, measurement), roots,
                             verifier_policy(measurement), lambda: "tls://127.0.0.1:1", expected_workers=2,
                             connected=lambda name: name in connected).start()
    try:
        old_key, new_key_ = new_key(), new_key()
        _, old_pem, _ = _admit(server, "w1", old_key, sim_platform, roots, measurement)
        old = x509.load_pem_x509_certificate(old_pem)
        connected.add("w1")
        with pytest.raises(AdmissionRetry, match="'w1' is admitted and still connected"):
            _admit(server, "w1", new_key_, sim_platform, roots, measurement)
        assert server.admitted["w1"].certificate == old  # the live worker keeps its place
        connected.discard("w1")  # the old process died: the scheduler dropped it
        _, new_pem, _ = _admit(server, "w1", new_key_, sim_platform, roots, measurement)
        new = x509.load_pem_x509_certificate(new_pem)
        assert new.public_key() == new_key_.public_key() and new.serial_number != old.serial_number
        assert list(server.admitted) == ["w1"] and server.admitted["w1"].certificate == new  # replaced
        assert evidence_from_certificate(new) != evidence_from_certificate(old)  # fresh evidence
        _admit(server, "w2", new_key(), sim_platform, roots, measurement)  # the second slot is still free
        with pytest.raises(AdmissionRefused, match="already has its 2 expected workers") as caught:
            _admit(server, "w3", new_key(), sim_platform, roots, measurement)
        assert not isinstance(caught.value, AdmissionRetry)
        # an impostor with valid evidence under a connected name is refused too, after verification
        connected.add("w2")
        with pytest.raises(AdmissionRetry):
            _admit(server, "w2", new_key(), sim_platform, roots, measurement)
        assert sorted(server.admitted) == ["w1", "w2"]
    finally:
        server.close()


def test_without_a_scheduler_to_ask_a_name_is_never_admitted_twice(leader, sim_platform):
    from teenet.cluster.admission import AdmissionRetry

    server, ca, roots, measurement = leader
    _admit(server, "w1", new_key(), sim_platform, roots, measurement)
    with pytest.raises(AdmissionRetry, match="still connected"):
        _admit(server, "w1", new_key(), sim_platform, roots, measurement)
    assert list(server.admitted) == ["w1"]


def _worker_config(leader: str, directory: Path):
    from teenet.cluster.config import WorkerConfig
    from teenet.config import EnclaveConfig

    return WorkerConfig(node="w1", leader=leader, listen="127.0.0.1", enclave=EnclaveConfig("sim", directory),
                        allow_simulated=True, source="compute-worker-1.yaml")


def test_the_worker_retries_while_the_leader_is_unreachable_then_joins(sim_dir, caplog):
    import socket
    import threading

    from teenet.cluster.worker import admit

    directory, sim_platform = sim_dir
    measurement = enclave_measurement()
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    with socket.socket() as s:  # a port nobody listens on until the leader starts below
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servers = []

    def leader_starts_late():
        servers.append(AdmissionServer(ClusterCA("late"), UnsafeSimulatedAttester(sim_platform, measurement), roots,
                                       verifier_policy(measurement), lambda: "tls://127.0.0.1:9", port=port).start())

    timer = threading.Timer(0.2, leader_starts_late)
    timer.start()
    try:
        with caplog.at_level("WARNING", logger="teenet.cluster.worker"):
            _, cert, scheduler = admit(_worker_config(f"127.0.0.1:{port}", directory), new_key(),
                                       UnsafeSimulatedAttester(sim_platform, measurement), roots, measurement,
                                       give_up_after=20)
        assert scheduler == "tls://127.0.0.1:9" and list(servers[0].admitted) == ["w1"]
        tries = [r.getMessage() for r in caplog.records if "not possible yet" in r.getMessage()]
        assert tries and "cannot reach the leader's admission port" in tries[0] and "retrying in 0.5s" in tries[0]
    finally:
        timer.join()
        for server in servers:
            server.close()


def test_a_worker_refused_for_a_security_reason_exits_1_naming_the_check(sim_dir, capsys):
    """The leader pins another measurement: the worker is refused once, does not retry, exits 1."""
    import time

    from teenet.cluster.worker import serve_worker

    directory, sim_platform = sim_dir
    measurement = enclave_measurement()
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    server = AdmissionServer(ClusterCA("strict"), UnsafeSimulatedAttester(sim_platform, measurement), roots,
                             verifier_policy(bytes(48)), lambda: "tls://127.0.0.1:9").start()
    try:
        started = time.monotonic()
        assert serve_worker(_worker_config(server.address, directory)) == 1
        assert time.monotonic() - started < 5  # no backoff: refused for good
        err = capsys.readouterr().err
        assert "admission to leader" in err and "refused (not retried)" in err
        assert "policy.measurement: measurement is not in the owner's allowlist" in err
        assert server.admitted == {}
    finally:
        server.close()


# ---- the owners' policies at admission -------------------------------------------------------

def test_admission_applies_every_owners_policy_the_leader_knows_and_names_the_one_that_refused(sim_platform):
    from teenet.attestation.policy import policy_from_config
    from teenet.cluster.admission import admission_policy

    measurement = enclave_measurement()
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    sim_ok = {"allow_simulated": True, "measurements": [measurement.hex()]}
    cases = [
        # the consortium's attestation policy pins another build: refused, named
        ([("consortium attestation policy", policy_from_config({**sim_ok, "measurements": ["00" * 48]}))],
         "consortium attestation policy: policy.measurement"),
        # the leader's own policy.compute_attestation takes no simulated evidence: refused, named
        ([("consortium attestation policy", policy_from_config(sim_ok)),
          ("leader policy.compute_attestation", policy_from_config({"measurements": [measurement.hex()]}))],
         "leader policy.compute_attestation: policy.hardware"),
    ]
    for owners, check in cases:
        server = AdmissionServer(ClusterCA("owners"), UnsafeSimulatedAttester(sim_platform, measurement), roots,
                                 admission_policy(measurement, owners), lambda: "tls://127.0.0.1:9").start()
        try:
            with pytest.raises(AdmissionRefused, match=f"worker 'w1' evidence refused: {check}"):
                _admit(server, "w1", new_key(), sim_platform, roots, measurement)
            assert server.admitted == {}
        finally:
            server.close()
    # every policy passes: admitted
    server = AdmissionServer(ClusterCA("owners"), UnsafeSimulatedAttester(sim_platform, measurement), roots,
                             admission_policy(measurement, [("consortium attestation policy",
                                                             policy_from_config(sim_ok))]),
                             lambda: "tls://127.0.0.1:9").start()
    try:
        _admit(server, "w1", new_key(), sim_platform, roots, measurement)
        assert list(server.admitted) == ["w1"]
    finally:
        server.close()


def test_the_leader_admits_under_the_consortium_policy_and_its_own_compute_attestation():
    """node/cluster_role.owner_policies: what the leader knows of the owners' policies."""
    from types import SimpleNamespace

    from teenet.attestation.policy import policy_from_config
    from teenet.config import Consortium, OwnerPolicy
    from teenet.node.cluster_role import owner_policies

    consortium = Consortium("demo", "coordinator", "127.0.0.1:1", {"measurements": ["ab" * 48]}, {})
    own = {"measurements": ["cd" * 48]}
    without = SimpleNamespace(consortium=consortium, config=SimpleNamespace(policy=OwnerPolicy(), source="c.yaml"),
                              compute_policy=policy_from_config(None))
    assert [label for label, _ in owner_policies(without)] == ["consortium attestation policy"]
    with_own = SimpleNamespace(consortium=consortium, compute_policy=policy_from_config(own),
                               config=SimpleNamespace(policy=OwnerPolicy(compute_attestation=own), source="c.yaml"))
    policies = owner_policies(with_own)
    assert [label for label, _ in policies] == ["consortium attestation policy", "leader policy.compute_attestation"]
    assert policies[0][1] == consortium.result_policy() and policies[1][1] is with_own.compute_policy


# ---- no cluster secret on disk --------------------------------------------------------------

def _pem_files_under(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]


def test_cluster_keys_are_memory_only_and_tls_still_works(tmp_path, monkeypatch, sim_platform):
    """The worker's Dask security, the admission port's CA key and the federated client key:
    no key byte lands in the temp dir (Security, given PEM contents, would write them there),
    the paths are memfds a child process can read, they cannot be changed, and TLS works."""
    import socket
    import subprocess
    import tempfile
    import threading

    from teenet.cluster.ca import cert_pem, key_pem
    from teenet.cluster.dask_tls import private_files, release, security_for

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # every tempfile.* call lands here
    monkeypatch.setenv("TMPDIR", str(tmp))
    ca = ClusterCA("mem")
    key = new_key()
    cert = ca.issue("w1", key.public_key(), hosts=("127.0.0.1",))
    security = security_for(cert_pem(ca.certificate), cert_pem(cert), key_pem(key))
    assert _pem_files_under(tmp) == []
    for path in (security.tls_ca_file, security.tls_worker_cert, security.tls_worker_key):
        assert path.startswith(f"/proc/{os.getpid()}/fd/") and os.readlink(path).startswith("/memfd:teenet-")
    # a child process (a /proc/self path would be its own fds) reads the same memory
    child = subprocess.run([sys.executable, "-c", f"print(open({security.tls_worker_key!r}).read())"],
                           capture_output=True, text=True, timeout=30)
    assert child.stdout.strip() == key_pem(key).decode().strip()
    with pytest.raises(OSError):  # sealed: nobody rewrites the key or the trust anchor
        with open(security.tls_ca_file, "r+b") as f:
            f.write(b"x")
    # TLS with the contexts distributed.Security builds from those paths: a real handshake
    server_ctx = security.get_listen_args("scheduler")["ssl_context"]
    client_ctx = security.get_connection_args("client")["ssl_context"]
    a, b = socket.socketpair()
    got = []

    def serve():
        with server_ctx.wrap_socket(a, server_side=True) as s:
            got.append(s.getpeercert()["serialNumber"])
            s.sendall(b"ok")

    t = threading.Thread(target=serve)
    t.start()
    with client_ctx.wrap_socket(b) as c:
        assert c.recv(2) == b"ok" and c.version() == "TLSv1.3"
    t.join(10)
    assert int(got[0], 16) == cert.serial_number
    # the admission port (the CA key) and a federated client key, both memory-only too
    measurement = enclave_measurement()
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    server = AdmissionServer(ca, UnsafeSimulatedAttester(sim_platform, measurement), roots,
                             verifier_policy(measurement), lambda: "tls://127.0.0.1:9").start()
    try:
        _admit(server, "w1", new_key(), sim_platform, roots, measurement)
    finally:
        server.close()
    paths = private_files({"key.pem": key_pem(new_key())})
    release(paths)
    assert not os.path.exists(paths[0]) or os.readlink(paths[0]) != "/memfd:teenet-key.pem (deleted)"
    assert _pem_files_under(tmp) == [] and list(tmp.iterdir()) == []


def test_the_leader_counts_a_worker_only_with_its_names_latest_admission_certificate(sim_platform):
    """node/cluster_role.ClusterLeader, with its real scheduler and admission port: a Dask
    worker presenting a cluster-CA certificate that no admission of its name issued (one
    superseded by a re-admission, or the federated client certificate every worker holds) is
    not one of the cluster's and is closed; the admitted one counts, and the name is
    admitted again only once it has left."""
    import asyncio
    import threading
    import time
    from types import SimpleNamespace

    from teenet.attestation.policy import policy_from_config
    from teenet.cluster.admission import AdmissionRetry
    from teenet.cluster.ca import cert_pem, key_pem
    from teenet.cluster.config import ClusterSection
    from teenet.cluster.dask_tls import security_for
    from teenet.config import Consortium, OwnerPolicy
    from teenet.node.cluster_role import ClusterLeader

    measurement = enclave_measurement()
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    attester = UnsafeSimulatedAttester(sim_platform, measurement)
    sim_ok = {"allow_simulated": True, "measurements": [measurement.hex()]}
    rt = SimpleNamespace(
        config=SimpleNamespace(cluster=ClusterSection(1, "127.0.0.1:0", True), node="compute-1", policy=OwnerPolicy(),
                               source="compute-1.yaml"),
        enclave=SimpleNamespace(backend="sim", attester=attester, roots=roots, measurement=measurement.hex()),
        consortium=Consortium("demo", "coordinator", "127.0.0.1:1", sim_ok, {}), compute_policy=policy_from_config(None))
    leader = ClusterLeader(rt)

    def dask_worker(name, cert, key):
        from distributed import Worker

        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()

        async def start():
            return await Worker(leader.scheduler.address, name=name, protocol="tls", nthreads=1, dashboard=False,
                                host="127.0.0.1", security=security_for(cert_pem(leader.ca.certificate),
                                                                        cert_pem(cert), key_pem(key)))

        return loop, asyncio.run_coroutine_threadsafe(start(), loop).result(30)

    def until(check, timeout=15):
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline
            time.sleep(0.05)

    started = []
    try:
        key = new_key()
        _, real_pem, _ = request_admission(leader.admission.address, "w1", key, attester, roots,
                                           verifier_policy(measurement))
        from cryptography import x509

        stale_key = new_key()  # the CA's, but no admission of 'w1' issued it
        started.append(dask_worker("w1", leader.ca.issue("w1", stale_key.public_key()), stale_key))
        assert leader.workers() == [] and not leader.ready()  # not counted...
        until(lambda: leader.workers() == [] and leader.scheduler.connected() == [])  # ...and closed by the leader
        started.append(dask_worker("w1", x509.load_pem_x509_certificate(real_pem), key))
        until(lambda: leader.workers() != [])
        assert [name for name, _ in leader.workers()] == ["w1"] and leader.ready()
        with pytest.raises(AdmissionRetry, match="still connected"):  # w1 is live: nobody displaces it
            request_admission(leader.admission.address, "w1", new_key(), attester, roots, verifier_policy(measurement))
        assert [name for name, _ in leader.workers()] == ["w1"]
    finally:
        for loop, worker in started:
            asyncio.run_coroutine_threadsafe(worker.close(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
        leader.close()
