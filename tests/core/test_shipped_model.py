"""A model shipped into a predict job: what the predict enclave accepts, and each refusal.

Real pieces throughout: a sandbox consortium (keys, simulated platform), a train job signed
by its analyst, the releasing enclave's session and evidence, and the model sealed by
teenet.release exactly as the compute node seals it. Each refusal also shows that no
model bytes came back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from teenet.errors import InputError, VerificationError
from teenet.release import SealedResult, seal_result, unwrap_result_key
from teenet.sealed_bytes import ResultKey
from teenet.shipped_model import ModelReference, verify_shipped_model

pytestmark = pytest.mark.slow  # builds a sandbox consortium (PKI, keys, simulated platform)

MODEL = b"\x08\x07ONNX model bytes, as the train job released them"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from teenet.attestation.roots import default_trust_roots
    from teenet.attestation.sim import SimulatedPlatform, UnsafeSimulatedAttester
    from teenet.cli.sandbox import init_sandbox
    from teenet.config import load_consortium
    from teenet.identity import MemberKeys
    from teenet.jobspec import parse_job_spec, sign_job
    from teenet.negotiation import ComputeEnclaveSession

    d: Path = tmp_path_factory.mktemp("shipped")
    init_sandbox(d, rows=60)
    consortium = load_consortium(d / "consortium.yaml")
    platform = SimulatedPlatform.load_or_create(d / "sim-platform")
    measurement = bytes.fromhex(consortium.attestation["measurements"][0])
    analyst = MemberKeys.load(d / "members" / "analyst" / "keys")
    bank = MemberKeys.load(d / "members" / "bank" / "keys")

    def signed(path: str):
        return sign_job(parse_job_spec(d / "jobs" / path), "analyst", consortium.name, analyst.signing)

    def released(job, recipient="bank", kind="model", media="application/onnx", payload=MODEL, session=None):
        session = session or ComputeEnclaveSession(bytes.fromhex(job.job_id),
                                                   UnsafeSimulatedAttester(platform, measurement))
        offer = session.offer("compute-1", "127.0.0.1:1")
        result = seal_result(job_digest=bytes.fromhex(job.job_id), kind=kind, recipient=recipient,
                             recipient_key=consortium.member(recipient).keys.hpke, media_type=media,
                             payload=payload, summary={}, sign=session.sign)
        return offer, result

    return {"consortium": consortium, "roots": default_trust_roots(sim_ark=platform.ark), "bank": bank,
            "signed": signed, "released": released, "platform": platform, "measurement": measurement}


def check(world, ref, job, offer, result, key=None):
    if key is None:
        key = unwrap_result_key(result, recipient=result.recipient, recipient_key=world["bank"].hpke)
    return verify_shipped_model(ref=ref, train_job=job, train_offer=offer, result=result, key=key,
                                consortium=world["consortium"], roots=world["roots"])


def test_the_model_the_train_job_released_to_the_shipper_is_accepted(world):
    job = world["signed"]("default-risk.yaml")
    offer, result = world["released"](job)
    assert check(world, ModelReference(job.job_id, "bank"), job, offer, result) == MODEL


def test_each_provenance_lie_is_refused(world):
    from teenet.attestation.sim import UnsafeSimulatedAttester
    from teenet.negotiation import ComputeEnclaveSession

    job = world["signed"]("default-risk.yaml")
    other_train = world["signed"]("default-risk.yaml")  # same spec, fresh nonce: another job
    psi = world["signed"]("psi-overlap.yaml")
    ref = ModelReference(job.job_id, "bank")
    offer, result = world["released"](job)
    other_offer, other_result = world["released"](other_train)
    cases = {
        # another train job's model, passed off as the one the spec names
        "model.job": lambda: check(world, ref, other_train, other_offer, other_result),
        # a psi job is not a model's provenance
        "model.job ": lambda: check(world, ModelReference(psi.job_id, "bank"), psi, *world["released"](psi)),
        # the offer of another job's enclave
        "model.offer": lambda: check(world, ref, job, other_offer, result),
        # a result the bank made itself with the key it holds: content the enclave never signed
        "result.stream": lambda: check(world, ref, job, offer, dataclasses.replace(
            result, messages=result.messages[:1] + tuple(m[:-1] + bytes([m[-1] ^ 1]) for m in result.messages[1:]))),
        # signed by an enclave whose evidence is not bound to this train job
        "result.signature": lambda: check(world, ref, job, offer, world["released"](job, session=ComputeEnclaveSession(
            bytes.fromhex(job.job_id), UnsafeSimulatedAttester(world["platform"], world["measurement"])))[1]),
        # the metrics result relabelled as the model
        "model.result": lambda: check(world, ref, job, offer,
                                      world["released"](job, kind="metrics", session=None)[1]),
        # not ONNX
        "model.result  ": lambda: _with_session(world, job, ref, media="application/json"),
    }
    for expected, attempt in cases.items():
        with pytest.raises(VerificationError) as refused:
            attempt()
        assert refused.value.check == expected.strip(), (expected, refused.value)
    # a wrong key opens nothing
    with pytest.raises(VerificationError, match="header authentication failed"):
        check(world, ref, job, offer, result, key=ResultKey.generate())


def _with_session(world, job, ref, **kw):
    from teenet.attestation.sim import UnsafeSimulatedAttester
    from teenet.negotiation import ComputeEnclaveSession

    session = ComputeEnclaveSession(bytes.fromhex(job.job_id), UnsafeSimulatedAttester(world["platform"],
                                                                                       world["measurement"]))
    offer, result = world["released"](job, session=session, **kw)
    return check(world, ref, job, offer, result)


def test_a_model_not_released_to_the_shipper_is_refused(world):
    # default-risk releases the model to the analyst and the bank, never to the telco
    job = world["signed"]("default-risk.yaml")
    offer, result = world["released"](job, recipient="telco")
    with pytest.raises(VerificationError) as refused:
        verify_shipped_model(ref=ModelReference(job.job_id, "telco"), train_job=job, train_offer=offer,
                             result=result, key=ResultKey.generate(), consortium=world["consortium"],
                             roots=world["roots"])
    assert refused.value.check == "model.recipient"


def test_the_model_reference_names_a_train_job_and_an_input_party():
    good = {"model": {"job": "ab" * 32, "from": "bank"}}
    assert ModelReference.parse(good, ["bank", "telco"]) == ModelReference("ab" * 32, "bank")
    for params, field in (({"model": "ab" * 32}, "params.model"),
                          ({"model": {"job": "ab" * 32}}, "params.model"),
                          ({"model": {"job": "xyz", "from": "bank"}}, "params.model.job"),
                          ({"model": {"job": "ab" * 32, "from": "insurer"}}, "params.model.from")):
        with pytest.raises(InputError) as refused:
            ModelReference.parse(params, ["bank", "telco"])
        assert refused.value.field == field
