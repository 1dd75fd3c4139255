"""Evidence in a certificate, in the interoperable RA-TLS form (CCC-Attestation).

Two non-critical X.509 extensions, as the CCC "Interoperable RA-TLS X.509 Cert and Evidence
Formats" and "SGX / TDX Evidence Tags and Formats" documents define them:

    2.23.133.5.4.9  tcg-dice-conceptual-message-wrapper   the evidence
    2.23.133.5.4.2  tcg-dice-endorsement-manifest         endorsements (optional)

Each extnValue is the bytes of one CBOR data item (teenet.cbor, definite lengths).

Intel TDX and SGX DCAP quotes use the IANA-registered tag 60000 exactly as CCC defines it:

    60000([ quote, claims-buffer ])

`claims-buffer` is a byte string holding the CBOR map of custom claims, every value a byte
string:

    { "pubkey-hash": h'<CBOR [hash-alg-id, hash of the certificate's SubjectPublicKeyInfo DER]>',
      ? "nonce": h'...',  ? other claims (verifiers ignore those they do not know) }

and the quote's 64-byte report_data is SHA-256(claims-buffer) followed by 32 zero bytes (the
layout Gramine, the Intel SGX SDK and rats-tls all produce: see the three certificates in
tests/fixtures/ratls/). hash-alg-id is the IANA Named Information id: 1 SHA-256, 7 SHA-384,
8 SHA-512; teenet writes 1 and reads all three.

AMD SEV-SNP has no registered tag (CCC defines only 60000-60002 for Intel). teenet carries
SNP evidence as a CMW (RATS Conceptual Message Wrapper, draft-ietf-rats-msg-wrap) in its
CBOR *record* form, which names the format by a media type instead of a tag number:

    [ "application/vnd.teenet.sev-snp-ratls+cbor", h'<CBOR [ report, claims-buffer ]>', 4 ]

(4 is the CMW indicator bit "evidence"). The inner array and claims-buffer are exactly the
CCC ones, with the 1184-byte SNP ATTESTATION_REPORT in place of the quote and the same
report_data layout. The simulated platform uses its own media type,
"application/vnd.teenet.sim-sev-snp-ratls+cbor", so no verifier can take a software report
for hardware. The VCEK/VLEK, ASK/ASVK and ARK DER certificates go in the endorsements
extension as the same record type with indicator 2 ("endorsements"):
[ type, h'<CBOR [ cert-der, ... ]>', 2 ]. docs/deploy-cluster.md says why this and not an
unregistered tag. For DCAP quotes teenet writes no endorsements (the PCK chain is in the
quote, the TCB collateral comes from the verifier's own Intel collateral directory) and
ignores the tag-60000 endorsements other stacks write.

`read_certificate` reads either form back and checks the binding that makes it RA-TLS:
pubkey-hash is the hash of *this* certificate's SubjectPublicKeyInfo and the report's
report_data holds SHA-256(claims-buffer). It does not verify the quote or report: that is
teenet.attestation.verify_evidence on the returned Evidence, with the verifier's roots and
policy. The certificate is read from its DER with a small walker of its own, so certificates
that `cryptography` refuses to load (Gramine's mbedTLS writes a NULL parameter into the
ECDSA signature algorithm) are still readable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from teenet import cbor
from teenet.der import DerError, der_tlv
from teenet.attestation.evidence import REPORT_DATA_SIZE, Evidence, Platform
from teenet.errors import InputError, VerificationError

RATLS_OID = x509.ObjectIdentifier("2.23.133.5.4.9")
ENDORSEMENTS_OID = x509.ObjectIdentifier("2.23.133.5.4.2")
_EVIDENCE_OID_DER = bytes.fromhex("0606678105050409")
_ENDORSEMENTS_OID_DER = bytes.fromhex("0606678105050402")

TAG_INTEL_QUOTE = 60000       # SGX / TDX ECDSA quote (IANA-registered, CCC)
TAG_INTEL_REPORT = 60001      # TDX report / SGX report type 2 (local attestation only)
TAG_SGX_LEGACY_REPORT = 60002  # EREPORT (local attestation only)
SNP_MEDIA_TYPE = "application/vnd.teenet.sev-snp-ratls+cbor"
SIM_SNP_MEDIA_TYPE = "application/vnd.teenet.sim-sev-snp-ratls+cbor"
CMW_IND_ENDORSEMENTS = 2      # draft-ietf-rats-msg-wrap cm-type bit 1
CMW_IND_EVIDENCE = 4          # draft-ietf-rats-msg-wrap cm-type bit 2
_MEDIA_TYPES = {Platform.SNP: SNP_MEDIA_TYPE, Platform.SIM_SNP: SIM_SNP_MEDIA_TYPE}
_PLATFORM_OF_TYPE = {v: k for k, v in _MEDIA_TYPES.items()}

HASH_SHA256, HASH_SHA384, HASH_SHA512 = 1, 7, 8  # IANA Named Information hash algorithm ids
_HASHES = {HASH_SHA256: hashlib.sha256, HASH_SHA384: hashlib.sha384, HASH_SHA512: hashlib.sha512}
PUBKEY_HASH, NONCE = "pubkey-hash", "nonce"
MAX_EXTENSION = 256 * 1024
PROVIDER = "ratls-certificate"
_WHERE = f"certificate extension {RATLS_OID.dotted_string}"


def spki_der(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pubkey_hash_value(spki: bytes) -> bytes:
    """The CCC `pubkey-hash` value: CBOR [1, SHA-256(SubjectPublicKeyInfo DER)]."""
    return cbor.encode([HASH_SHA256, hashlib.sha256(spki).digest()])


def claims_buffer(public_key: Any, *, nonce: bytes | None = None,
                  extra: Mapping[str, bytes] | None = None) -> bytes:
    """The CCC claims-buffer for `public_key`: pubkey-hash, the optional nonce and any
    further (teenet) claims, every value a byte string, deterministically encoded."""
    claims: dict[str, bytes] = {PUBKEY_HASH: pubkey_hash_value(spki_der(public_key))}
    if nonce is not None:
        claims[NONCE] = bytes(nonce)
    for name, value in (extra or {}).items():
        if name in claims or not isinstance(value, bytes):
            raise InputError(f"claim {name!r}: expected a new claim name with a byte-string value")
        claims[name] = value
    return cbor.encode(claims)


def report_data_for_claims(buffer: bytes) -> bytes:
    """The 64 bytes of report_data that bind `buffer`: SHA-256(buffer) || 32 zero bytes."""
    return hashlib.sha256(buffer).digest() + bytes(REPORT_DATA_SIZE - 32)


# ------------------------------------------------------------------------------ write


def _check_binding(evidence: Evidence, buffer: bytes) -> None:
    found = _report_data(evidence.platform, evidence.report)
    if found != report_data_for_claims(buffer):
        raise InputError("the evidence's report_data is not SHA-256 of the claims buffer followed by zeros",
                         source=_WHERE)


def evidence_extension(evidence: Evidence, buffer: bytes) -> x509.UnrecognizedExtension:
    """The evidence extension for `evidence`, whose report_data must bind `buffer`."""
    _check_binding(evidence, buffer)
    if evidence.platform in (Platform.TDX, Platform.SGX):
        if evidence.certificates:
            raise InputError("DCAP evidence carries its PCK chain in the quote; expected no extra certificates",
                             source=_WHERE)
        item: Any = cbor.Tag(TAG_INTEL_QUOTE, [evidence.report, buffer])
    else:
        item = [_MEDIA_TYPES[evidence.platform], cbor.encode([evidence.report, buffer]), CMW_IND_EVIDENCE]
    return x509.UnrecognizedExtension(RATLS_OID, cbor.encode(item))


def endorsements_extension(evidence: Evidence) -> x509.UnrecognizedExtension | None:
    """SNP: the VCEK/ASK/ARK chain the evidence carries, or None (DCAP, or no certificates)."""
    if evidence.platform not in _MEDIA_TYPES or not evidence.certificates:
        return None
    value = cbor.encode(list(evidence.certificates))
    return x509.UnrecognizedExtension(
        ENDORSEMENTS_OID, cbor.encode([_MEDIA_TYPES[evidence.platform], value, CMW_IND_ENDORSEMENTS]))


# ------------------------------------------------------------------------------- read


@dataclass(frozen=True)
class RatlsEvidence:
    """What a certificate's RA-TLS extensions hold, binding checked (quote not verified).

    `format` is "tag 60000" or the CMW media type; `claims` the decoded claims map;
    `pubkey_hash_alg` the IANA hash id pubkey-hash used; `nonce` the nonce claim or None."""

    evidence: Evidence
    format: str
    claims_buffer: bytes
    claims: Mapping[str, Any]
    pubkey_hash_alg: int
    nonce: bytes | None
    report_data: bytes


def _der_tlv(data: bytes, pos: int, what: str) -> tuple[int, int, int]:
    """(tag byte, start of contents, end of contents) of the DER item at `pos` (teenet.der)."""
    try:
        return der_tlv(data, pos)
    except DerError as exc:
        raise InputError(f"certificate DER at byte {pos} ({what}): {exc}") from None


def certificate_parts(der: bytes) -> tuple[bytes, dict[bytes, tuple[bool, bytes]]]:
    """(SubjectPublicKeyInfo DER, {extnID DER: (critical, extnValue)}) of an X.509 v3
    certificate, read with a minimal DER walker; InputError if it is not one."""
    tag, start, end = _der_tlv(der, 0, "Certificate")
    if tag != 0x30 or end != len(der):
        raise InputError("certificate DER: expected one SEQUENCE (Certificate)")
    tag, pos, tbs_end = _der_tlv(der, start, "tbsCertificate")
    if tag != 0x30:
        raise InputError("certificate DER: expected a SEQUENCE (tbsCertificate)")
    fields = []
    while pos < tbs_end:
        tag, s, e = _der_tlv(der, pos, "tbsCertificate field")
        fields.append((tag, pos, s, e))
        pos = e
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    if len(fields) < 6 or fields[5][0] != 0x30:
        raise InputError("certificate DER: expected subjectPublicKeyInfo as the 6th tbsCertificate field")
    spki = der[fields[5][1]:fields[5][3]]
    extensions: dict[bytes, tuple[bool, bytes]] = {}
    for tag, _, s, e in fields[6:]:
        if tag != 0xA3:  # [1] issuerUniqueID, [2] subjectUniqueID
            continue
        tag, pos, seq_end = _der_tlv(der, s, "extensions")
        if tag != 0x30:
            raise InputError("certificate DER: expected a SEQUENCE of extensions")
        while pos < seq_end:
            tag, es, ee = _der_tlv(der, pos, "Extension")
            if tag != 0x30:
                raise InputError("certificate DER: expected an Extension SEQUENCE")
            tag, os_, oe = _der_tlv(der, es, "extnID")
            if tag != 0x06:
                raise InputError("certificate DER: expected an extnID OBJECT IDENTIFIER")
            oid, nxt, critical = der[es:oe], oe, False
            tag, bs, be = _der_tlv(der, nxt, "Extension field")
            if tag == 0x01:  # BOOLEAN critical
                critical = be - bs == 1 and der[bs] != 0
                tag, bs, be = _der_tlv(der, be, "extnValue")
            if tag != 0x04 or be != ee:
                raise InputError("certificate DER: expected an extnValue OCTET STRING ending the Extension")
            if oid in extensions:
                raise InputError("certificate DER: an extension appears twice")
            extensions[oid] = (critical, der[bs:be])
            pos = ee
    return spki, extensions


def _report_data(platform: Platform, report: bytes) -> bytes:
    try:
        if platform in (Platform.TDX, Platform.SGX):
            from teenet.attestation.dcap_quote import parse_quote

            return parse_quote(report).body.report_data
        from teenet.attestation.snp import parse_snp_report

        return parse_snp_report(report).report_data
    except VerificationError as exc:
        raise InputError(f"the {platform.value} report does not parse: {exc}", source=_WHERE) from None


def _pair(value: Any, what: str) -> tuple[bytes, bytes]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, bytes) for v in value)):
        raise InputError(f"{what}: expected a 2-item array [report bytes, claims-buffer bytes]", source=_WHERE)
    return value[0], value[1]


def _decode_extension(value: bytes, where: str) -> Any:
    if len(value) > MAX_EXTENSION:
        raise InputError(f"the extension is {len(value)} bytes; at most {MAX_EXTENSION} are accepted", source=where)
    try:
        return cbor.decode(value)
    except cbor.CborError as exc:
        raise InputError(f"expected tagged CBOR: {exc}", source=where) from None


def _record(item: Any, ind: int, where: str) -> tuple[str, bytes]:
    """A CMW CBOR record [type, value, ind] with one of teenet's SNP media types."""
    if not (isinstance(item, list) and len(item) in (2, 3) and isinstance(item[0], str)
            and isinstance(item[1], bytes)):
        raise InputError("expected a CBOR tag (60000 for an Intel quote) or a CMW record [media type, bytes, ind]",
                         source=where)
    if item[0] not in _PLATFORM_OF_TYPE:
        raise InputError(f"CMW media type {item[0]!r} is not one teenet reads; expected "
                         f"{SNP_MEDIA_TYPE} or {SIM_SNP_MEDIA_TYPE}", source=where)
    if len(item) == 3 and item[2] != ind:
        raise InputError(f"CMW indicator {item[2]!r}: expected {ind}", source=where)
    return item[0], item[1]


def _claims(buffer: bytes) -> dict[str, Any]:
    try:
        claims = cbor.decode(buffer)
    except cbor.CborError as exc:
        raise InputError(f"the claims buffer is not CBOR: {exc}", source=_WHERE) from None
    if not isinstance(claims, dict) or not all(isinstance(k, str) for k in claims):
        raise InputError("the claims buffer: expected a CBOR map with text claim names", source=_WHERE)
    return claims


def _check_pubkey_hash(claims: Mapping[str, Any], spki: bytes) -> int:
    value = claims.get(PUBKEY_HASH)
    if not isinstance(value, bytes):
        raise InputError("claim 'pubkey-hash': expected a byte string (it is required)", source=_WHERE)
    try:
        entry = cbor.decode(value)
    except cbor.CborError as exc:
        raise InputError(f"claim 'pubkey-hash': expected CBOR [hash-alg-id, hash]: {exc}", source=_WHERE) from None
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)
            and isinstance(entry[1], bytes)):
        raise InputError("claim 'pubkey-hash': expected CBOR [hash-alg-id, hash bytes]", source=_WHERE)
    alg, digest = entry
    if alg not in _HASHES:
        raise InputError(f"claim 'pubkey-hash': hash algorithm {alg} is not one of 1 (SHA-256), 7 (SHA-384), "
                         "8 (SHA-512)", source=_WHERE)
    if digest != _HASHES[alg](spki).digest():
        raise InputError("claim 'pubkey-hash' names another key: it is not the hash of this certificate's "
                         "SubjectPublicKeyInfo", source=_WHERE)
    return alg


def read_certificate(cert: x509.Certificate | bytes) -> RatlsEvidence:
    """The RA-TLS evidence of `cert` (a certificate or its DER) with its binding checked:
    pubkey-hash is the hash of this certificate's SubjectPublicKeyInfo and the report's
    report_data is SHA-256(claims-buffer) || 32 zero bytes. InputError names what is wrong.
    The quote or report itself is not verified here (teenet.attestation.verify_evidence)."""
    der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
    spki, extensions = certificate_parts(der)
    if _EVIDENCE_OID_DER not in extensions:
        raise InputError(f"certificate has no evidence extension {RATLS_OID.dotted_string}")
    item = _decode_extension(extensions[_EVIDENCE_OID_DER][1], _WHERE)
    certificates: tuple[bytes, ...] = ()
    if isinstance(item, cbor.Tag):
        if item.number in (TAG_INTEL_REPORT, TAG_SGX_LEGACY_REPORT):
            raise InputError(f"tag {item.number} holds an Intel TEE report, which only a verifier on the same "
                             "platform can check; expected tag 60000 (a quote)", source=_WHERE)
        if item.number != TAG_INTEL_QUOTE:
            raise InputError(f"CBOR tag {item.number} is not an evidence format teenet reads; expected 60000 "
                             "(Intel quote)", source=_WHERE)
        report, buffer = _pair(item.value, "tag 60000")
        from teenet.attestation.dcap_quote import detect_dcap_platform

        kind = detect_dcap_platform(report)
        if kind is None:
            raise InputError("tag 60000: the quote is not an SGX or TDX ECDSA quote", source=_WHERE)
        platform, form = Platform(kind), f"tag {TAG_INTEL_QUOTE}"
    else:
        form, inner = _record(item, CMW_IND_EVIDENCE, _WHERE)
        platform = _PLATFORM_OF_TYPE[form]
        try:
            report, buffer = _pair(cbor.decode(inner), form)
        except cbor.CborError as exc:
            raise InputError(f"{form}: expected CBOR [report, claims-buffer]: {exc}", source=_WHERE) from None
        if _ENDORSEMENTS_OID_DER in extensions:
            where = f"certificate extension {ENDORSEMENTS_OID.dotted_string}"
            kind, value = _record(_decode_extension(extensions[_ENDORSEMENTS_OID_DER][1], where),
                                  CMW_IND_ENDORSEMENTS, where)
            if kind != form:
                raise InputError(f"endorsements of type {kind!r} for evidence of type {form!r}", source=where)
            try:
                chain = cbor.decode(value)
            except cbor.CborError as exc:
                raise InputError(f"expected CBOR [certificate DER, ...]: {exc}", source=where) from None
            if not (isinstance(chain, list) and all(isinstance(c, bytes) for c in chain)):
                raise InputError("expected a CBOR array of DER certificates", source=where)
            certificates = tuple(chain)
    claims = _claims(buffer)
    alg = _check_pubkey_hash(claims, spki)
    nonce = claims.get(NONCE)
    if nonce is not None and not isinstance(nonce, bytes):
        raise InputError("claim 'nonce': expected a byte string", source=_WHERE)
    report_data = _report_data(platform, report)
    if report_data[:32] != hashlib.sha256(buffer).digest():
        raise InputError("the report's report_data does not hold SHA-256 of the claims buffer", source=_WHERE)
    if report_data[32:] != bytes(REPORT_DATA_SIZE - 32):
        raise InputError("the report's report_data: expected 32 zero bytes after the claims hash", source=_WHERE)
    evidence = Evidence(platform, report, certificates, PROVIDER)
    return RatlsEvidence(evidence, form, buffer, claims, alg, nonce, report_data)


def evidence_from_certificate(cert: x509.Certificate | bytes) -> Evidence:
    """The evidence a cluster certificate carries, its key binding checked (read_certificate)."""
    return read_certificate(cert).evidence
