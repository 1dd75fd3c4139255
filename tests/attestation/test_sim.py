"""The simulated SEV-SNP platform: on-disk life cycle, real report layout, and verification
end to end through `verify_evidence`, with the refusals an owner relies on."""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from snp_helpers import MEASUREMENT, other_sim_platform, shared_sim_platform, shared_sim_platform_dir
from teenet.attestation.binding import report_data_for
from teenet.attestation.evidence import Evidence, Platform
from teenet.attestation.measure import enclave_measurement
from teenet.attestation.policy import (
    AllOf, DebugDisabled, MaximumVmpl, MeasurementAllowlist, RequireHardware, UnsafeAllowSimulated,
)
from teenet.attestation.roots import default_trust_roots
from teenet.attestation.sim import (
    ARK_FILE, DEFAULT_TCB, PLATFORM_FILE, SimulatedPlatform, UnsafeSimulatedAttester, read_sim_ark,
)
from teenet.attestation.snp import decode_tcb, parse_snp_report
from teenet.attestation.verifier import verify_evidence
from teenet.errors import InputError, VerificationError

JOB = bytes.fromhex("ab" * 32)
HPKE_KEY = bytes(range(32))
SIGNING_KEY = bytes(range(32, 64))


@pytest.fixture(scope="session")
def platform() -> SimulatedPlatform:
    return shared_sim_platform()


@pytest.fixture(scope="session")
def sim_roots(platform):
    return default_trust_roots(sim_ark=platform.ark)


def owner_policy(measurement: bytes = MEASUREMENT) -> AllOf:
    return AllOf([UnsafeAllowSimulated(), MeasurementAllowlist([measurement]), DebugDisabled(), MaximumVmpl(0)])


def binding() -> bytes:
    return report_data_for("compute", JOB, HPKE_KEY, SIGNING_KEY)


def expect_refusal(check: str, evidence: Evidence, roots, policy=None, expected=None) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify_evidence(evidence, roots, policy or owner_policy(), expected if expected is not None else binding())
    assert info.value.check == check, str(info.value)
    return info.value


# --- the platform on disk ----------------------------------------------------------------

def test_platform_is_kept_on_disk_with_private_parts_0600(platform):
    directory = shared_sim_platform_dir()
    mode = stat.S_IMODE(os.stat(directory / PLATFORM_FILE).st_mode)
    assert mode == 0o600
    reloaded = SimulatedPlatform.load_or_create(directory)
    assert reloaded.ark == platform.ark and reloaded.chip_id == platform.chip_id
    assert read_sim_ark(directory) == platform.ark
    assert "SIMULATED" in platform.ark.subject.rfc4514_string()
    assert not list(directory.glob(".*.tmp"))


def test_half_written_directory_is_completed_not_trusted(tmp_path):
    """A crash left a partial temporary file and no platform file: a fresh platform is made
    and the leftover is never read."""
    (tmp_path / f".{PLATFORM_FILE}.999.dead.tmp").write_text('{"format": "teenet-sim-platf')
    made = SimulatedPlatform.load_or_create(tmp_path)
    assert SimulatedPlatform.load_or_create(tmp_path).ark == made.ark
    (tmp_path / ARK_FILE).unlink()  # the public copy is rewritten from the platform file
    SimulatedPlatform.load_or_create(tmp_path)
    assert read_sim_ark(tmp_path) == made.ark


def test_damaged_platform_file_gives_a_clear_error(tmp_path):
    source = shared_sim_platform_dir() / PLATFORM_FILE
    document = json.loads(source.read_text())
    document["ask"] = document["ark"]  # certificates no longer match their keys
    (tmp_path / PLATFORM_FILE).write_text(json.dumps(document))
    with pytest.raises(InputError, match="keys do not match"):
        SimulatedPlatform.load_or_create(tmp_path)
    (tmp_path / PLATFORM_FILE).write_text("{not json")
    with pytest.raises(InputError, match="unreadable simulated platform"):
        SimulatedPlatform.load_or_create(tmp_path)


def test_read_sim_ark_without_a_platform(tmp_path):
    with pytest.raises(InputError, match="no simulated root here"):
        read_sim_ark(tmp_path)


# --- the attester --------------------------------------------------------------------------

def test_attester_warns_that_it_is_simulated(platform, caplog):
    with caplog.at_level(logging.WARNING, logger="teenet.attestation"):
        UnsafeSimulatedAttester(platform, MEASUREMENT)
    assert any("SIMULATED" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_attester_writes_a_version_3_report_in_the_real_layout(platform):
    evidence = UnsafeSimulatedAttester(platform, MEASUREMENT, vmpl=2).attest(binding())
    assert evidence.platform is Platform.SIM_SNP and evidence.provider == "teenet-sim"
    assert len(evidence.report) == 0x4A0 and len(evidence.certificates) == 3
    report = parse_snp_report(evidence.report)
    assert report.version == 3 and report.vmpl == 2 and report.signature_algo == 1
    assert report.measurement == MEASUREMENT and report.report_data == binding()
    assert report.chip_id == platform.chip_id
    assert report.product_from_cpuid == "Milan"
    assert decode_tcb(report.reported_tcb, "Milan") == dict(DEFAULT_TCB)
    assert not report.debug


@pytest.mark.parametrize("kwargs, field", [({"measurement": b"short"}, "measurement"), ({"vmpl": 4}, "vmpl"),
                                           ({"tcb": {"bootloader": 1}}, "tcb")])
def test_attester_refuses_bad_parameters(platform, kwargs, field):
    args = {"measurement": MEASUREMENT, **kwargs}
    with pytest.raises(InputError) as info:
        UnsafeSimulatedAttester(platform, args.pop("measurement"), **args)
    assert info.value.field == field


def test_attest_needs_64_bytes_of_report_data(platform):
    with pytest.raises(InputError, match="64 bytes"):
        UnsafeSimulatedAttester(platform, MEASUREMENT).attest(b"\x00" * 32)


# --- end to end -----------------------------------------------------------------------------

def test_sim_evidence_verifies_end_to_end_with_the_enclave_measurement(platform, sim_roots, caplog):
    measurement = enclave_measurement()
    evidence = UnsafeSimulatedAttester(platform, measurement).attest(binding())
    with caplog.at_level(logging.WARNING, logger="teenet.attestation"):
        claims = verify_evidence(Evidence.from_bytes(evidence.to_bytes()), sim_roots, owner_policy(measurement),
                                 binding())
    assert claims.platform is Platform.SIM_SNP and claims.simulated
    assert claims.signer == "sim-vcek"
    assert claims.measurement == measurement and claims.report_data == binding()
    assert claims.tcb == dict(DEFAULT_TCB) and claims.vmpl == 0 and not claims.debug
    assert claims.details["chip_id"] == platform.chip_id.hex()
    assert any("INSECURE: accepting SIMULATED" in r.getMessage() for r in caplog.records)


def test_wrong_measurement_is_refused(platform, sim_roots):
    evidence = UnsafeSimulatedAttester(platform, bytes(48)).attest(binding())
    error = expect_refusal("policy.measurement", evidence, sim_roots)
    assert error.found == bytes(48).hex()


def test_debug_enclave_is_refused(platform, sim_roots):
    evidence = UnsafeSimulatedAttester(platform, MEASUREMENT, debug=True).attest(binding())
    assert expect_refusal("policy.debug", evidence, sim_roots).found == "debug on"


def test_less_privileged_vmpl_is_refused(platform, sim_roots):
    evidence = UnsafeSimulatedAttester(platform, MEASUREMENT, vmpl=1).attest(binding())
    assert expect_refusal("policy.vmpl", evidence, sim_roots).found == "1"


def test_evidence_bound_to_other_keys_is_refused(platform, sim_roots):
    other = report_data_for("compute", JOB, HPKE_KEY, bytes(32))  # an attacker's signing key
    evidence = UnsafeSimulatedAttester(platform, MEASUREMENT).attest(other)
    expect_refusal("binding.report_data", evidence, sim_roots)
    other_job = report_data_for("compute", bytes(32), HPKE_KEY, SIGNING_KEY)
    expect_refusal("binding.report_data", UnsafeSimulatedAttester(platform, MEASUREMENT).attest(other_job), sim_roots)


def test_sim_evidence_against_default_roots_is_refused(platform):
    evidence = UnsafeSimulatedAttester(platform, MEASUREMENT).attest(binding())
    error = expect_refusal("snp.root", evidence, default_trust_roots())
    assert "no simulated ARK is pinned" in str(error)


def test_hardware_policy_refuses_sim_evidence_even_with_its_root_pinned(platform, sim_roots):
    evidence = UnsafeSimulatedAttester(platform, MEASUREMENT).attest(binding())
    policy = AllOf([RequireHardware(), MeasurementAllowlist([MEASUREMENT])])
    expect_refusal("policy.hardware", evidence, sim_roots, policy=policy)


def test_sim_evidence_presented_as_snp_is_refused(platform, sim_roots):
    evidence = replace(UnsafeSimulatedAttester(platform, MEASUREMENT).attest(binding()), platform=Platform.SNP)
    error = expect_refusal("snp.root", evidence, sim_roots)
    assert error.expected == "ARK-Milan" and "SIMULATED" in error.found
    # Without the simulated ARK in the evidence, the ASK's issuer still gives it away.
    evidence = replace(evidence, certificates=evidence.certificates[:2])
    assert expect_refusal("snp.root", evidence, sim_roots).found.startswith("teenet SIMULATED")


def test_swapped_vcek_from_another_platform_is_refused(platform, sim_roots):
    evidence = UnsafeSimulatedAttester(platform, MEASUREMENT).attest(binding())
    other = other_sim_platform()
    other_vcek, _ = other.vcek(DEFAULT_TCB)
    swapped = replace(evidence, certificates=(other_vcek.public_bytes(Encoding.DER),) + evidence.certificates[1:])
    expect_refusal("snp.signature", swapped, sim_roots)
    # The other platform's whole chain is refused too: its root is not the pinned one.
    foreign = UnsafeSimulatedAttester(other, MEASUREMENT).attest(binding())
    expect_refusal("snp.root", foreign, sim_roots)


def test_vcek_for_another_chip_is_refused(platform, sim_roots):
    """Same key, but the certificate names another chip: the chip id check catches it."""
    evidence = UnsafeSimulatedAttester(platform, MEASUREMENT).attest(binding())
    _, key = platform.vcek(DEFAULT_TCB)
    foreign_chip = platform.certify_vcek(key.public_key(), DEFAULT_TCB, hwid=b"\x42" * 64)
    tampered = replace(evidence, certificates=(foreign_chip.public_bytes(Encoding.DER),) + evidence.certificates[1:])
    assert expect_refusal("snp.chip_id", tampered, sim_roots).expected.startswith("4242")


def test_vcek_for_another_tcb_is_refused(platform, sim_roots):
    evidence = UnsafeSimulatedAttester(platform, MEASUREMENT).attest(binding())
    _, key = platform.vcek(DEFAULT_TCB)
    newer = {**DEFAULT_TCB, "snp": DEFAULT_TCB["snp"] + 1}
    cert = platform.certify_vcek(key.public_key(), newer)
    tampered = replace(evidence, certificates=(cert.public_bytes(Encoding.DER),) + evidence.certificates[1:])
    error = expect_refusal("snp.tcb", tampered, sim_roots)
    assert (error.expected, error.found) == (str(newer["snp"]), str(DEFAULT_TCB["snp"]))


def test_vcek_signed_by_a_stranger_is_refused(platform, sim_roots):
    evidence = UnsafeSimulatedAttester(platform, MEASUREMENT).attest(binding())
    _, key = platform.vcek(DEFAULT_TCB)
    # Simulated ASKs all share one name, so this certificate names our ASK as its issuer;
    # but another platform's ASK signed it.
    forged = other_sim_platform().certify_vcek(key.public_key(), DEFAULT_TCB, hwid=platform.chip_id)
    tampered = replace(evidence, certificates=(forged.public_bytes(Encoding.DER),) + evidence.certificates[1:])
    expect_refusal("snp.chain", tampered, sim_roots)


def test_vcek_key_depends_on_the_tcb(platform):
    first, _ = platform.vcek(DEFAULT_TCB)
    second, _ = platform.vcek({**DEFAULT_TCB, "microcode": 1})
    assert isinstance(first.public_key(), ec.EllipticCurvePublicKey)
    assert first.public_key() != second.public_key()
    assert platform.vcek(DEFAULT_TCB)[0] is first  # issued once per process
