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
