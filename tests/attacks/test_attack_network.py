"""Attacks on a running sandbox network: the wire between data nodes and the compute node,
the Compute service called directly by an insider with a valid consortium TLS identity,
a compute enclave whose code differs by one byte, release rules, the real coordinator
called with forged or replayed messages, and hostile input to every service.

One network for the module: a coordinator, three data nodes, compute-1 (behind a
tamperable proxy), compute-2 (run from a copy of the code with one byte changed) and
compute-3 (whose data-enclave policy requires hardware). Each case shows the refusal, the
reason the user sees (job status) and the audit logs, and that nothing was accepted or
released. The cases are listed in docs/security.md.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path
from concurrent import futures

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attack_kit import (Analyst, AttackNet, Stall, TlsRecordTamper, edit_yaml, interpose, leaked,
                        one_byte_copy, plaintext_needles, raw_unary, rpc_error, start_node, wait_until)
from teenet.proto import teenet_pb2 as pb
from teenet.proto import teenet_pb2_grpc as rpc

pytestmark = pytest.mark.slow

PSI = """\
name: psi-attack
function: psi
compute: {compute}
inputs:
  - {{party: bank,    table: customers, key: customer_id, columns: []}}
  - {{party: telco,   table: usage,     key: customer_id, columns: []}}
  - {{party: insurer, table: policies,  key: customer_id, columns: []}}
params: {{normalise: {{trim: true, case: none, type: int}}}}
release:
  - {{kind: size, to: [analyst]}}
"""

BANK_AGGREGATE = """\
name: bank-{name}
function: aggregate
compute: compute-1
inputs:
  - {{party: bank, table: {table}, key: customer_id, columns: [{columns}]}}
params:
  group_by: [{group_by}]
  metrics:
    - {{column: {metric}, stats: [count, mean]}}
release:
  - {{kind: {kind}, to: [analyst]}}
"""

TRAIN_WITH_INSURER = """\
name: risk-with-claims
function: train
compute: compute-1
inputs:
  - {party: bank,    table: customers, key: customer_id, columns: [income, defaulted]}
  - {party: insurer, table: policies,  key: customer_id, columns: [claims, premium]}
params: {layout: vertical, model: logistic_regression, label: {party: bank, column: defaulted},
         test_fraction: 0.25, seed: 3}
release:
  - {kind: metrics, to: [analyst]}
"""

PARTIES = (("bank", "customers"), ("telco", "usage"), ("insurer", "policies"))


def psi(compute: str = "compute-1") -> str:
    return PSI.format(compute=compute)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from teenet.attestation.measure import enclave_manifest
    from teenet.cli.sandbox import MANIFEST_FILE, down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("attacknet")
    init_sandbox(d, rows=3000, computes=3)
    # The bank publishes a 'staff' table and the column 'age' but shares neither.
    staff = pa.table({"customer_id": pa.array(range(10_000, 10_050), pa.int64()),
                      "salary": pa.array([float(40_000 + i) for i in range(50)])})
    pq.write_table(staff, d / "data" / "bank" / "staff.parquet")

    def bank(cfg):
        cfg["tables"]["staff"] = {"format": "parquet", "path": str(d / "data" / "bank" / "staff.parquet")}
        cfg["policy"]["tables"]["customers"] = [c for c in cfg["policy"]["tables"]["customers"] if c != "age"]
        # The bank lets jobs group by income, so R5 reaches the enclave's suppression of small groups.
        cfg["policy"]["analysis"]["customers"]["group_by"] = ["region", "income"]

    edit_yaml(d / "bank.yaml", bank)
    edit_yaml(d / "consortium.yaml",
              lambda c: c["members"]["bank"]["tables"].__setitem__("staff", ["customer_id", "salary"]))
    # compute-3 accepts keys only from data enclaves on real hardware.
    edit_yaml(d / "compute-3.yaml",
              lambda c: c["policy"]["data_attestation"].__setitem__("allow_simulated", False))
    _, compute_wire = interpose(d, coordinator=False)
    manifest = json.loads((d / MANIFEST_FILE).read_text())
    manifest["computes"] = ["compute-1", "compute-3"]  # compute-2 is started from the altered copy
    (d / MANIFEST_FILE).write_text(json.dumps(manifest))
    changed, what = one_byte_copy(d / "altered-code")
    up_sandbox(d)
    try:
        start_node(d, "compute-2", pythonpath=d / "altered-code")
        net = AttackNet(d, compute_wire, extra={"altered": (changed, what),
                                                 "measurement": enclave_manifest().measurement().hex()})
        analyst = Analyst(net)
        net.extra["analyst"] = analyst
        yield net
        analyst.close()
    finally:
        down_sandbox(d)
        compute_wire.close()


@pytest.fixture
def analyst(net) -> Analyst:
    return net.extra["analyst"]


def _no_table_reached_compute(net: AttackNet, job_id: str, compute: str = "compute-1") -> None:
    assert net.audit_for(compute, job_id, "table_received") == []
    assert net.audit_for(compute, job_id, "released_results") == []
    for party, _ in PARTIES:
        assert net.audit_for(party, job_id, "released_table") == []


# --- baseline: the honest job works, and its wire is recorded for the replay below ------------

class UpRecorder:
    """A tamper hook that changes nothing and keeps each connection's client->server bytes."""

    def __init__(self) -> None:
        self.streams: dict[int, bytearray] = {}
        self.lock = threading.Lock()

    def __call__(self, direction: str, data: bytes) -> bytes:
        if direction == "up":
            with self.lock:
                self.streams.setdefault(threading.get_ident(), bytearray()).extend(data)
        return data


def test_baseline_an_honest_job_succeeds_and_its_upload_is_recorded(net, analyst):
    recorder = UpRecorder()
    net.compute_wire.tamper = recorder
    try:
        job_id = analyst.submit(psi())
        st = analyst.wait(job_id)
    finally:
        net.compute_wire.tamper = None
    assert st.state == "succeeded", st.reason
    assert len(net.audit_for("compute-1", job_id, "table_received")) == 3
    opened, claims = analyst.result(job_id)
    assert [o.kind for o in opened] == ["size"] and claims.simulated
    net.extra["baseline"] = job_id
    net.extra["recorded_uploads"] = [bytes(s) for s in recorder.streams.values() if len(s) > 10_000]
    assert net.extra["recorded_uploads"], "no upload connection was recorded"


# --- A. a man in the middle between the data nodes and the compute node ----------------------

@pytest.mark.parametrize("action", ["flip", "drop", "duplicate", "reorder"])
def test_mitm_tampering_with_tls_records_fails_the_job_and_nothing_is_accepted(net, analyst, action):
    tamper = TlsRecordTamper(action)
    net.compute_wire.tamper = tamper
    try:
        job_id = analyst.submit(psi())
        st = analyst.wait(job_id, timeout=60)
    finally:
        net.compute_wire.tamper = None
    assert tamper.applied >= 1
    assert st.state == "failed"
    assert ("could not ship" in st.reason or "compute node refused" in st.reason) and "compute-1" in st.reason, st.reason
    assert list(st.uploaded) == [] and list(st.results) == []
    _no_table_reached_compute(net, job_id)
    events = [e for p, _ in PARTIES for e in net.audit_for(p, job_id) if e["event"] in ("upload_failed", "upload_refused")]
    assert events and all(e["reason"] for e in events)


def test_mitm_replaying_a_recorded_upload_session_is_refused_by_tls(net, analyst):
    baseline = net.extra["baseline"]
    before = net.audit("compute-1")
    port = net.listen_port("compute-1")
    for stream in net.extra["recorded_uploads"][:2]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            try:
                s.sendall(stream)
                s.settimeout(3)
                while s.recv(65536):  # the server answers with a new handshake, then an alert
                    pass
            except OSError:
                pass  # reset by the server: also a refusal
    time.sleep(0.3)
    new = [e for e in net.audit("compute-1")[len(before):] if e["event"] != "job_dropped"]
    assert new == []  # nothing accepted, nothing even attempted (job_dropped: the earlier jobs ending)
    assert len(net.audit_for("compute-1", baseline, "table_received")) == 3
    job_id = analyst.submit(psi())  # the compute node keeps serving honest uploads
    assert analyst.wait(job_id).state == "succeeded"


class _RecordingCompute(rpc.ComputeServicer):
    def __init__(self) -> None:
        self.calls = 0

    def UploadTable(self, request_iterator, context):
        self.calls += 1
        for _ in request_iterator:
            pass
        return pb.UploadReply()


def _impostor(certificate: tuple[bytes, bytes], ca: bytes) -> tuple[grpc.Server, int, _RecordingCompute]:
    servicer = _RecordingCompute()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    rpc.add_ComputeServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [certificate], root_certificates=ca, require_client_auth=True))
    server.start()
    return server, port, servicer


@pytest.mark.parametrize("who", ["another CA's compute-1", "telco's consortium cert"])
def test_mitm_terminating_tls_as_compute_1_is_refused(net, analyst, tmp_path, who):
    from teenet.pki import DevPki

    if who == "telco's consortium cert":
        files = net.tls("telco")
    else:
        files = DevPki.create(tmp_path / "evil-pki").issue("compute-1")
    ca, cert, key = files.read()
    server, port, servicer = _impostor((key, cert), (net / "pki" / "ca.pem").read_bytes())
    real_target = net.compute_wire.target
    net.compute_wire.target = ("127.0.0.1", port)
    try:
        job_id = analyst.submit(psi())
        st = analyst.wait(job_id, timeout=60)
    finally:
        net.compute_wire.target = real_target
        server.stop(0)
    assert st.state == "failed" and "could not ship" in st.reason, st.reason
    net.extra.setdefault("impostor_reasons", {})[who] = st.reason
    party = st.reason.split()[0]
    net.extra.setdefault("impostor_details", {})[who] = " ".join(
        e.get("detail", "") for e in net.audit_for(party, job_id, "upload_failed"))
    assert servicer.calls == 0  # the data nodes never sent the impostor a single upload
    _no_table_reached_compute(net, job_id)
    logs = "".join(net.log_text(p) for p, _ in PARTIES)
    assert "upload to compute-1 broke" in logs


def test_the_impostor_refusal_names_the_tls_check_that_failed(net):
    reasons = net.extra.get("impostor_reasons", {})
    assert len(reasons) == 2
    # The reason outside names the TLS check; gRPC's own words stay in the owner's audit.
    assert reasons["another CA's compute-1"].endswith("to compute-1: tls.handshake"), reasons
    assert reasons["telco's consortium cert"].endswith("to compute-1: tls.hostname"), reasons
    details = net.extra["impostor_details"]
    assert "Tls handshake failed" in details["another CA's compute-1"]
    assert "BAD_SIGNATURE" in details["another CA's compute-1"]
    assert "Hostname Verification" in details["telco's consortium cert"]


# --- B. an insider with a valid consortium TLS identity calls the Compute service ------------

@pytest.fixture(scope="module")
def held(net):
    """A PSI job whose honest uploads are held at the proxy while the attacks run."""
    from teenet.attestation.policy import policy_from_config
    from teenet.negotiation import ComputeOffer, HpkeSuite, verify_compute_offer
    from teenet.node.enclave import build_enclave

    analyst = net.extra["analyst"]
    stall = Stall(limit=12.0)
    net.compute_wire.tamper = stall
    job_id = analyst.submit(psi())
    analyst.wait(job_id, {"negotiating_keys", "failed"})
    enclave = build_enclave("sim", net / "sim-platform")  # what every data enclave of the sandbox runs
    policy = policy_from_config({"allow_simulated": True, "measurements": [enclave.measurement]})

    def verified_offer(jid: str):
        o = next(iter(analyst.stub.FetchResultStream(pb.FetchResultsRequest(job_id=jid, recipient="analyst"),
                                                     timeout=10))).opening.offer
        offer = ComputeOffer(o.job_id, o.compute, HpkeSuite.parse(o.hpke_suite), o.hpke_public_key,
                             o.signing_public_key, o.evidence, o.endpoint)
        return verify_compute_offer(offer, bytes.fromhex(jid), policy, enclave.roots)

    state = {"job_id": job_id, "stall": stall, "enclave": enclave, "offer": verified_offer(job_id),
             "old_offer": verified_offer(net.extra["baseline"]), "started": time.monotonic()}
    try:
        yield state
    finally:
        stall.release.set()
        net.compute_wire.tamper = None


def _upload(net, caller, envelope, stream, *, compute="compute-1"):
    channel, stub = net.compute_stub(caller, compute)
    try:
        msgs = [pb.UploadMessage(key=pb.KeyEnvelope(
            job_id=envelope.job_id, party=envelope.party, table=envelope.table, sealed_key=envelope.sealed_key,
            evidence=envelope.evidence, signing_public_key=envelope.signing_public_key,
            signature=envelope.signature))]
        msgs += [pb.UploadMessage(header=m) if i == 0 else pb.UploadMessage(chunk=m) for i, m in enumerate(stream)]
        return rpc_error(lambda: stub.UploadTable(iter(msgs), timeout=20))
    finally:
        channel.close()


def _bank_table(net, columns=("customer_id",)) -> pa.Table:
    return pq.read_table(net / "data" / "bank" / "customers.parquet", columns=list(columns))


def _seal(table: pa.Table, key, job_id: str, party="bank", name="customers") -> list[bytes]:
    from teenet.sealing import StreamBinding, seal_table

    return list(seal_table(iter(table.to_batches()), key, StreamBinding(bytes.fromhex(job_id), party, name)))


def _envelope(held, job_id=None, offer=None, party="bank", table="customers"):
    from teenet.negotiation import DataEnclaveSession
    from teenet.sealing import TableKey

    offer = offer or held["offer"]
    job_id = job_id or held["job_id"]
    session = DataEnclaveSession(bytes.fromhex(job_id), held["enclave"].attester)
    key = TableKey.generate()
    return session, session.seal_table_key(offer, party, table, key), key


def _refused(net, held, err, code, text):
    assert err.code() == code, (err.code(), err.details())
    assert text in err.details(), err.details()
    assert "Traceback" not in err.details()


def test_insider_uploading_another_partys_table_is_refused(net, held):
    _, env, key = _envelope(held)
    err = _upload(net, "telco", env, _seal(_bank_table(net), key, held["job_id"]))
    _refused(net, held, err, grpc.StatusCode.PERMISSION_DENIED, "'telco' may not upload a table of 'bank'")


def test_insider_replaying_a_key_envelope_from_another_job_is_refused(net, held):
    import dataclasses

    old_job = net.extra["baseline"]
    _, old_env, key = _envelope(held, job_id=old_job, offer=held["old_offer"])
    replayed = dataclasses.replace(old_env, job_id=held["job_id"])
    err = _upload(net, "bank", replayed, _seal(_bank_table(net), key, held["job_id"]))
    _refused(net, held, err, grpc.StatusCode.PERMISSION_DENIED, "binding.report_data")
    err = _upload(net, "bank", old_env, _seal(_bank_table(net), key, old_job))  # as it was: that job is over
    _refused(net, held, err, grpc.StatusCode.FAILED_PRECONDITION, "no approved job with that id")


def test_insider_sending_a_sealed_stream_of_another_job_is_refused(net, held):
    _, env, key = _envelope(held)
    err = _upload(net, "bank", env, _seal(_bank_table(net), key, net.extra["baseline"]))
    _refused(net, held, err, grpc.StatusCode.PERMISSION_DENIED, "header job digest differs")


def test_insider_with_a_forged_envelope_signature_is_refused(net, held):
    import dataclasses

    _, env, key = _envelope(held)
    forged = dataclasses.replace(env, signature=bytes([env.signature[0] ^ 1]) + env.signature[1:])
    err = _upload(net, "bank", forged, _seal(_bank_table(net), key, held["job_id"]))
    _refused(net, held, err, grpc.StatusCode.PERMISSION_DENIED, "signature does not verify")


def test_insider_whose_evidence_binds_other_keys_is_refused(net, held):
    """The host signs the envelope with its own key and presents the enclave's evidence."""
    import dataclasses

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from teenet.negotiation import envelope_message

    _, env, key = _envelope(held)
    own = ed25519.Ed25519PrivateKey.generate()
    offer = held["offer"].offer
    msg = envelope_message(bytes.fromhex(env.job_id), env.party, env.table, env.sealed_key,
                           offer.hpke_public_key, offer.signing_public_key)
    swapped = dataclasses.replace(env, signing_public_key=own.public_key().public_bytes_raw(), signature=own.sign(msg))
    err = _upload(net, "bank", swapped, _seal(_bank_table(net), key, held["job_id"]))
    _refused(net, held, err, grpc.StatusCode.PERMISSION_DENIED, "binding.report_data")


def test_insider_sending_columns_the_owners_did_not_approve_is_refused(net, held):
    _, env, key = _envelope(held)
    err = _upload(net, "bank", env, _seal(_bank_table(net, ("customer_id", "income")), key, held["job_id"]))
    _refused(net, held, err, grpc.StatusCode.PERMISSION_DENIED, "arrived with columns")


def test_insider_uploading_a_table_that_is_not_an_input_is_refused(net, held):
    _, env, key = _envelope(held, table="staff")
    err = _upload(net, "bank", env, _seal(_bank_table(net), key, held["job_id"], name="staff"))
    _refused(net, held, err, grpc.StatusCode.PERMISSION_DENIED, "bank/staff is not an input of this job")


def test_insider_claiming_another_tables_fingerprint_is_refused(net, held):
    """A party sends its table with the (correctly MACed) fingerprint of a different table,
    or with none: the enclave recomputes the root over what it opened and refuses both."""
    from teenet.lineage import Fingerprinter, fingerprint_mac
    from teenet.sealing import StreamBinding, seal_table

    _, env, key = _envelope(held)
    table = _bank_table(net)
    stream = _seal(table, key, held["job_id"])
    other = Fingerprinter()
    edited = table.slice(1)  # one row fewer: another table
    list(seal_table(edited, key, StreamBinding(bytes.fromhex(held["job_id"]), "bank", "customers"),
                    on_chunk=other.add_chunk))
    claim = pb.LineageFingerprint(root=other.root(), chunks=len(stream) - 1,
                                  mac=fingerprint_mac(key.secret_bytes(), stream[0], other.root(), len(stream) - 1))
    channel, stub = net.compute_stub("bank")
    try:
        msgs = [pb.UploadMessage(key=pb.KeyEnvelope(
            job_id=env.job_id, party=env.party, table=env.table, sealed_key=env.sealed_key, evidence=env.evidence,
            signing_public_key=env.signing_public_key, signature=env.signature))]
        msgs += [pb.UploadMessage(header=m) if i == 0 else pb.UploadMessage(chunk=m) for i, m in enumerate(stream)]
        err = rpc_error(lambda: stub.UploadTable(iter(msgs + [pb.UploadMessage(fingerprint=claim)]), timeout=20))
    finally:
        channel.close()
    _refused(net, held, err, grpc.StatusCode.PERMISSION_DENIED, "input.fingerprint")
    assert "differs from the chunks opened" in err.details()
    _, env2, key2 = _envelope(held)
    err = _upload(net, "bank", env2, _seal(table, key2, held["job_id"]))
    _refused(net, held, err, grpc.StatusCode.PERMISSION_DENIED, "arrived without its fingerprint")
    # the right fingerprint, but a `shipped` record its owner's key never signed (teenet.lineage)
    import tempfile
    from types import SimpleNamespace

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from teenet.audit import AuditLog
    from teenet.lineage import record_shipped, shipped_fields

    _, env3, key3 = _envelope(held)
    stream3, fp3 = _seal(table, key3, held["job_id"]), Fingerprinter()
    list(seal_table(table, key3, StreamBinding(bytes.fromhex(held["job_id"]), "bank", "customers"),
                    on_chunk=fp3.add_chunk))
    forged_log = AuditLog(Path(tempfile.mkdtemp()) / "forged.db", ed25519.Ed25519PrivateKey.generate())
    forged = record_shipped(SimpleNamespace(name="bank", audit_log=forged_log), held["job_id"], "customers",
                            fp3.root(), "10")
    claim3 = pb.LineageFingerprint(root=fp3.root(), chunks=fp3.chunks,
                                   mac=fingerprint_mac(key3.secret_bytes(), stream3[0], fp3.root(), fp3.chunks),
                                   **shipped_fields(forged))
    channel, stub = net.compute_stub("bank")
    try:
        msgs = [pb.UploadMessage(key=pb.KeyEnvelope(
            job_id=env3.job_id, party=env3.party, table=env3.table, sealed_key=env3.sealed_key,
            evidence=env3.evidence, signing_public_key=env3.signing_public_key, signature=env3.signature))]
        msgs += [pb.UploadMessage(header=m) if i == 0 else pb.UploadMessage(chunk=m) for i, m in enumerate(stream3)]
        err = rpc_error(lambda: stub.UploadTable(iter(msgs + [pb.UploadMessage(fingerprint=claim3)]), timeout=20))
    finally:
        channel.close()
    _refused(net, held, err, grpc.StatusCode.PERMISSION_DENIED, "input.fingerprint")
    assert "shipped record of customers does not verify" in err.details()
    refused = [e for e in net.audit_for("compute-1", held["job_id"], "upload_refused") if e.get("party") == "bank"]
    assert any("input.fingerprint" in e["reason"] for e in refused)
    assert not [e for e in net.audit_for("compute-1", held["job_id"], "table_received") if e.get("party") == "bank"]


def test_after_the_insider_attacks_the_held_job_still_runs_on_honest_tables_only(net, held):
    job_id = held["job_id"]
    assert time.monotonic() - held["started"] < 11, "the attacks took too long for the held uploads"
    assert net.audit_for("compute-1", job_id, "table_received") == []  # no attack got a table in
    refused = net.audit_for("compute-1", job_id, "upload_refused")
    reasons = " | ".join(e["reason"] for e in refused)
    for check in ("binding.report_data", "signature does not verify", "arrived with columns"):
        assert check in reasons
    held["stall"].release.set()
    analyst = net.extra["analyst"]
    st = analyst.wait(job_id)
    assert st.state == "succeeded", st.reason
    received = net.audit_for("compute-1", job_id, "table_received")
    assert sorted((e["party"], e["table"]) for e in received) == sorted(PARTIES)
    assert all(e["data_enclave"] == held["enclave"].measurement for e in received)


# --- C. a compute enclave whose code differs by one byte; one that requires hardware ----------

def test_a_compute_enclave_whose_code_differs_by_one_byte_gets_nothing(net, analyst):
    from teenet.attestation.measure import build_manifest, installed_dependencies, runtime_name

    changed, what = net.extra["altered"]
    original = net.extra["measurement"]
    copy_root = net / "altered-code" / "teenet"
    dirs = {"teenet": copy_root, "teenet.node": copy_root / "node", "teenet.coordinator": copy_root / "coordinator",
            "teenet.models": copy_root / "models", "teenet.cli": copy_root / "cli"}
    altered = build_manifest(dirs, installed_dependencies(), runtime_name()).measurement().hex()
    assert altered != original, what
    assert f"measurement {altered[:16]}" in net.log_text("compute-2")  # the node runs the altered code
    job_id = analyst.submit(psi("compute-2"))
    st = analyst.wait(job_id)
    assert st.state == "failed"
    assert st.reason == "compute enclave refused the job: approval.measurement", st.reason
    failed = net.audit_for("compute-2", job_id, "job_failed")  # the detail stays in the node's own audit
    assert failed and altered in failed[0]["detail"] and original in failed[0]["detail"], failed
    assert net.audit_for("compute-2", job_id, "job_accepted") == []  # no keys, no offer
    assert list(st.uploaded) == []
    _no_table_reached_compute(net, job_id, "compute-2")


def test_simulated_data_evidence_is_refused_where_the_compute_policy_requires_hardware(net, analyst):
    job_id = analyst.submit(psi("compute-3"))
    st = analyst.wait(job_id)
    assert st.state == "failed"
    assert "compute node refused" in st.reason and "policy.hardware" in st.reason, st.reason
    refused = net.audit_for("compute-3", job_id, "upload_refused")
    assert refused and all("policy.hardware" in e["reason"] for e in refused)
    _no_table_reached_compute(net, job_id, "compute-3")


# --- D. release rules ------------------------------------------------------------------------

def _rejected_by_bank(net, analyst, text, expected, *, validate=True):
    job_id = analyst.submit(text, validate=validate)
    st = analyst.wait(job_id)
    assert st.state == "failed" and f"rejected by bank: {expected}" in st.reason, st.reason
    assert any(e["reason"] == expected for e in net.audit_for("bank", job_id, "rejected"))
    assert list(st.uploaded) == []
    _no_table_reached_compute(net, job_id)
    return st


def test_a_column_the_owner_did_not_grant_is_refused(net, analyst):
    text = BANK_AGGREGATE.format(name="age", table="customers", columns="region, age", group_by="region",
                                 metric="age", kind="aggregate")
    _rejected_by_bank(net, analyst, text, "column(s) age of 'customers' are not shared by bank's policy")


def test_a_table_the_owner_did_not_grant_is_refused(net, analyst):
    text = BANK_AGGREGATE.format(name="staff", table="staff", columns="salary", group_by="", metric="salary",
                                 kind="aggregate")
    _rejected_by_bank(net, analyst, text, "table 'staff' is not shared by bank's policy")


def test_ids_to_a_party_the_owners_did_not_allow_are_refused(net, analyst):
    text = psi().replace("{kind: size, to: [analyst]}", "{kind: ids, to: [telco]}")
    text = "\n".join(line for line in text.splitlines() if "insurer" not in line) + "\n"
    _rejected_by_bank(net, analyst, text, "'ids' may go only to bank under bank's policy, not to telco")


def test_raw_rows_are_refused_by_the_owner_before_any_operator_can_approve_them(net, analyst, capsys):
    from teenet.cli.main import main

    text = BANK_AGGREGATE.format(name="rows", table="customers", columns="region, income", group_by="region",
                                 metric="income", kind="rows")
    job_id = analyst.submit(text, validate=False)  # the CLI would refuse it; a hostile analyst skips that
    st = analyst.wait(job_id)
    assert st.state == "failed" and st.reason.startswith("rejected by bank: bank cannot approve an invalid job: "
                                                         "release.raw_rows"), st.reason
    # A careless operator is too late: the node decides once per job.
    assert main(["approvals", "approve", job_id, "--config", str(net / "bank.yaml"), "--operator", "eve"]) == 1
    capsys.readouterr()
    assert list(st.results) == []
    _no_table_reached_compute(net, job_id)
    # (The compute enclave refuses raw rows too, when an owner's host forges the approval:
    # tests/attacks/test_attack_analysis.py, A9.)


def test_an_aggregate_over_groups_below_k_releases_no_group(net, analyst):
    text = BANK_AGGREGATE.format(name="by-income", table="customers", columns="income, defaulted",
                                 group_by="income", metric="defaulted", kind="aggregate")
    job_id = analyst.submit(text)
    st = analyst.wait(job_id)
    assert st.state == "succeeded", st.reason
    opened, _ = analyst.result(job_id)
    doc = json.loads(opened[0].payload)
    assert doc["rows"] == [] and doc["suppressed_groups"] > 1000 and doc["min_group_size"] == 10
    assert leaked(plaintext_needles(net, [("bank", "customers")]), opened[0].payload) == []


# --- E. the real coordinator, called with forged or replayed messages -------------------------

def test_a_job_signed_by_a_member_who_is_not_an_analyst_is_refused(net, analyst):
    channel, stub = net.coordinator_stub("telco")
    try:
        signed = analyst.sign(psi(), key=net.keys("telco").signing, analyst="telco")
        err = rpc_error(lambda: stub.SubmitJob(signed.to_proto(), timeout=10))
    finally:
        channel.close()
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "'telco' is a data member" in err.details()


def test_a_job_signed_by_the_wrong_key_is_refused(net, analyst):
    signed = analyst.sign(psi(), key=net.keys("bank").signing)
    err = rpc_error(lambda: analyst.stub.SubmitJob(signed.to_proto(), timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "job.signature" in err.details()
    assert analyst.stub.ListJobs(pb.ListJobsRequest(limit=1000), timeout=10).jobs  # still serving
    assert all(j.job_id != signed.job_id for j in analyst.stub.ListJobs(pb.ListJobsRequest(limit=1000)).jobs)


def _insurer_decision(net, job_id: str):
    conn = sqlite3.connect(f"file:{net / 'state' / 'insurer' / 'node.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT decision, signature FROM decisions WHERE job_id=?", (job_id,)).fetchone()
    finally:
        conn.close()


def test_a_forged_or_replayed_approval_is_refused_by_the_coordinator(net, analyst):
    from teenet.approval import Decision, sign_decision

    job_id = analyst.submit(TRAIN_WITH_INSURER)  # the insurer's rules leave train jobs to an operator
    wait_until(lambda: net.audit_for("insurer", job_id, "approval_pending"), 30, "the insurer to wait")
    channel, stub = net.coordinator_stub("insurer")  # the insurer's host, not its enclave
    try:
        body = Decision(job_id=job_id, party="insurer", decision="approve", reason="ok", function="train",
                        compute="compute-1").canonical()
        forged = sign_decision(Decision.from_canonical(body), net.keys("bank").signing)  # a signature by the wrong key
        err = rpc_error(lambda: stub.SubmitDecision(pb.SignedDecision(
            job_id=job_id, party="insurer", decision=forged.decision, signature=forged.signature), timeout=10))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "decision.signature" in err.details()
        old_decision, old_signature = _insurer_decision(net, net.extra["baseline"])  # a real approval, another job
        err = rpc_error(lambda: stub.SubmitDecision(pb.SignedDecision(
            job_id=job_id, party="insurer", decision=old_decision, signature=old_signature), timeout=10))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "another job" in err.details()
    finally:
        channel.close()
    st = analyst.status(job_id)
    assert st.state == "awaiting_approvals"
    assert {d.party: d.decision for d in st.decisions}["insurer"] == "pending"
    from teenet.canonical import domain_message

    sig = net.keys("analyst").signing.sign(domain_message("teenet/cancel/v1", bytes.fromhex(job_id), b"done"))
    analyst.stub.CancelJob(pb.CancelRequest(job_id=job_id, analyst="analyst", reason="done", signature=sig))


# --- F. hostile input to every service ---------------------------------------------------------

def _wide_channel(net, member: str, port: int, server_name: str) -> grpc.Channel:
    """A client that will send messages larger than the services accept."""
    ca, cert, key = net.tls(member).read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=[
        ("grpc.max_send_message_length", -1), ("grpc.ssl_target_name_override", server_name)])


def test_oversized_messages_are_refused_by_both_services(net, analyst):
    big = b"x" * (5 << 20)
    channel = _wide_channel(net, "bank", net.listen_port("compute-1"), "compute-1")
    try:
        err = rpc_error(lambda: rpc.ComputeStub(channel).UploadTable(iter([pb.UploadMessage(chunk=big)]), timeout=20))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        channel.close()
    channel = _wide_channel(net, "analyst", net.listen_port("coordinator"), "coordinator")
    try:
        import teenet.pki

        # The coordinator takes larger messages than the Compute service (a job's sealed results
        # travel in one); past its own transport limit gRPC refuses, below it the service does.
        limit = max(getattr(teenet.pki, "MAX_RESULTS_MESSAGE_BYTES", 0), teenet.pki.MAX_MESSAGE_BYTES)
        stub = rpc.CoordinatorStub(channel)
        err = rpc_error(lambda: stub.SubmitJob(pb.SignedJob(canonical_spec=b"x" * (limit + 1024),
                                                            analyst="analyst"), timeout=60))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        err = rpc_error(lambda: stub.SubmitJob(pb.SignedJob(canonical_spec=b"{" * 300_000, analyst="analyst"),
                                               timeout=20))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 262144" in err.details()
    finally:
        channel.close()


def test_malformed_protobuf_is_refused_by_both_services(net):
    garbage = [b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", bytes(range(256))]
    channel, _ = net.coordinator_stub("bank")
    try:
        for method in ("/teenet.v1.Coordinator/SubmitJob", "/teenet.v1.Coordinator/Poll",
                       "/teenet.v1.Coordinator/SubmitDecision", "/teenet.v1.Coordinator/PostOffer"):
            for g in garbage:
                err = rpc_error(lambda: raw_unary(channel, method, g))
                assert err.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT), (method, err)
    finally:
        channel.close()
    channel, stub = net.compute_stub("bank")
    try:
        upload = channel.stream_unary("/teenet.v1.Compute/UploadTable", request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
        for g in garbage:
            err = rpc_error(lambda: upload(iter([g]), timeout=10))
            assert err.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT), err
        err = rpc_error(lambda: stub.UploadTable(iter([]), timeout=10))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty upload stream" in err.details()
        err = rpc_error(lambda: stub.UploadTable(iter([pb.UploadMessage(chunk=b"x" * 100)]), timeout=10))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "must start with the key envelope" in err.details()
    finally:
        channel.close()


def test_a_flood_of_requests_does_not_stop_the_network_serving_others(net, analyst):
    """2000 coordinator calls and 200 junk uploads from 6 threads while an honest job runs."""
    stop_at = time.monotonic() + 20
    counts = {"ok": 0, "refused": 0}
    lock = threading.Lock()

    def flood_coordinator(member: str, n: int) -> None:
        channel, stub = net.coordinator_stub(member)
        try:
            for i in range(n):
                if time.monotonic() > stop_at:
                    return
                try:
                    if i % 3 == 0:
                        stub.ListJobs(pb.ListJobsRequest(limit=5), timeout=5)
                    elif i % 3 == 1:
                        stub.GetJob(pb.JobRef(job_id="f" * 64), timeout=5)
                    else:
                        stub.Poll(pb.PollRequest(node="bank"), timeout=5)
                    outcome = "ok"
                except grpc.RpcError:
                    outcome = "refused"
                with lock:
                    counts[outcome] += 1
        finally:
            channel.close()

    def flood_compute(n: int) -> None:
        channel, stub = net.compute_stub("telco")
        try:
            for _ in range(n):
                if time.monotonic() > stop_at:
                    return
                try:
                    stub.UploadTable(iter([pb.UploadMessage(key=pb.KeyEnvelope(job_id="0" * 64))]), timeout=5)
                except grpc.RpcError:
                    pass
        finally:
            channel.close()

    threads = [threading.Thread(target=flood_coordinator, args=(m, 500)) for m in ("analyst", "telco", "insurer", "bank")]
    threads += [threading.Thread(target=flood_compute, args=(100,)) for _ in range(2)]
    for t in threads:
        t.start()
    job_id = analyst.submit(psi())
    st = analyst.wait(job_id, timeout=60)
    for t in threads:
        t.join(timeout=30)
    assert st.state == "succeeded", st.reason
    assert counts["ok"] + counts["refused"] >= 1000, counts
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for member, port, name in (("bank", net.listen_port("coordinator"), "coordinator"),
                               ("bank", net.listen_port("compute-1"), "compute-1")):
        from teenet.pki import secure_channel

        channel = secure_channel(f"127.0.0.1:{port}", net.tls(member), server_name=name)
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            channel.close()


def test_no_plaintext_crossed_the_compute_wire_during_the_attacks(net):
    blob = net.compute_wire.captured()
    assert len(blob) > 100_000
    assert leaked(plaintext_needles(net, PARTIES), blob) == []
