"""SEV-SNP report parsing and verification against genuine Milan evidence (VCEK and VLEK)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from snp_helpers import VLEK_VALID_AT, flip, pem_certificates, read, snp_dir, vcek_evidence, vlek_evidence
from teenet.attestation.evidence import Evidence, Platform, TrustRoots
from teenet.attestation.roots import default_trust_roots, pinned_amd_intermediates
from teenet.attestation.snp import (
    REPORT_SIZE, SigningKey, decode_tcb, encode_tcb, parse_snp_report, verify_snp_evidence,
)
from teenet.errors import VerificationError

MEASUREMENT_AT, REPORT_DATA_AT, SIGNATURE_AT = 0x90, 0x50, 0x2A0
VCEK_MEASUREMENT = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
VCEK_CHIP_ID = ("3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea4"
                "64cdce40c05f63c9b610c5068b006b5d")


def refused(evidence: Evidence, roots: TrustRoots, check: str) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify_snp_evidence(evidence, roots)
    assert info.value.check == check, str(info.value)
    return info.value


# --- parsing ------------------------------------------------------------------------------

def test_parse_vcek_report_reads_the_known_facts(attestation_fixtures):
    report = parse_snp_report(read(attestation_fixtures, "milan-vcek-report.bin"))
    assert report.version == 2
    assert report.vmpl == 0
    assert report.signing_key == SigningKey.VCEK
    assert report.signature_algo == 1
    assert report.report_data[:5] == bytes([1, 2, 3, 4, 5])
    assert report.measurement.hex() == VCEK_MEASUREMENT
    assert report.chip_id.hex() == VCEK_CHIP_ID
    assert report.debug  # guest policy 0xB0000 has bit 19 set
    assert report.product_from_cpuid is None  # version 2 carries no CPUID
    assert decode_tcb(report.reported_tcb, "Milan") == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68}
    assert report.launch_tcb == report.reported_tcb


def test_parse_vlek_report_reads_the_known_facts(attestation_fixtures):
    report = parse_snp_report(read(attestation_fixtures, "milan-vlek-report.bin"))
    assert report.version == 3
    assert report.vmpl == 1
    assert report.signing_key == SigningKey.VLEK
    assert report.product_from_cpuid == "Milan"
    assert not report.debug


@pytest.mark.parametrize("name", ["milan-vcek-report.bin", "milan-vlek-report.bin"])
def test_layout_round_trips_genuine_reports(attestation_fixtures, name):
    raw = read(attestation_fixtures, name)
    assert parse_snp_report(raw).to_bytes() == raw


@pytest.mark.parametrize("raw, found", [(b"", "0 bytes"), (b"\x02" * 100, "100 bytes"),
                                         (bytes(REPORT_SIZE + 1), "1185 bytes")])
def test_parse_refuses_wrong_sizes(raw, found):
    with pytest.raises(VerificationError) as info:
        parse_snp_report(raw)
    assert info.value.check == "snp.parse"
    assert info.value.found == found


def test_parse_refuses_unknown_versions(attestation_fixtures):
    raw = bytearray(read(attestation_fixtures, "milan-vcek-report.bin"))
    raw[0] = 9
    with pytest.raises(VerificationError, match="unsupported report version") as info:
        parse_snp_report(bytes(raw))
    assert info.value.check == "snp.parse" and info.value.found == "9"


def test_tcb_layout_differs_between_milan_and_turin():
    raw = bytes([1, 2, 3, 4, 5, 6, 7, 8])
    assert decode_tcb(raw, "Genoa") == {"bootloader": 1, "tee": 2, "snp": 7, "microcode": 8}
    assert decode_tcb(raw, "Turin") == {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 8}
    assert encode_tcb(decode_tcb(raw, "Turin"), "Turin") == bytes([1, 2, 3, 4, 0, 0, 0, 8])
    with pytest.raises(ValueError):
        encode_tcb({"bootloader": 1, "tee": 0, "snp": 1, "microcode": 1}, "Turin")  # fmc missing


# --- genuine evidence accepted ------------------------------------------------------------

def test_genuine_vcek_report_verifies_through_the_pinned_ask(attestation_fixtures):
    claims = verify_snp_evidence(vcek_evidence(attestation_fixtures), default_trust_roots())
    assert claims.platform is Platform.SNP and not claims.simulated
    assert claims.signer == "vcek"
    assert claims.version == 2 and claims.vmpl == 0
    assert claims.measurement.hex() == VCEK_MEASUREMENT
    assert claims.report_data.startswith(bytes([1, 2, 3, 4, 5]))
    assert claims.debug is True
    assert claims.tcb == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68}
    assert claims.details["chip_id"] == VCEK_CHIP_ID
    assert claims.details["product"] == "Milan"
    assert claims.details["firmware"] == "1.49.3"


def test_genuine_vcek_report_verifies_with_ask_and_ark_as_a_pem_bundle(attestation_fixtures):
    bundle = (snp_dir(attestation_fixtures) / "milan-ask-ark.pem").read_bytes()
    evidence = vcek_evidence(attestation_fixtures)
    evidence = replace(evidence, certificates=evidence.certificates + (bundle,))
    assert verify_snp_evidence(evidence, default_trust_roots()).signer == "vcek"


def test_vcek_found_in_the_cache_directory(attestation_fixtures, tmp_path):
    report = parse_snp_report(read(attestation_fixtures, "milan-vcek-report.bin"))
    (tmp_path / f"{report.chip_id.hex()}-{report.reported_tcb.hex()}.der").write_bytes(
        read(attestation_fixtures, "milan-vcek.der"))
    evidence = replace(vcek_evidence(attestation_fixtures), certificates=())
    refused(evidence, default_trust_roots(), "snp.signature")  # no cert anywhere
    claims = verify_snp_evidence(evidence, default_trust_roots(vcek_cache=str(tmp_path)))
    assert claims.details["chip_id"] == VCEK_CHIP_ID


def test_expired_vlek_refused_today_and_accepted_inside_its_validity(attestation_fixtures):
    evidence = vlek_evidence(attestation_fixtures)
    error = refused(evidence, default_trust_roots(), "snp.validity")
    assert "SEV-VLEK" in str(error) and "2025-12-10" in str(error)
    claims = verify_snp_evidence(evidence, default_trust_roots(now=VLEK_VALID_AT))
    assert claims.signer == "vlek"
    assert claims.version == 3 and claims.vmpl == 1
    assert claims.tcb == {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 217}
    assert claims.details["cpuid"] == "19-01-01"


def test_vlek_with_the_asvk_bundle_from_the_evidence(attestation_fixtures):
    bundle = (snp_dir(attestation_fixtures) / "milan-ask-ark-asvk.pem").read_bytes()
    evidence = vlek_evidence(attestation_fixtures)
    evidence = replace(evidence, certificates=evidence.certificates + (bundle,))
    assert verify_snp_evidence(evidence, default_trust_roots(now=VLEK_VALID_AT)).signer == "vlek"


def test_pinned_intermediates_match_amd_published_ones(attestation_fixtures):
    published = {c.subject: c for c in pem_certificates(snp_dir(attestation_fixtures) / "milan-ask-ark-asvk.pem")}
    pinned = pinned_amd_intermediates("Milan")
    assert {c.subject for c in pinned} <= set(published)
    assert all(published[c.subject] == c for c in pinned)
    roots = default_trust_roots()
    assert set(roots.amd_arks) == {"Milan", "Genoa", "Turin"}
    assert any(roots.amd_arks["Milan"] == c for c in published.values())


# --- tampered evidence refused ------------------------------------------------------------

@pytest.mark.parametrize("offset, what", [(MEASUREMENT_AT, "measurement"), (REPORT_DATA_AT, "report_data"),
                                          (SIGNATURE_AT, "signature r"), (SIGNATURE_AT + 72, "signature s")])
def test_one_changed_byte_in_the_vcek_report_is_refused(attestation_fixtures, offset, what):
    evidence = vcek_evidence(attestation_fixtures)
    tampered = replace(evidence, report=flip(evidence.report, offset))
    error = refused(tampered, default_trust_roots(), "snp.signature")
    assert "does not verify with the VCEK" in str(error), what


@pytest.mark.parametrize("offset", [MEASUREMENT_AT, REPORT_DATA_AT, SIGNATURE_AT])
def test_one_changed_byte_in_the_vlek_report_is_refused(attestation_fixtures, offset):
    evidence = vlek_evidence(attestation_fixtures)
    refused(replace(evidence, report=flip(evidence.report, offset)), default_trust_roots(now=VLEK_VALID_AT),
            "snp.signature")


def test_changed_vcek_certificate_is_refused(attestation_fixtures):
    der = read(attestation_fixtures, "milan-vcek.der")
    at = der.index(b"Milan-B0") + 7  # the product-name extension: "Milan-B0" -> "Milan-B1"
    evidence = replace(vcek_evidence(attestation_fixtures), certificates=(flip(der, at),))
    error = refused(evidence, default_trust_roots(), "snp.chain")
    assert "VCEK certificate is not signed by SEV-Milan" in str(error)


def test_changed_ask_in_the_chain_is_refused(attestation_fixtures):
    ask, ark = pem_certificates(snp_dir(attestation_fixtures) / "milan-ask-ark.pem")
    ask_der = ask.public_bytes(Encoding.DER)
    evidence = vcek_evidence(attestation_fixtures)
    tampered = replace(evidence, certificates=evidence.certificates + (flip(ask_der, len(ask_der) - 1),
                                                                       ark.public_bytes(Encoding.DER)))
    error = refused(tampered, default_trust_roots(), "snp.chain")
    assert "SEV-Milan is not signed by ARK-Milan" in str(error)


def test_unparseable_certificate_is_refused(attestation_fixtures):
    evidence = replace(vcek_evidence(attestation_fixtures), certificates=(b"\x30\x82garbage",))
    assert "certificate #1" in str(refused(evidence, default_trust_roots(), "snp.chain"))


def test_a_foreign_root_in_the_evidence_is_refused(attestation_fixtures):
    genoa_ark = default_trust_roots().amd_arks["Genoa"].public_bytes(Encoding.DER)
    evidence = vcek_evidence(attestation_fixtures)
    evidence = replace(evidence, certificates=evidence.certificates + (genoa_ark,))
    error = refused(evidence, default_trust_roots(), "snp.root")
    assert error.expected == "ARK-Milan" and error.found == "ARK-Genoa"


def test_no_pinned_ark_means_refused(attestation_fixtures):
    error = refused(vcek_evidence(attestation_fixtures), TrustRoots(amd_arks={}), "snp.root")
    assert "no AMD ARK is pinned for Milan" in str(error)


def test_a_vlek_certificate_cannot_vouch_for_a_vcek_report(attestation_fixtures):
    vlek_cert = read(attestation_fixtures, "milan-vlek.der")
    evidence = replace(vcek_evidence(attestation_fixtures), certificates=(vlek_cert,))
    error = refused(evidence, default_trust_roots(now=VLEK_VALID_AT), "snp.signature")
    assert error.expected == "VCEK" and error.found == "VLEK"


def test_unknown_signature_algorithm_is_refused_before_any_crypto(attestation_fixtures):
    evidence = vcek_evidence(attestation_fixtures)
    tampered = replace(evidence, report=flip(evidence.report, 0x34, 0x03))  # SIGNATURE_ALGO 1 -> 2
    assert refused(tampered, default_trust_roots(), "snp.signature_algo").found == "2"


@pytest.mark.parametrize("signer_info, found", [(0x2, "mask_chip_key=1"), (0x1C, "7")])
def test_unsigned_or_keyless_reports_are_refused(attestation_fixtures, signer_info, found):
    raw = bytearray(read(attestation_fixtures, "milan-vcek-report.bin"))
    raw[0x48] = signer_info
    evidence = replace(vcek_evidence(attestation_fixtures), report=bytes(raw))
    assert refused(evidence, default_trust_roots(), "snp.signer").found == found


def test_genuine_report_is_not_simulated_evidence(attestation_fixtures):
    """A real report presented as sim-snp chains to AMD, not to the simulated root."""
    bundle = (snp_dir(attestation_fixtures) / "milan-ask-ark.pem").read_bytes()
    evidence = vcek_evidence(attestation_fixtures)
    evidence = replace(evidence, platform=Platform.SIM_SNP, certificates=evidence.certificates + (bundle,))
    refused(evidence, default_trust_roots(), "snp.root")  # no sim root pinned
    sim_ark_stand_in = default_trust_roots().amd_arks["Genoa"]
    error = refused(evidence, default_trust_roots(sim_ark=sim_ark_stand_in), "snp.root")
    assert error.found == "ARK-Milan"
    # Without the bundle, AMD's pinned ASK is never lent to simulated evidence.
    evidence = replace(evidence, certificates=evidence.certificates[:1])
    refused(evidence, default_trust_roots(sim_ark=sim_ark_stand_in), "snp.chain")


def test_verification_time_can_be_naive_utc(attestation_fixtures):
    roots = default_trust_roots(now=datetime(2025, 6, 1))  # naive: read as UTC
    assert verify_snp_evidence(vlek_evidence(attestation_fixtures), roots).signer == "vlek"
    roots = default_trust_roots(now=datetime(2030, 1, 1, tzinfo=timezone.utc))  # VCEK expired 2029-09-24
    refused(vcek_evidence(attestation_fixtures), roots, "snp.validity")
