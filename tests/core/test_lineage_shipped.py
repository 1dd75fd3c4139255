"""The owner's `shipped` record in a result's lineage (teenet/lineage.py): written in the owner's
real audit log with a signed tree head, carried in the stream's last message (proto fields
64-69), checked by the compute enclave, and trimmed from a lineage too big for a statement."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.audit import AuditLog
from teenet.canonical import canonical_json
from teenet.errors import VerificationError
from teenet.lineage import (MAX_LINEAGE_BYTES, check_shipped_record, fit_lineage, record_shipped, shipped_fields,
                            verify_shipped)
from teenet.proto import teenet_pb2 as pb

JOB = "ab" * 32
ROOT = bytes(range(32))


@pytest.fixture
def owner(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    log = AuditLog(tmp_path / "audit.db", key)
    for i in range(5):
        log.append({"event": "before", "i": i})
    return SimpleNamespace(name="bank", audit_log=log), key


def _consortium(key):
    member = SimpleNamespace(keys=SimpleNamespace(signing=key.public_key()))
    return SimpleNamespace(member=lambda name, role=None: member)


def test_a_shipped_record_verifies_against_the_owners_key_and_the_fingerprint_only(owner):
    rt, key = owner
    record = record_shipped(rt, JOB, "customers", ROOT, "120")
    events = [dict(e.event) for e in rt.audit_log.entries()]
    assert events[-1] == {"event": "shipped", "node": "bank", "job_id": JOB, "table": "customers",
                          "fingerprint": ROOT.hex(), "rows": "120"}
    head = verify_shipped(record, job_id=JOB, party="bank", table="customers", fingerprint=ROOT.hex(),
                          key=key.public_key())
    assert head.size == record["audit_seq"] == 6
    # the stream's last message carries it; the enclave gets the same record back
    msg = pb.LineageFingerprint(root=ROOT, chunks=1, mac=bytes(32), **shipped_fields(record))
    msg = pb.LineageFingerprint.FromString(msg.SerializeToString())
    assert check_shipped_record(msg, _consortium(key), job_id=JOB, party="bank", table="customers",
                                root=ROOT) == record
    assert check_shipped_record(pb.LineageFingerprint(root=ROOT), _consortium(key), job_id=JOB, party="bank",
                                table="customers", root=ROOT) is None  # an older data node: none
    # another fingerprint, job, table, key, row count or a flipped proof byte: refused
    wrong = [dict(fingerprint="00" * 32), dict(job_id="cd" * 32), dict(table="accounts"),
             dict(key=ed25519.Ed25519PrivateKey.generate().public_key())]
    for change in wrong:
        args = dict(job_id=JOB, party="bank", table="customers", fingerprint=ROOT.hex(), key=key.public_key())
        with pytest.raises(VerificationError) as exc:
            verify_shipped(record, **(args | change))
        assert exc.value.check == "input.fingerprint"
    flipped = dict(record, inclusion_proof=list(record["inclusion_proof"]))
    raw = bytearray(base64.b64decode(flipped["inclusion_proof"][0]))
    raw[0] ^= 1
    flipped["inclusion_proof"][0] = base64.b64encode(bytes(raw)).decode()
    for bad in (flipped, dict(record, rows="123"), dict(record, at="2020-01-01T00:00:00.000000Z"), {"rows": "1"}):
        with pytest.raises(VerificationError):
            verify_shipped(bad, job_id=JOB, party="bank", table="customers", fingerprint=ROOT.hex(),
                           key=key.public_key())
    with pytest.raises(VerificationError):
        check_shipped_record(pb.LineageFingerprint(root=ROOT, chunks=1, mac=bytes(32),
                                                   **shipped_fields(dict(record, rows="7"))),
                             _consortium(key), job_id=JOB, party="bank", table="customers", root=ROOT)


def test_a_lineage_too_big_for_a_statement_leaves_shipped_records_out_from_the_last_input(owner):
    rt, _ = owner
    record = record_shipped(rt, JOB, "customers", ROOT, "120")
    lineage = {"format": "teenet/lineage/v1", "inputs": [
        {"party": f"p{i}", "table": "t", "fingerprint": ROOT.hex(), "rows": "10", "shipped": dict(record)}
        for i in range(16)]}
    fitted = fit_lineage(lineage)
    assert len(canonical_json(fitted)) <= MAX_LINEAGE_BYTES
    kept = ["shipped" in i for i in fitted["inputs"]]
    assert kept[0] and not kept[-1] and kept == sorted(kept, reverse=True)  # a prefix keeps them
    small = {"inputs": [{"party": "p", "shipped": dict(record)}]}
    assert fit_lineage(small)["inputs"][0]["shipped"] == record
