"""Signed jobs: a round trip verifies; any tampering, a wrong signer or a wrong consortium is refused."""

from __future__ import annotations

import json

import pytest

from teenet.canonical import canonical_json, domain_message
from teenet.config import load_consortium
from teenet.errors import InputError, VerificationError
from teenet.identity import MemberKeys, b64_raw
from teenet.jobspec import (SIGNATURE_DOMAIN, SignedJob, job_digest, parse_job_spec, sign_job,
                            verify_signed_job)
from teenet.proto import teenet_pb2

from config_sandbox import CONFIGS, Sandbox

SPEC = parse_job_spec(CONFIGS / "jobs" / "default-risk.yaml")


def signed_by(sandbox: Sandbox, name: str = "analyst", consortium: str = "demo") -> SignedJob:
    return sign_job(SPEC, name, consortium, sandbox.keys[name].signing)


def resign(sandbox: Sandbox, canonical: bytes, name: str = "analyst") -> SignedJob:
    """A validly signed job over arbitrary bytes: the signature is fine, the content is not."""
    signature = sandbox.keys[name].signing.sign(domain_message(SIGNATURE_DOMAIN, job_digest(canonical)))
    return SignedJob(canonical, name, signature)


def refusal(signed: SignedJob, sandbox: Sandbox, consortium=None) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify_signed_job(signed, consortium or sandbox.consortium)
    assert "\n" not in str(info.value)
    return info.value


def test_round_trip_verifies_and_returns_the_spec(sandbox: Sandbox) -> None:
    signed = signed_by(sandbox)
    spec = verify_signed_job(signed, sandbox.consortium)
    assert (spec.analyst, spec.consortium) == ("analyst", "demo") and len(spec.nonce or "") == 64
    assert (spec.name, spec.inputs, spec.release, spec.params) == (SPEC.name, SPEC.inputs, SPEC.release, SPEC.params)
    assert spec.digest() == signed.digest and signed.job_id == signed.digest.hex()
    body = json.loads(signed.canonical_spec)
    assert body["version"] == 1 and body["inputs"][0]["keys"] == ["customer_id"]
    assert set(body) == {"version", "analyst", "consortium", "nonce", "name", "function", "compute",
                         "inputs", "params", "release"}


def test_proto_round_trip(sandbox: Sandbox) -> None:
    signed = signed_by(sandbox)
    wire = teenet_pb2.SignedJob.FromString(signed.to_proto().SerializeToString())
    again = SignedJob.from_proto(wire)
    assert again == signed
    verify_signed_job(again, sandbox.consortium)


def test_digest_changes_with_the_nonce(sandbox: Sandbox) -> None:
    first, second = signed_by(sandbox), signed_by(sandbox)
    assert first.job_id != second.job_id
    a, b = json.loads(first.canonical_spec), json.loads(second.canonical_spec)
    assert a.pop("nonce") != b.pop("nonce") and a == b


def test_tampered_canonical_spec_refused(sandbox: Sandbox) -> None:
    signed = signed_by(sandbox)
    tampered = signed.canonical_spec.replace(b'"to":["analyst","bank"]', b'"to":["analyst","telco"]')
    assert tampered != signed.canonical_spec
    error = refusal(SignedJob(tampered, signed.analyst, signed.signature), sandbox)
    assert error.check == "job.signature" and "does not verify" in str(error)


def test_tampered_nonce_refused(sandbox: Sandbox) -> None:
    signed = signed_by(sandbox)
    body = json.loads(signed.canonical_spec)
    body["nonce"] = "00" * 32
    error = refusal(SignedJob(canonical_json(body), signed.analyst, signed.signature), sandbox)
    assert error.check == "job.signature"


def test_tampered_signature_refused(sandbox: Sandbox) -> None:
    signed = signed_by(sandbox)
    flipped = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    assert refusal(SignedJob(signed.canonical_spec, signed.analyst, flipped), sandbox).check == "job.signature"
    assert refusal(SignedJob(signed.canonical_spec, signed.analyst, b""), sandbox).check == "job.signature"


def test_claimed_analyst_swapped_refused(sandbox: Sandbox) -> None:
    second = MemberKeys.generate()
    text = sandbox.consortium_path.read_text() + (
        f"  analyst2:\n    role: analyst\n    signing_key: {b64_raw(second.public().signing)}\n"
        f"    hpke_key: {b64_raw(second.public().hpke)}\n")
    consortium = load_consortium(sandbox.write("two-analysts.yaml", text))
    signed = signed_by(sandbox)
    # the coordinator relabels the job as analyst2's: analyst2's key does not verify it
    error = refusal(SignedJob(signed.canonical_spec, "analyst2", signed.signature), sandbox, consortium)
    assert error.check == "job.signature"
    # analyst2 signs a spec that names analyst inside: the names must agree
    canonical = signed.canonical_spec
    forged = SignedJob(canonical, "analyst2",
                       second.signing.sign(domain_message(SIGNATURE_DOMAIN, job_digest(canonical))))
    error = refusal(forged, sandbox, consortium)
    assert error.check == "job.analyst" and error.expected == "analyst2" and error.found == "analyst"


def test_signed_by_a_non_analyst_refused(sandbox: Sandbox) -> None:
    error = refusal(signed_by(sandbox, "bank"), sandbox)
    assert error.check == "job.analyst" and "not an analyst" in str(error) and "(data)" in str(error)


def test_signed_by_a_stranger_refused(sandbox: Sandbox) -> None:
    signed = signed_by(sandbox)
    error = refusal(SignedJob(signed.canonical_spec, "mallory", signed.signature), sandbox)
    assert error.check == "job.analyst" and error.expected == "one of analyst"


def test_other_consortium_refused(sandbox: Sandbox) -> None:
    error = refusal(signed_by(sandbox, consortium="elsewhere"), sandbox)
    assert error.check == "job.consortium" and error.expected == "demo" and error.found == "elsewhere"


def test_signed_but_not_canonical_refused(sandbox: Sandbox) -> None:
    body = json.loads(signed_by(sandbox).canonical_spec)
    error = refusal(resign(sandbox, json.dumps(body, indent=1).encode()), sandbox)
    assert error.check == "job.schema" and "not in canonical form" in str(error)


def test_signed_with_extra_field_refused(sandbox: Sandbox) -> None:
    body = json.loads(signed_by(sandbox).canonical_spec)
    body["priority"] = "high"
    error = refusal(resign(sandbox, canonical_json(body)), sandbox)
    assert error.check == "job.schema" and "unknown field 'priority'" in str(error)


def test_signed_with_hostile_table_name_refused(sandbox: Sandbox) -> None:
    body = json.loads(signed_by(sandbox).canonical_spec)
    body["inputs"][0]["table"] = "../../etc/passwd"
    error = refusal(resign(sandbox, canonical_json(body)), sandbox)
    assert error.check == "job.schema" and "field 'inputs[0].table'" in str(error)


def test_signed_with_wrong_version_refused(sandbox: Sandbox) -> None:
    body = json.loads(signed_by(sandbox).canonical_spec)
    body["version"] = 2
    error = refusal(resign(sandbox, canonical_json(body)), sandbox)
    assert error.check == "job.schema" and "field 'version'" in str(error)


def test_signed_naming_a_non_member_refused(sandbox: Sandbox) -> None:
    body = json.loads(signed_by(sandbox).canonical_spec)
    body["release"][0]["to"].append("eve")
    error = refusal(resign(sandbox, canonical_json(body)), sandbox)
    assert error.check == "job.members" and "recipient 'eve' is not a member" in str(error)


def test_oversized_job_refused_before_parsing(sandbox: Sandbox) -> None:
    error = refusal(SignedJob(b"{" + b" " * 300_000 + b"}", "analyst", b"x" * 64), sandbox)
    assert error.check == "job.size"


def test_sign_job_checks_its_arguments(sandbox: Sandbox) -> None:
    with pytest.raises(InputError, match="field 'analyst'"):
        sign_job(SPEC, "Not A Name", "demo", sandbox.keys["analyst"].signing)
    with pytest.raises(InputError, match="Ed25519"):
        sign_job(SPEC, "analyst", "demo", sandbox.keys["analyst"].hpke)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="not signed yet"):
        SPEC.digest()
