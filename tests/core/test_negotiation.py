"""Key negotiation between attested enclaves: the good path and each refusal."""

from __future__ import annotations

import hashlib

import pytest

from teenet.attestation.evidence import Evidence
from teenet.attestation.policy import AllOf, MeasurementAllowlist, RequireHardware, UnsafeAllowSimulated
from teenet.attestation.roots import default_trust_roots
from teenet.attestation.sim import UnsafeSimulatedAttester
from teenet.errors import NegotiationError, VerificationError
from teenet.negotiation import (ComputeEnclaveSession, DataEnclaveSession, HpkeSuite, verify_compute_offer)
from teenet.sealing import TableKey

COMPUTE_M = hashlib.sha384(b"compute enclave code").digest()
DATA_M = hashlib.sha384(b"data enclave code").digest()
JOB = hashlib.sha256(b"job 1").digest()
OTHER_JOB = hashlib.sha256(b"job 2").digest()


@pytest.fixture(scope="module")
def env(sim_platform):
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    compute_att = UnsafeSimulatedAttester(sim_platform, COMPUTE_M)
    data_att = UnsafeSimulatedAttester(sim_platform, DATA_M)
    owner_policy = AllOf([UnsafeAllowSimulated(), MeasurementAllowlist([COMPUTE_M])])
    compute_policy = AllOf([UnsafeAllowSimulated(), MeasurementAllowlist([DATA_M])])
    return roots, compute_att, data_att, owner_policy, compute_policy


@pytest.mark.parametrize("suite", list(HpkeSuite))
def test_table_key_reaches_the_compute_enclave(env, suite):
    roots, compute_att, data_att, owner_policy, compute_policy = env
    compute = ComputeEnclaveSession(JOB, compute_att, suite)
    verified = verify_compute_offer(compute.offer("compute-1", "127.0.0.1:1"), JOB, owner_policy, roots)
    assert verified.claims.measurement == COMPUTE_M
    key = TableKey.generate()
    envelope = DataEnclaveSession(JOB, data_att).seal_table_key(verified, "bank", "customers", key)
    opened, claims = compute.open_key_envelope(envelope, expected_party="bank", expected_table="customers",
                                               data_policy=compute_policy, roots=roots)
    assert opened.secret_bytes() == key.secret_bytes()
    assert claims.measurement == DATA_M
    assert key.secret_bytes() not in envelope.sealed_key


def test_owner_refuses_an_unpinned_compute_enclave(env, sim_platform):
    roots, _, _, owner_policy, _ = env
    rogue = ComputeEnclaveSession(JOB, UnsafeSimulatedAttester(sim_platform, hashlib.sha384(b"other code").digest()))
    with pytest.raises(VerificationError) as err:
        verify_compute_offer(rogue.offer("compute-1", ""), JOB, owner_policy, roots)
    assert err.value.check == "policy.measurement"


def test_owner_refuses_simulated_evidence_when_hardware_is_required(env):
    roots, compute_att, *_ = env
    offer = ComputeEnclaveSession(JOB, compute_att).offer("compute-1", "")
    with pytest.raises(VerificationError) as err:
        verify_compute_offer(offer, JOB, AllOf([RequireHardware(), MeasurementAllowlist([COMPUTE_M])]), roots)
    assert err.value.check == "policy.hardware"


def test_owner_refuses_simulated_evidence_without_the_pinned_sim_root(env):
    _, compute_att, _, owner_policy, _ = env
    offer = ComputeEnclaveSession(JOB, compute_att).offer("compute-1", "")
    with pytest.raises(VerificationError):
        verify_compute_offer(offer, JOB, owner_policy, default_trust_roots())


def test_offer_replayed_for_another_job_is_refused(env):
    roots, compute_att, _, owner_policy, _ = env
    offer = ComputeEnclaveSession(OTHER_JOB, compute_att).offer("compute-1", "")
    with pytest.raises(NegotiationError, match="another job"):
        verify_compute_offer(offer, JOB, owner_policy, roots)


def test_evidence_from_another_job_is_refused(env):
    """An offer relabelled with this job's id but carrying evidence bound to another job."""
    roots, compute_att, _, owner_policy, _ = env
    other = ComputeEnclaveSession(OTHER_JOB, compute_att).offer("compute-1", "")
    from dataclasses import replace

    with pytest.raises(VerificationError) as err:
        verify_compute_offer(replace(other, job_id=JOB.hex()), JOB, owner_policy, roots)
    assert err.value.check == "binding.report_data"


def test_evidence_bound_to_other_keys_is_refused(env):
    """A man in the middle swaps in its own HPKE key but keeps the genuine evidence."""
    roots, compute_att, _, owner_policy, _ = env
    from dataclasses import replace

    from cryptography.hazmat.primitives.asymmetric import x25519

    genuine = ComputeEnclaveSession(JOB, compute_att).offer("compute-1", "")
    mitm = replace(genuine, hpke_public_key=x25519.X25519PrivateKey.generate().public_key().public_bytes_raw())
    with pytest.raises(VerificationError) as err:
        verify_compute_offer(mitm, JOB, owner_policy, roots)
    assert err.value.check == "binding.report_data"


def test_compute_refuses_a_key_sealed_to_another_job(env):
    roots, compute_att, data_att, owner_policy, compute_policy = env
    this_job = ComputeEnclaveSession(JOB, compute_att)
    other_job = ComputeEnclaveSession(OTHER_JOB, compute_att)
    verified = verify_compute_offer(other_job.offer("compute-1", ""), OTHER_JOB, owner_policy, roots)
    envelope = DataEnclaveSession(OTHER_JOB, data_att).seal_table_key(verified, "bank", "t", TableKey.generate())
    from dataclasses import replace

    # refused at the data enclave's evidence (bound to the other job) before any decryption
    with pytest.raises((NegotiationError, VerificationError)):
        this_job.open_key_envelope(replace(envelope, job_id=JOB.hex()), expected_party="bank",
                                   expected_table="t", data_policy=compute_policy, roots=roots)


def test_compute_refuses_an_unattested_data_enclave(env, sim_platform):
    roots, compute_att, _, owner_policy, compute_policy = env
    compute = ComputeEnclaveSession(JOB, compute_att)
    verified = verify_compute_offer(compute.offer("compute-1", ""), JOB, owner_policy, roots)
    rogue = DataEnclaveSession(JOB, UnsafeSimulatedAttester(sim_platform, hashlib.sha384(b"rogue").digest()))
    envelope = rogue.seal_table_key(verified, "bank", "t", TableKey.generate())
    with pytest.raises(VerificationError) as err:
        compute.open_key_envelope(envelope, expected_party="bank", expected_table="t",
                                  data_policy=compute_policy, roots=roots)
    assert err.value.check == "policy.measurement"


def test_compute_refuses_a_forged_envelope_signature_and_a_relabelled_table(env):
    roots, compute_att, data_att, owner_policy, compute_policy = env
    from dataclasses import replace

    compute = ComputeEnclaveSession(JOB, compute_att)
    verified = verify_compute_offer(compute.offer("compute-1", ""), JOB, owner_policy, roots)
    envelope = DataEnclaveSession(JOB, data_att).seal_table_key(verified, "bank", "customers", TableKey.generate())
    forged = replace(envelope, signature=bytes(64))
    with pytest.raises(NegotiationError, match="signature"):
        compute.open_key_envelope(forged, expected_party="bank", expected_table="customers",
                                  data_policy=compute_policy, roots=roots)
    with pytest.raises(NegotiationError):
        compute.open_key_envelope(replace(envelope, table="accounts"), expected_party="bank",
                                  expected_table="accounts", data_policy=compute_policy, roots=roots)
    with pytest.raises(NegotiationError):
        compute.open_key_envelope(envelope, expected_party="telco", expected_table="customers",
                                  data_policy=compute_policy, roots=roots)


def test_garbage_evidence_in_an_offer_is_a_clear_error(env):
    roots, compute_att, _, owner_policy, _ = env
    from dataclasses import replace

    from teenet.errors import TeenetError

    offer = ComputeEnclaveSession(JOB, compute_att).offer("compute-1", "")
    for evidence in (b"not json", Evidence.from_bytes(offer.evidence).to_bytes()[:50]):
        with pytest.raises(TeenetError):
            verify_compute_offer(replace(offer, evidence=evidence), JOB, owner_policy, roots)
    with pytest.raises(NegotiationError, match="HPKE public key"):
        verify_compute_offer(replace(offer, hpke_public_key=b"\x01" * 5), JOB, owner_policy, roots)
