"""The interoperable RA-TLS certificate (CCC-Attestation form) and the CBOR codec under it.

(a) three real RA-TLS certificates from other stacks (Gramine, Intel SGX SDK, rats-tls;
    tests/fixtures/ratls, sources in tests/fixtures/README.md) are read by teenet's reader,
    and a flipped byte in their claims or quote is refused;
(b) a teenet worker certificate is read by a third-party CBOR decoder (cbor2) and its
    binding checked by hand;
(c) a certificate whose pubkey-hash names another key, or whose report_data does not hold
    the claims hash, is refused with a clear message.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
import subprocess
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from teenet import cbor
from teenet.attestation.dcap_quote import parse_quote
from teenet.attestation.evidence import Evidence, Platform
from teenet.attestation.measure import enclave_measurement
from teenet.attestation.roots import default_trust_roots
from teenet.attestation.sim import UnsafeSimulatedAttester
from teenet.attestation.verifier import verify_evidence
from teenet.cluster import ratls
from teenet.cluster.admission import (AdmissionServer, admission_claims, report_data_for_admission,
                                      request_admission, verifier_policy)
from teenet.cluster.ca import ClusterCA, new_key
from teenet.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ratls"
THIRD_PARTY = ["gramine-cert.pem", "intel-sgxsdk-cert.pem", "rats-tls-cert.pem"]


# ------------------------------------------------------------------ CBOR codec

# RFC 8949 Appendix A, the subset teenet.cbor supports (no floats, simple values, bignums
# beyond a tag over bytes, or indefinite lengths).
VECTORS = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"),
    (1000, "1903e8"), (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"), (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (cbor.Tag(2, bytes.fromhex("010000000000000000")), "c249010000000000000000"),
    (cbor.Tag(3, bytes.fromhex("010000000000000000")), "c349010000000000000000"),
    (cbor.Tag(0, "2013-03-21T20:04:00Z"), "c074323031332d30332d32315432303a30343a30305a"),
    (cbor.Tag(1, 1363896240), "c11a514b67b0"),
    (cbor.Tag(23, bytes.fromhex("01020304")), "d74401020304"),
    (cbor.Tag(24, bytes.fromhex("6449455446")), "d818456449455446"),
    (cbor.Tag(32, "http://www.example.com"), "d82076687474703a2f2f7777772e6578616d706c652e636f6d"),
    (b"", "40"), (bytes.fromhex("01020304"), "4401020304"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\"\\", "62225c"), ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"), ("\U00010151", "64f0908591"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "a56161614161626142616361436164614461656145"),
]


@pytest.mark.parametrize("value,encoded", VECTORS, ids=[v[1][:16] for v in VECTORS])
def test_cbor_rfc8949_appendix_a(value, encoded):
    assert cbor.encode(value).hex() == encoded
    assert cbor.decode(bytes.fromhex(encoded)) == value


def test_cbor_encoding_is_deterministic():
    # Map keys sort by their encoded bytes (RFC 8949 4.2.1), whatever the insertion order:
    # 10 (0x0a) < 100 (0x1864) < -1 (0x20) < "z" (0x617a) < "aa" (0x626161) < [..] not a key.
    assert cbor.encode({"aa": 0, "z": 0, -1: 0, 100: 0, 10: 0}).hex() == "a50a00186400200061" "7a0062616100"
    assert cbor.encode({"b": 1, "a": 2}) == cbor.encode({"a": 2, "b": 1})
    # and agrees with a third-party encoder's deterministic mode on the claims teenet writes
    claims = {"pubkey-hash": bytes(40), "nonce": bytes(32), "teenet-domain": b"x"}
    assert cbor.encode(claims) == cbor2.dumps(claims, canonical=True)


@pytest.mark.parametrize("hex_input,message", [
    ("5f42010243030405ff", "indefinite-length"),          # RFC 8949 A: (_ h'0102', h'030405')
    ("7f657374726561646d696e67ff", "indefinite-length"),  # (_ "strea", "ming")
    ("9fff", "indefinite-length"), ("bf616101ff", "indefinite-length"),
    ("0000", "1 trailing bytes"), ("8101" "02", "trailing"),
    ("81" * 17 + "00", "nesting deeper than 16"),
    ("5a00010000" + "00" * 4, "declares 65536 bytes but only 4 remain"),
    ("9b0000000100000000", "declares 4294967296 items"),
    ("bb0000000100000000", "declares 4294967296 pairs"),
    ("44010203", "declares 4 bytes but only 3 remain"),
    ("19", "declares 2 bytes"), ("", "found the end of the input"),
    ("1c", "reserved additional information 28"),
    ("f4", "floats and simple values"), ("f6", "floats and simple values"), ("f93c00", "floats"),
    ("a201010102", "duplicate map key 1"), ("a18000", "map key must be"),
    ("62c328", "not valid UTF-8"),
])
def test_cbor_decoder_refuses(hex_input, message):
    with pytest.raises(cbor.CborError, match=message):
        cbor.decode(bytes.fromhex(hex_input))


def test_cbor_encoder_refuses_what_it_cannot_encode():
    for value in (1.5, True, None, 1 << 64, -(1 << 64) - 1, {(1, 2): 0}, object()):
        with pytest.raises(cbor.CborError, match="cannot encode"):
            cbor.encode(value)


# --------------------------------------------------- (a) real third-party certificates


def _der(name: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert((FIXTURES / name).read_text())


def _spki_by_openssl(name: str) -> bytes:
    """The certificate's SubjectPublicKeyInfo DER as OpenSSL reads it, independently of
    teenet's DER walker (cryptography refuses Gramine's NULL signature parameter)."""
    pem = subprocess.run(["openssl", "x509", "-noout", "-pubkey", "-in", str(FIXTURES / name)],
                         check=True, capture_output=True).stdout
    return serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _flip(der: bytes, at: int) -> bytes:
    return der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1:]


@pytest.mark.parametrize("name", THIRD_PARTY)
def test_third_party_ratls_certificates_are_read(name):
    der = _der(name)
    read = ratls.read_certificate(der)
    assert read.format == "tag 60000"
    quote = parse_quote(read.evidence.report)
    assert (quote.header.version, quote.header.tee_type) == (3, 0)  # SGX ECDSA quote v3
    assert read.evidence.platform is Platform.SGX
    # pubkey-hash is SHA-256 of the SPKI OpenSSL reads from this certificate
    entry = cbor2.loads(read.claims["pubkey-hash"])
    assert list(entry) == [1, hashlib.sha256(_spki_by_openssl(name)).digest()]
    # the quote's report_data: SHA-256(claims-buffer) then 32 zero bytes
    assert quote.body.report_data == hashlib.sha256(read.claims_buffer).digest() + bytes(32)
    assert read.report_data == quote.body.report_data
    # teenet's decoder and cbor2 agree on the whole extension
    ext = ratls.certificate_parts(der)[1][bytes.fromhex("0606678105050409")][1]
    tagged = cbor2.loads(ext)
    assert tagged.tag == 60000 and list(tagged.value) == [read.evidence.report, read.claims_buffer]


def test_rats_tls_extra_claims_are_kept_and_ignored():
    read = ratls.read_certificate(_der("rats-tls-cert.pem"))
    assert read.claims["key_0"] == b"value_0\x00" and read.nonce is None


@pytest.mark.parametrize("name", THIRD_PARTY)
def test_third_party_certificate_with_a_flipped_byte_is_refused(name):
    der = _der(name)
    read = ratls.read_certificate(der)
    buffer, quote = read.claims_buffer, read.evidence.report
    # (the Intel SDK and Gramine certificates also carry the quote in a legacy extension:
    # flip the copy inside the 2.23.133.5.4.9 extension)
    ext = ratls.certificate_parts(der)[1][bytes.fromhex("0606678105050409")][1]
    ext_at = der.find(ext)
    claims_at, quote_at = der.find(buffer, ext_at), der.find(quote, ext_at)
    assert ext_at < quote_at < claims_at < ext_at + len(ext)
    # the last byte of the claims buffer is the last byte of the pubkey hash (or, for rats-tls,
    # of an extra claim): either the key binding or the claims hash must fail
    with pytest.raises(InputError, match="names another key|does not hold SHA-256 of the claims buffer"):
        ratls.read_certificate(_flip(der, claims_at + len(buffer) - 1))
    # a byte of the quote's report_data (header 48 + report body offset 320)
    with pytest.raises(InputError, match="report_data does not hold SHA-256 of the claims buffer"):
        ratls.read_certificate(_flip(der, quote_at + 48 + 320))
    # a byte of the quote header (version 3 -> 2): the quote no longer parses as a DCAP quote
    with pytest.raises(InputError, match="not an SGX or TDX ECDSA quote"):
        ratls.read_certificate(_flip(der, quote_at))


# ------------------------------------------------- (b) teenet certificates, read by cbor2


@pytest.fixture(scope="module")
def measurement():
    return enclave_measurement()


def _worker_certificate(sim_platform, measurement, *, nonce=b"n" * 32):
    ca = ClusterCA("ratls-test")
    key = new_key()
    claims = admission_claims("worker", nonce, key.public_key())
    evidence = UnsafeSimulatedAttester(sim_platform, measurement).attest(ratls.report_data_for_claims(claims))
    return ca, key, claims, evidence, ca.issue("w1", key.public_key(), evidence=evidence, claims_buffer=claims)


def test_teenet_worker_certificate_is_readable_by_a_third_party_cbor_decoder(sim_platform, measurement):
    ca, key, claims, evidence, cert = _worker_certificate(sim_platform, measurement)
    ext = cert.extensions.get_extension_for_oid(ratls.RATLS_OID)
    assert ext.critical is False
    media_type, inner, ind = cbor2.loads(ext.value.value)
    assert (media_type, ind) == ("application/vnd.teenet.sim-sev-snp-ratls+cbor", 4)
    report, buffer = cbor2.loads(inner)
    assert buffer == claims and report == evidence.report
    decoded = cbor2.loads(buffer)
    assert set(decoded) == {"pubkey-hash", "nonce", "teenet-domain"}
    assert decoded["nonce"] == b"n" * 32
    assert decoded["teenet-domain"] == b"teenet/cluster-admission/v1/worker"
    # by hand: pubkey-hash is [SHA-256 id 1, SHA-256 of the certificate's SPKI] ...
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert list(cbor2.loads(decoded["pubkey-hash"])) == [1, hashlib.sha256(spki).digest()]
    # ... and the SNP report's REPORT_DATA (offset 0x50, 64 bytes) is SHA-256(claims) || 0^32
    assert report[0x50:0x90] == hashlib.sha256(buffer).digest() + bytes(32)
    # the endorsements extension carries the simulated VCEK/ASK/ARK chain as DER certificates
    endorsed = cert.extensions.get_extension_for_oid(ratls.ENDORSEMENTS_OID)
    assert endorsed.critical is False
    e_type, e_value, e_ind = cbor2.loads(endorsed.value.value)
    assert (e_type, e_ind) == (media_type, 2)
    chain = [x509.load_der_x509_certificate(c) for c in cbor2.loads(e_value)]
    assert chain and [c.public_bytes(serialization.Encoding.DER) for c in chain] == list(evidence.certificates)
    # teenet's reader returns evidence that verifies
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    read = ratls.read_certificate(cert)
    assert read.nonce == b"n" * 32 and read.claims["teenet-domain"] == b"teenet/cluster-admission/v1/worker"
    assert verify_evidence(read.evidence, roots, verifier_policy(measurement),
                           report_data_for_admission("worker", b"n" * 32, key.public_key())).measurement == measurement


def test_dcap_quote_is_written_as_tag_60000():
    """The DCAP write path, with a real quote: the Gramine quote binds Gramine's claims and
    key, so a certificate teenet issues for that key carries the same CCC structure."""
    der = _der("gramine-cert.pem")
    read = ratls.read_certificate(der)
    public_key = serialization.load_der_public_key(ratls.certificate_parts(der)[0])
    cert = ClusterCA("dcap").issue("sgx-worker", public_key, evidence=read.evidence, claims_buffer=read.claims_buffer)
    tagged = cbor2.loads(cert.extensions.get_extension_for_oid(ratls.RATLS_OID).value.value)
    assert tagged.tag == 60000 and list(tagged.value) == [read.evidence.report, read.claims_buffer]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_oid(ratls.ENDORSEMENTS_OID)
    assert ratls.read_certificate(cert).evidence.report == read.evidence.report


def test_admission_issues_the_worker_exactly_its_evidence_and_claims(sim_platform, measurement):
    ca = ClusterCA("ratls-admission")
    roots = default_trust_roots(sim_ark=sim_platform.ark)
    attester = UnsafeSimulatedAttester(sim_platform, measurement)
    server = AdmissionServer(ca, attester, roots, verifier_policy(measurement), lambda: "tls://127.0.0.1:1").start()
    try:
        key = new_key()
        _, cert_pem, _ = request_admission(server.address, "w1", key, attester, roots, verifier_policy(measurement))
    finally:
        server.close()
    cert = x509.load_pem_x509_certificate(cert_pem)
    read = ratls.read_certificate(cert)
    assert read.evidence.report == server.admitted["w1"].evidence.report
    assert len(read.nonce) == 32
    assert read.claims_buffer == admission_claims("worker", read.nonce, key.public_key())
    # one purpose's evidence cannot stand for another's
    assert report_data_for_admission("leader", read.nonce, key.public_key()) != read.report_data


# ------------------------------------------------------------- (c) refused certificates


def _forge(extensions, public_key, signer):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public_key)
               .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(signer, hashes.SHA256())


def test_pubkey_hash_naming_another_key_is_refused(sim_platform, measurement):
    ca, key, claims, evidence, _ = _worker_certificate(sim_platform, measurement)
    other = new_key()
    with pytest.raises(InputError, match="claim 'pubkey-hash' names another key"):
        ca.issue("w1", other.public_key(), evidence=evidence, claims_buffer=claims)
    forged = _forge([ratls.evidence_extension(evidence, claims), ratls.endorsements_extension(evidence)],
                    other.public_key(), other)
    with pytest.raises(InputError, match="claim 'pubkey-hash' names another key: it is not the hash of this "
                                         "certificate's SubjectPublicKeyInfo"):
        ratls.read_certificate(forged)


def test_report_data_not_holding_the_claims_hash_is_refused(sim_platform, measurement):
    ca, key, claims, evidence, _ = _worker_certificate(sim_platform, measurement)
    other_claims = admission_claims("worker", b"m" * 32, key.public_key())  # another nonce
    with pytest.raises(InputError, match="report_data is not SHA-256 of the claims buffer"):
        ca.issue("w1", key.public_key(), evidence=evidence, claims_buffer=other_claims)
    value = cbor.encode([ratls.SIM_SNP_MEDIA_TYPE, cbor.encode([evidence.report, other_claims]), 4])
    forged = _forge([x509.UnrecognizedExtension(ratls.RATLS_OID, value)], key.public_key(), key)
    with pytest.raises(InputError, match="report_data does not hold SHA-256 of the claims buffer"):
        ratls.read_certificate(forged)
    # the claims hash in place but the rest of report_data not zero
    padded = UnsafeSimulatedAttester(sim_platform, measurement).attest(
        hashlib.sha256(claims).digest() + b"\x01" * 32)
    value = cbor.encode([ratls.SIM_SNP_MEDIA_TYPE, cbor.encode([padded.report, claims]), 4])
    forged = _forge([x509.UnrecognizedExtension(ratls.RATLS_OID, value)], key.public_key(), key)
    with pytest.raises(InputError, match="expected 32 zero bytes after the claims hash"):
        ratls.read_certificate(forged)


@pytest.mark.parametrize("value,message", [
    (b"\xff\xff", "expected tagged CBOR"),
    (cbor.encode(cbor.Tag(60001, [b"r", b"c"])), "tag 60001 holds an Intel TEE report"),
    (cbor.encode(cbor.Tag(12345, [b"r", b"c"])), "CBOR tag 12345 is not an evidence format teenet reads"),
    (cbor.encode(cbor.Tag(60000, [b"r"])), "expected a 2-item array"),
    (cbor.encode(["application/json", b"x", 4]), "CMW media type 'application/json' is not one teenet reads"),
    (cbor.encode([ratls.SNP_MEDIA_TYPE, cbor.encode([b"r", b"c"]), 2]), "CMW indicator 2: expected 4"),
    (cbor.encode({"a": 1}), "expected a CBOR tag"),
    (cbor.encode(cbor.Tag(60000, [b"r", b"c"])) + b"\x00", "expected tagged CBOR: .*1 trailing bytes"),
    (bytes.fromhex("d9ea609f4141414bff"), "expected tagged CBOR: .*indefinite-length"),
])
def test_malformed_evidence_extension_is_refused(value, message):
    key = new_key()
    forged = _forge([x509.UnrecognizedExtension(ratls.RATLS_OID, value)], key.public_key(), key)
    with pytest.raises(InputError, match=message):
        ratls.read_certificate(forged)


def test_certificate_without_the_extension_or_with_an_unknown_hash_is_refused(sim_platform, measurement):
    key = new_key()
    with pytest.raises(InputError, match="no evidence extension 2.23.133.5.4.9"):
        ratls.read_certificate(_forge([], key.public_key(), key))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = cbor.encode({"pubkey-hash": cbor.encode([2, hashlib.sha256(spki).digest()])})
    evidence = UnsafeSimulatedAttester(sim_platform, measurement).attest(ratls.report_data_for_claims(claims))
    forged = _forge([ratls.evidence_extension(evidence, claims)], key.public_key(), key)
    with pytest.raises(InputError, match="hash algorithm 2 is not one of 1"):
        ratls.read_certificate(forged)
    # SHA-384 (id 7) is read, as CCC verifiers must
    claims = cbor.encode({"pubkey-hash": cbor.encode([7, hashlib.sha384(spki).digest()])})
    evidence = UnsafeSimulatedAttester(sim_platform, measurement).attest(ratls.report_data_for_claims(claims))
    assert ratls.read_certificate(_forge([ratls.evidence_extension(evidence, claims)], key.public_key(),
                                         key)).pubkey_hash_alg == 7


def test_dcap_evidence_with_extra_certificates_is_not_written():
    der = _der("rats-tls-cert.pem")
    read = ratls.read_certificate(der)
    evidence = Evidence(Platform.SGX, read.evidence.report, (b"extra",))
    with pytest.raises(InputError, match="expected no extra certificates"):
        ratls.evidence_extension(evidence, read.claims_buffer)


def test_tdx_quote_in_tag_60000_is_parsed_and_its_report_data_checked(attestation_fixtures):
    """A real TDX v4 quote under tag 60000, in a certificate whose pubkey-hash is right: the
    reader parses the TD report and refuses it, since that quote's report_data was not made
    over these claims."""
    quote = (attestation_fixtures / "tdx" / "tdx-v4-quote.dat").read_bytes()
    key = new_key()
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = cbor.encode({"pubkey-hash": cbor.encode([1, hashlib.sha256(spki).digest()])})
    forged = _forge([x509.UnrecognizedExtension(ratls.RATLS_OID, cbor.encode(cbor.Tag(60000, [quote, claims])))],
                    key.public_key(), key)
    assert parse_quote(quote).is_tdx
    with pytest.raises(InputError, match="report_data does not hold SHA-256 of the claims buffer"):
        ratls.read_certificate(forged)
