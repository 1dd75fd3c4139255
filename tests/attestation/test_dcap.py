"""DCAP quote verification on genuine TDX (v4, v5) and SGX (v3) quotes, and on tampered copies.

Each attack flips one byte of a real quote (or swaps its root) and shows the refusal and
the check that refused it. A small quote builder re-signs a real quote's structure with a
test PKI, to reach checks that tampering alone cannot (QE identity, CA constraints).
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from teenet.attestation.dcap import verify_sgx_evidence, verify_tdx_evidence
from teenet.attestation.dcap_quote import HEADER_SIZE, detect_dcap_platform, parse_quote
from teenet.attestation.evidence import Evidence, Platform, TrustRoots
from teenet.attestation.policy import DebugDisabled, DetailEquals, MinimumTcb
from teenet.attestation.verifier import verify_platform_evidence
from teenet.errors import VerificationError

# Inside the validity of every certificate in the three fixture quotes (the v5 PCK leaf is
# valid from 2026-01-27, the v4 leaf until 2029-09-20).
INSIDE = datetime(2026, 6, 1, tzinfo=timezone.utc)

SGX_V3_MRENCLAVE = "1dd0df84810e53e26b2b167dfe0f97cc4364085fe0bd41d5e18a759c21d5c189"
TDX_V5_MRTD = ("7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb0"
               "01a1ced3ee19747dda8f750c3bc8f876")


@pytest.fixture(scope="module")
def intel_root(attestation_fixtures: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((attestation_fixtures / "tdx" / "intel-sgx-root-ca.pem").read_bytes())


@pytest.fixture(scope="module")
def roots(intel_root: x509.Certificate) -> TrustRoots:
    return TrustRoots(intel_sgx_root=intel_root, now=INSIDE)


@pytest.fixture(scope="module")
def quotes(attestation_fixtures: Path) -> dict[str, bytes]:
    return {
        "tdx-v4": (attestation_fixtures / "tdx" / "tdx-v4-quote.dat").read_bytes(),
        "tdx-v5": (attestation_fixtures / "tdx" / "tdx-v5-quote.dat").read_bytes(),
        "sgx-v3": (attestation_fixtures / "sgx" / "sgx-v3-quote.dat").read_bytes(),
    }


def _verify(name: str, raw: bytes, roots: TrustRoots):
    if name.startswith("tdx"):
        return verify_tdx_evidence(Evidence(Platform.TDX, raw), roots)
    return verify_sgx_evidence(Evidence(Platform.SGX, raw), roots)


def _flip(raw: bytes, offset: int) -> bytes:
    return raw[:offset] + bytes([raw[offset] ^ 0x01]) + raw[offset + 1:]


def _body_offset(raw: bytes) -> int:
    return HEADER_SIZE + (6 if struct.unpack_from("<H", raw)[0] == 5 else 0)


def _measurement_offset(name: str, raw: bytes) -> int:
    # MRTD follows TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM and three 8-byte attribute fields;
    # MRENCLAVE sits at 64 in the SGX enclave report.
    return _body_offset(raw) + (136 if name.startswith("tdx") else 64)


def _report_data_offset(name: str, raw: bytes) -> int:
    return _body_offset(raw) + (520 if name.startswith("tdx") else 320)


def _signature_offset(raw: bytes) -> int:
    return len(parse_quote(raw).signed_data) + 4


def _qe_report_offset(raw: bytes) -> int:
    # v3: QE report right after signature and key; v4/v5: after a 6-byte type-6 header.
    return _signature_offset(raw) + 128 + (0 if struct.unpack_from("<H", raw)[0] == 3 else 6)


def _tamper_pck_leaf(raw: bytes) -> bytes:
    """Change one letter of the PCK leaf's CRL URL (inside its signed TBS) and re-encode it."""
    pem = parse_quote(raw).certification.pck_chain_pem
    block = re.search(rb"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", pem, re.S)
    assert block is not None
    der = bytearray(base64.b64decode(block.group(1)))
    at = der.find(b"trustedservices")
    assert at > 0
    der[at] ^= 0x20  # 't' -> 'T'
    b64 = base64.b64encode(bytes(der))
    lines = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) + b"\n"
    assert len(lines) == len(block.group(1))
    start = raw.find(pem) + block.start(1)
    return raw[:start] + lines + raw[start + len(lines):]


# --- accepted, facts read correctly ------------------------------------------------------

@pytest.mark.parametrize("name", ["tdx-v4", "tdx-v5", "sgx-v3"])
def test_genuine_quote_is_accepted(name: str, quotes: dict[str, bytes], roots: TrustRoots) -> None:
    raw = quotes[name]
    claims = _verify(name, raw, roots)
    quote = parse_quote(raw)
    assert claims.signer == "pck"
    assert claims.version == int(name[-1])
    assert claims.details["quote_version"] == int(name[-1])
    assert len(claims.report_data) == 64
    assert claims.report_data == raw[_report_data_offset(name, raw):_report_data_offset(name, raw) + 64]
    assert claims.measurement == raw[_measurement_offset(name, raw):_measurement_offset(name, raw) +
                                     len(claims.measurement)]
    if name.startswith("tdx"):
        assert claims.platform is Platform.TDX
        assert claims.details["tee_type"] == "0x00000081"
        assert len(claims.measurement) == 48
        assert {f"rtmr{i}" for i in range(4)} <= set(claims.details)
        assert claims.tcb["tee_tcb_svn_0"] == quote.body.tee_tcb_svn[0]
        assert claims.debug is False
    else:
        assert claims.platform is Platform.SGX
        assert claims.details["tee_type"] == "0x00000000"
        assert len(claims.measurement) == 32


def test_tdx_v4_facts(quotes: dict[str, bytes], roots: TrustRoots) -> None:
    claims = _verify("tdx-v4", quotes["tdx-v4"], roots)
    quote = parse_quote(quotes["tdx-v4"])
    assert quote.trailing == 39  # the README's known fact: tolerated, not signed
    assert claims.details["body_type"] == 2
    assert "mr_service_td" not in claims.details
    assert claims.tcb["tee_tcb_svn_0"] == 3 and claims.tcb["tee_tcb_svn_2"] == 4


def test_tdx_v5_facts(quotes: dict[str, bytes], roots: TrustRoots) -> None:
    claims = _verify("tdx-v5", quotes["tdx-v5"], roots)
    assert claims.measurement.hex() == TDX_V5_MRTD
    assert claims.details["body_type"] == 3  # TDX 1.5 body: TEE_TCB_SVN2 and MRSERVICETD
    assert claims.details["tee_tcb_svn2"] == "0d010400000000000000000000000000"
    assert claims.details["mr_service_td"] == "00" * 48
    assert claims.report_data.hex().startswith("945eaacf5abc1f71")
    assert claims.details["td_attributes"] == "0000001000000000"
    DetailEquals("rtmr3", "00" * 48).verify(claims)


def test_sgx_v3_facts(quotes: dict[str, bytes], roots: TrustRoots) -> None:
    claims = _verify("sgx-v3", quotes["sgx-v3"], roots)
    assert claims.report_data == bytes(64)  # README: all zeros
    assert claims.measurement.hex() == SGX_V3_MRENCLAVE
    assert claims.details["isv_prod_id"] == 0 and claims.details["isv_svn"] == 0
    assert claims.tcb == {"isv_svn": 0}
    assert claims.details["mr_signer"] == "d412a4f07ef83892a5915fb2ab584be31e186e5a4f95ab5f6950fd4eb8694d7b"
    # This test enclave was built for debugging (ATTRIBUTES flags 0x7): the default policy refuses it.
    assert claims.debug is True
    with pytest.raises(VerificationError) as err:
        DebugDisabled().verify(claims)
    assert err.value.check == "policy.debug"
    with pytest.raises(VerificationError) as err:
        MinimumTcb({"isv_svn": 1}).verify(claims)
    assert err.value.check == "policy.tcb"


def test_the_shared_verifier_routes_dcap_platforms(quotes: dict[str, bytes], roots: TrustRoots) -> None:
    assert verify_platform_evidence(Evidence(Platform.TDX, quotes["tdx-v4"]), roots).platform is Platform.TDX
    assert verify_platform_evidence(Evidence(Platform.SGX, quotes["sgx-v3"]), roots).platform is Platform.SGX


def test_pinned_root_is_the_intel_sgx_root(intel_root: x509.Certificate) -> None:
    pinned = Path(__file__).resolve().parents[2] / "teenet" / "attestation" / "pinned" / "intel-sgx-root-ca.pem"
    assert x509.load_pem_x509_certificate(pinned.read_bytes()) == intel_root


def test_detect_dcap_platform(quotes: dict[str, bytes]) -> None:
    assert detect_dcap_platform(quotes["tdx-v4"]) == "tdx"
    assert detect_dcap_platform(quotes["tdx-v5"]) == "tdx"
    assert detect_dcap_platform(quotes["sgx-v3"]) == "sgx"
    assert detect_dcap_platform(b"\x02\x00\x00\x00" + bytes(1180)) is None  # an SNP report
    assert detect_dcap_platform(b"{}") is None


# --- validity time -----------------------------------------------------------------------

def test_v5_refused_before_its_pck_leaf_was_issued(quotes: dict[str, bytes], intel_root: x509.Certificate) -> None:
    early = TrustRoots(intel_sgx_root=intel_root, now=datetime(2025, 6, 1, tzinfo=timezone.utc))
    with pytest.raises(VerificationError) as err:
        _verify("tdx-v5", quotes["tdx-v5"], early)
    assert err.value.check == "dcap.chain"
    assert "not valid at 2025-06-01" in str(err.value)
    # The v4 quote's chain was valid then: time is per certificate, not a blanket window.
    assert _verify("tdx-v4", quotes["tdx-v4"], early).platform is Platform.TDX


def test_v4_refused_after_its_pck_leaf_expired(quotes: dict[str, bytes], intel_root: x509.Certificate) -> None:
    late = TrustRoots(intel_sgx_root=intel_root, now=datetime(2030, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(VerificationError) as err:
        _verify("tdx-v4", quotes["tdx-v4"], late)
    assert err.value.check == "dcap.chain"
    assert "2029-09-20" in str(err.value)


# --- one byte changed: refused by the right check ----------------------------------------

TAMPERS = {
    "measurement": (_measurement_offset, "dcap.signature"),
    "report_data": (_report_data_offset, "dcap.signature"),
}


@pytest.mark.parametrize("name", ["tdx-v4", "tdx-v5", "sgx-v3"])
@pytest.mark.parametrize("field", ["measurement", "report_data"])
def test_changed_body_field_is_refused(name: str, field: str, quotes: dict[str, bytes], roots: TrustRoots) -> None:
    raw = quotes[name]
    offset_of, check = TAMPERS[field]
    tampered = _flip(raw, offset_of(name, raw))
    with pytest.raises(VerificationError) as err:
        _verify(name, tampered, roots)
    assert err.value.check == check
    assert "not signed by its attestation key" in str(err.value)


@pytest.mark.parametrize("name", ["tdx-v4", "tdx-v5", "sgx-v3"])
def test_changed_header_is_refused(name: str, quotes: dict[str, bytes], roots: TrustRoots) -> None:
    with pytest.raises(VerificationError) as err:
        _verify(name, _flip(quotes[name], 30), roots)  # inside the header's user data
    assert err.value.check == "dcap.signature"


@pytest.mark.parametrize("name", ["tdx-v4", "tdx-v5", "sgx-v3"])
def test_changed_quote_signature_is_refused(name: str, quotes: dict[str, bytes], roots: TrustRoots) -> None:
    raw = quotes[name]
    with pytest.raises(VerificationError) as err:
        _verify(name, _flip(raw, _signature_offset(raw) + 40), roots)
    assert err.value.check == "dcap.signature"


@pytest.mark.parametrize("name", ["tdx-v4", "tdx-v5", "sgx-v3"])
def test_changed_qe_report_is_refused(name: str, quotes: dict[str, bytes], roots: TrustRoots) -> None:
    raw = quotes[name]
    with pytest.raises(VerificationError) as err:
        _verify(name, _flip(raw, _qe_report_offset(raw) + 70), roots)  # QE MRENCLAVE
    assert err.value.check == "dcap.qe_report_signature"
    assert "PCK" in str(err.value)


@pytest.mark.parametrize("name", ["tdx-v4", "tdx-v5", "sgx-v3"])
def test_changed_attestation_key_breaks_the_qe_binding(name: str, quotes: dict[str, bytes], roots: TrustRoots) -> None:
    raw = quotes[name]
    with pytest.raises(VerificationError) as err:
        _verify(name, _flip(raw, _signature_offset(raw) + 64 + 10), roots)
    assert err.value.check == "dcap.qe_binding"  # the binding is checked before the key is used


@pytest.mark.parametrize("name", ["tdx-v4", "sgx-v3"])
def test_changed_qe_auth_data_breaks_the_qe_binding(name: str, quotes: dict[str, bytes], roots: TrustRoots) -> None:
    raw = quotes[name]
    auth_at = _qe_report_offset(raw) + 384 + 64 + 2
    with pytest.raises(VerificationError) as err:
        _verify(name, _flip(raw, auth_at), roots)
    assert err.value.check == "dcap.qe_binding"


@pytest.mark.parametrize("name", ["tdx-v4", "tdx-v5", "sgx-v3"])
def test_changed_pck_certificate_is_refused(name: str, quotes: dict[str, bytes], roots: TrustRoots) -> None:
    with pytest.raises(VerificationError) as err:
        _verify(name, _tamper_pck_leaf(quotes[name]), roots)
    assert err.value.check == "dcap.chain"
    assert "PCK leaf is not issued by" in str(err.value)


def _impostor_root() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intel SGX Root CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Intel Corporation")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime(2018, 1, 1, tzinfo=timezone.utc))
            .not_valid_after(datetime(2049, 1, 1, tzinfo=timezone.utc))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


@pytest.mark.parametrize("name", ["tdx-v4", "sgx-v3"])
def test_a_different_pinned_root_refuses_genuine_quotes(name: str, quotes: dict[str, bytes]) -> None:
    impostor, _ = _impostor_root()
    with pytest.raises(VerificationError) as err:
        _verify(name, quotes[name], TrustRoots(intel_sgx_root=impostor, now=INSIDE))
    assert err.value.check == "dcap.root"
    assert "other than the pinned one" in str(err.value)


@pytest.mark.parametrize("name", ["tdx-v5", "sgx-v3"])
def test_no_pinned_root_refuses(name: str, quotes: dict[str, bytes]) -> None:
    with pytest.raises(VerificationError) as err:
        _verify(name, quotes[name], TrustRoots(now=INSIDE))
    assert err.value.check == "dcap.root"


def test_chain_without_root_is_checked_against_the_pinned_root(quotes: dict[str, bytes],
                                                              intel_root: x509.Certificate) -> None:
    # Drop the embedded root (keep leaf + intermediate, pad to keep every length field).
    raw = quotes["sgx-v3"]
    pem = parse_quote(raw).certification.pck_chain_pem
    last = pem.rfind(b"-----BEGIN CERTIFICATE-----")
    shorter = pem[:last] + b"\n" * (len(pem) - last)
    stripped = raw.replace(pem, shorter)
    assert _verify("sgx-v3", stripped, TrustRoots(intel_sgx_root=intel_root, now=INSIDE)).platform is Platform.SGX
    impostor, _ = _impostor_root()
    with pytest.raises(VerificationError) as err:
        _verify("sgx-v3", stripped, TrustRoots(intel_sgx_root=impostor, now=INSIDE))
    assert err.value.check == "dcap.chain"


def test_quote_of_the_other_tee_is_refused(quotes: dict[str, bytes], roots: TrustRoots) -> None:
    with pytest.raises(VerificationError) as err:
        verify_sgx_evidence(Evidence(Platform.SGX, quotes["tdx-v4"]), roots)
    assert err.value.check == "dcap.tee_type"
    with pytest.raises(VerificationError) as err:
        verify_tdx_evidence(Evidence(Platform.TDX, quotes["sgx-v3"]), roots)
    assert err.value.check == "dcap.tee_type"


# --- malformed quotes: one clear refusal, never a traceback ------------------------------

@pytest.mark.parametrize("name", ["tdx-v4", "tdx-v5", "sgx-v3"])
def test_every_truncation_is_a_parse_refusal(name: str, quotes: dict[str, bytes], roots: TrustRoots) -> None:
    raw = quotes[name]
    cut_points = list(range(0, 700, 7)) + list(range(700, len(raw) - 39 - 60, 97))
    for cut in cut_points:
        with pytest.raises(VerificationError) as err:
            _verify(name, raw[:cut], roots)
        assert err.value.check in ("dcap.parse", "dcap.signature"), (cut, str(err.value))
        if cut < len(parse_quote(raw).signed_data) + 4 + 128 + 384:
            assert err.value.check == "dcap.parse", cut


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 10, b"\xff" * 5000, bytes(range(256)) * 20,
                                     b'{"platform": "tdx"}'])
def test_garbage_is_a_parse_refusal(garbage: bytes, roots: TrustRoots) -> None:
    with pytest.raises(VerificationError) as err:
        verify_tdx_evidence(Evidence(Platform.TDX, garbage), roots)
    assert err.value.check == "dcap.parse"


def test_oversized_length_fields_are_refused(quotes: dict[str, bytes], roots: TrustRoots) -> None:
    raw = quotes["tdx-v4"]
    sig_len_at = len(parse_quote(raw).signed_data)
    huge = raw[:sig_len_at] + struct.pack("<I", 0xFFFFFFFF) + raw[sig_len_at + 4:]
    with pytest.raises(VerificationError, match="signature data claims 4294967295 bytes") as err:
        verify_tdx_evidence(Evidence(Platform.TDX, huge), roots)
    assert err.value.check == "dcap.parse"
    auth_len_at = _qe_report_offset(raw) + 384 + 64
    huge = raw[:auth_len_at] + struct.pack("<H", 0xFFFF) + raw[auth_len_at + 2:]
    with pytest.raises(VerificationError, match="QE auth data") as err:
        verify_tdx_evidence(Evidence(Platform.TDX, huge), roots)
    assert err.value.check == "dcap.parse"


@pytest.mark.parametrize("offset,value,message", [
    (0, struct.pack("<H", 2), "unsupported quote version 2"),
    (2, struct.pack("<H", 3), "unsupported attestation key type 3"),
    (4, struct.pack("<I", 0x7F), "unknown TEE type"),
])
def test_unsupported_header_fields_are_refused(offset: int, value: bytes, message: str,
                                               quotes: dict[str, bytes], roots: TrustRoots) -> None:
    raw = quotes["tdx-v4"]
    with pytest.raises(VerificationError, match=message) as err:
        verify_tdx_evidence(Evidence(Platform.TDX, raw[:offset] + value + raw[offset + len(value):]), roots)
    assert err.value.check == "dcap.parse"


def test_v5_body_descriptor_must_match(quotes: dict[str, bytes], roots: TrustRoots) -> None:
    raw = quotes["tdx-v5"]
    bad_size = raw[:50] + struct.pack("<I", 584) + raw[54:]  # says 584 for a TDX 1.5 body
    with pytest.raises(VerificationError, match="must be 648 bytes") as err:
        verify_tdx_evidence(Evidence(Platform.TDX, bad_size), roots)
    assert err.value.check == "dcap.parse"
    sgx_body = raw[:48] + struct.pack("<H", 1) + raw[50:]
    with pytest.raises(VerificationError) as err:
        verify_tdx_evidence(Evidence(Platform.TDX, sgx_body), roots)
    assert err.value.check == "dcap.parse"


# --- a re-signed quote under a test PKI: checks that one flipped byte cannot reach --------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(INSIDE - timedelta(days=1)).not_valid_after(INSIDE + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _resign_sgx_v3(raw: bytes, *, qe_mr_signer: bytes | None = None, intermediate_is_ca: bool = True
                   ) -> tuple[bytes, x509.Certificate]:
    """Rebuild the v3 quote with a fresh root, PCK chain, QE signature and attestation key."""
    quote = parse_quote(raw)
    root_key, mid_key, pck_key, att_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    root = _cert("Test Root", root_key, "Test Root", root_key, ca=True)
    mid = _cert("Test PCK CA", mid_key, "Test Root", root_key, ca=intermediate_is_ca)
    pck = _cert("Test PCK", pck_key, "Test PCK CA", mid_key, ca=False)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (pck, mid, root))
    att_xy = att_key.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)[1:]
    auth = quote.certification.qe_auth_data
    qe = bytearray(quote.certification.qe_report.raw)
    if qe_mr_signer is not None:
        qe[128:160] = qe_mr_signer
    qe[320:384] = hashlib.sha256(att_xy + auth).digest() + bytes(32)
    cert_data = (bytes(qe) + _raw_sig(pck_key, bytes(qe)) + struct.pack("<H", len(auth)) + auth
                 + struct.pack("<HI", 5, len(chain)) + chain)
    signed = quote.signed_data
    sig_data = _raw_sig(att_key, signed) + att_xy + cert_data
    return signed + struct.pack("<I", len(sig_data)) + sig_data, root


def test_resigned_quote_verifies_under_its_own_root(quotes: dict[str, bytes]) -> None:
    rebuilt, root = _resign_sgx_v3(quotes["sgx-v3"])
    claims = verify_sgx_evidence(Evidence(Platform.SGX, rebuilt), TrustRoots(intel_sgx_root=root, now=INSIDE))
    assert claims.measurement.hex() == SGX_V3_MRENCLAVE


def test_quoting_enclave_not_signed_by_intel_is_refused(quotes: dict[str, bytes]) -> None:
    rebuilt, root = _resign_sgx_v3(quotes["sgx-v3"], qe_mr_signer=b"\x42" * 32)
    with pytest.raises(VerificationError) as err:
        verify_sgx_evidence(Evidence(Platform.SGX, rebuilt), TrustRoots(intel_sgx_root=root, now=INSIDE))
    assert err.value.check == "dcap.qe_identity"
    assert err.value.found == "42" * 32


def test_intermediate_that_is_not_a_ca_is_refused(quotes: dict[str, bytes]) -> None:
    rebuilt, root = _resign_sgx_v3(quotes["sgx-v3"], intermediate_is_ca=False)
    with pytest.raises(VerificationError) as err:
        verify_sgx_evidence(Evidence(Platform.SGX, rebuilt), TrustRoots(intel_sgx_root=root, now=INSIDE))
    assert err.value.check == "dcap.chain"
    assert "not a CA" in str(err.value)


@pytest.mark.filterwarnings("ignore::UserWarning")  # cryptography warns on some mangled names
@pytest.mark.parametrize("name", ["tdx-v4", "tdx-v5", "sgx-v3"])
def test_any_flipped_bit_is_refused_or_changes_nothing(name: str, quotes: dict[str, bytes],
                                                       roots: TrustRoots) -> None:
    """Flip one bit at every other offset: each copy is refused with a named check (never a raw
    exception), or, where the bit is unsigned framing (PEM line breaks, trailing bytes), the
    claims are exactly those of the genuine quote."""
    raw = quotes[name]
    genuine = _verify(name, raw, roots).to_json()
    checks: set[str] = set()
    accepted = 0
    for offset in range(0, len(raw), 2):
        try:
            claims = _verify(name, _flip(raw, offset), roots)
        except VerificationError as exc:
            checks.add(exc.check)
            continue
        accepted += 1
        assert claims.to_json() == genuine, offset
    assert {"dcap.parse", "dcap.signature", "dcap.qe_report_signature", "dcap.chain"} <= checks
    assert accepted < len(raw) // 20
