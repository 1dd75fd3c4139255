"""Verify Intel DCAP quotes (TDX and SGX) and return their claims, failing closed.

Checks, each named in its refusal, in this order:
  dcap.parse               the quote is well formed (see `dcap_quote.py`)
  dcap.root / dcap.chain   PCK leaf -> intermediate CA -> the pinned Intel SGX Root CA,
                           ECDSA signatures, CA constraints, validity at `roots.now` (or now)
  dcap.qe_report_signature the QE report is signed by the PCK leaf key
  dcap.qe_identity         the QE is Intel's (pinned QE MRSIGNER and product id, debug off)
  dcap.qe_binding          QE report_data = SHA-256(attestation key || QE auth data) || 0*32
  dcap.signature           the quote header and body are signed by that attestation key

TCB status from Intel collateral (TCB info, QE identity JSON) is evaluated, when collateral
is supplied, by `teenet.attestation.collateral.verify_with_collateral` on top of these
checks. Revocation (PCK and root CRLs) is not checked; owners pin minimum TCB components
through their policy (`min_tcb`, `details`).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from teenet.attestation.dcap_quote import (
    BODY_TYPE_TDX_15, TEE_TYPE_SGX, TEE_TYPE_TDX, DcapQuote, EnclaveReport, TdReport, parse_quote,
)
from teenet.attestation.evidence import Claims, Evidence, Platform, TrustRoots
from teenet.errors import VerificationError

# Intel's quoting enclaves, as published in Intel's QE identity collateral
# (https://api.trustedservices.intel.com/{sgx,tdx}/certification/v4/qe/identity).
# Pinned so that a report from any other enclave the PCK key happened to sign is refused.
INTEL_QE_IDENTITIES: dict[int, tuple[bytes, int]] = {
    TEE_TYPE_SGX: (bytes.fromhex("8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff"), 1),
    TEE_TYPE_TDX: (bytes.fromhex("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5"), 2),
}
MAX_PCK_CHAIN_CERTS = 3


def verify_tdx_evidence(evidence: Evidence, roots: TrustRoots) -> Claims:
    """Verify a TDX DCAP quote (v4 or v5) in `evidence.report`; return the TD's claims."""
    quote = verify_quote(evidence.report, roots)
    if not isinstance(quote.body, TdReport):
        raise VerificationError("dcap.tee_type", "evidence labelled TDX holds a quote of another TEE",
                                expected="TDX (0x00000081)", found=f"0x{quote.header.tee_type:08x}")
    return tdx_claims(quote)


def verify_sgx_evidence(evidence: Evidence, roots: TrustRoots) -> Claims:
    """Verify an SGX DCAP quote (v3, v4 or v5) in `evidence.report`; return the enclave's claims."""
    quote = verify_quote(evidence.report, roots)
    if not isinstance(quote.body, EnclaveReport):
        raise VerificationError("dcap.tee_type", "evidence labelled SGX holds a quote of another TEE",
                                expected="SGX (0x00000000)", found=f"0x{quote.header.tee_type:08x}")
    return sgx_claims(quote)


def verify_quote(raw: bytes, roots: TrustRoots) -> DcapQuote:
    """Parse a quote and run every signature, chain and identity check on it."""
    quote = parse_quote(raw)
    pck_leaf = verify_pck_chain(quote.certification.pck_chain_pem, roots)
    cert = quote.certification
    pck_key = pck_leaf.public_key()
    if not isinstance(pck_key, ec.EllipticCurvePublicKey) or not isinstance(pck_key.curve, ec.SECP256R1):
        raise VerificationError("dcap.qe_report_signature", "the PCK certificate does not hold a P-256 key",
                                expected="ECDSA P-256", found=type(pck_key).__name__)
    _verify_p256(pck_key, cert.qe_report_signature, cert.qe_report.raw, "dcap.qe_report_signature",
                 "the QE report is not signed by the PCK certificate's key")
    _verify_qe_identity(quote)
    expected = hashlib.sha256(quote.attestation_key + cert.qe_auth_data).digest() + bytes(32)
    if not hmac.compare_digest(cert.qe_report.report_data, expected):
        raise VerificationError("dcap.qe_binding", "the QE report does not vouch for this attestation key",
                                expected=expected.hex()[:32] + "...",
                                found=cert.qe_report.report_data.hex()[:32] + "...")
    attestation_key = _p256_point(quote.attestation_key)
    _verify_p256(attestation_key, quote.signature, quote.signed_data, "dcap.signature",
                 "the quote is not signed by its attestation key")
    return quote


def _verify_qe_identity(quote: DcapQuote) -> None:
    qe = quote.certification.qe_report
    mr_signer, prod_id = INTEL_QE_IDENTITIES[quote.header.tee_type]
    if not hmac.compare_digest(qe.mr_signer, mr_signer):
        raise VerificationError("dcap.qe_identity", "the quoting enclave is not signed by Intel",
                                expected=mr_signer.hex(), found=qe.mr_signer.hex())
    if qe.isv_prod_id != prod_id:
        raise VerificationError("dcap.qe_identity", "the quoting enclave has the wrong product id",
                                expected=str(prod_id), found=str(qe.isv_prod_id))
    if qe.debug:
        raise VerificationError("dcap.qe_identity", "the quoting enclave runs in debug mode",
                                expected="debug off", found="debug on")


def _p256_point(xy: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xy)
    except ValueError:
        raise VerificationError("dcap.signature", "the attestation key is not a point on P-256",
                                expected="64-byte x||y on P-256", found=f"{len(xy)} bytes off the curve") from None


def _verify_p256(key: ec.EllipticCurvePublicKey, raw_signature: bytes, data: bytes, check: str,
                 message: str) -> None:
    """ECDSA-P256-SHA256 over `data`; `raw_signature` is r||s, 32 bytes each, big-endian."""
    r = int.from_bytes(raw_signature[:32], "big")
    s = int.from_bytes(raw_signature[32:64], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise VerificationError(check, message, expected="a valid ECDSA P-256 signature",
                                found="a signature that does not verify") from None


def _load_chain(pem: bytes) -> list[x509.Certificate]:
    # Real quotes NUL-terminate the PEM text; the PEM loader rejects stray bytes.
    text = pem.rstrip(b"\x00")
    try:
        certs = x509.load_pem_x509_certificates(text)
    except (ValueError, x509.InvalidVersion):
        raise VerificationError("dcap.parse", "the PCK certificate chain is not valid PEM X.509") from None
    if not 2 <= len(certs) <= MAX_PCK_CHAIN_CERTS:
        raise VerificationError("dcap.parse", "unexpected number of certificates in the PCK chain",
                                expected="PCK leaf, intermediate CA and optionally the root",
                                found=f"{len(certs)} certificates")
    for index, cert in enumerate(certs):
        # cryptography parses fields lazily; decode every field used below now, so a
        # malformed certificate is one parse refusal rather than an error deep in a check.
        try:
            cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
            cert.not_valid_before_utc, cert.not_valid_after_utc
            cert.extensions
            cert.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension,
                x509.UnsupportedGeneralNameType):
            raise VerificationError("dcap.parse", f"certificate {index} of the PCK chain is malformed") from None
    return certs


def verify_pck_chain(pem: bytes, roots: TrustRoots) -> x509.Certificate:
    """Chain the PCK leaf through its intermediate to the pinned Intel root; return the leaf."""
    root = roots.intel_sgx_root
    if root is None:
        raise VerificationError("dcap.root", "no Intel SGX Root CA is pinned; DCAP quotes cannot be trusted",
                                expected="a pinned Intel SGX Root CA", found="none")
    certs = _load_chain(pem)
    leaf, intermediate = certs[0], certs[1]
    if len(certs) == 3 and certs[2] != root:
        raise VerificationError("dcap.root", "the quote's PCK chain ends in a root other than the pinned one",
                                expected=_fingerprint(root), found=_fingerprint(certs[2]))
    now = roots.now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    for cert, issuer, name in ((leaf, intermediate, "PCK leaf"), (intermediate, root, "PCK intermediate CA")):
        if issuer is not root:
            _require_ca(issuer, name="intermediate CA")
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
            raise VerificationError("dcap.chain", f"the {name} is not issued by {_subject(issuer)}",
                                    expected=_subject(issuer), found=f"{_issuer(cert)} ({type(exc).__name__})") from None
    _require_ca(root, name="pinned root")
    for cert in (leaf, intermediate, root):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise VerificationError(
                "dcap.chain", f"certificate '{_subject(cert)}' is not valid at {now.isoformat()}",
                expected=f"{cert.not_valid_before_utc.isoformat()} .. {cert.not_valid_after_utc.isoformat()}",
                found=now.isoformat())
    return leaf


def _require_ca(cert: x509.Certificate, *, name: str) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise VerificationError("dcap.chain", f"the {name} is not a CA certificate",
                                expected="basicConstraints CA:TRUE", found=_subject(cert))


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _issuer(cert: x509.Certificate) -> str:
    return cert.issuer.rfc4514_string()


def _fingerprint(cert: x509.Certificate) -> str:
    return f"{_subject(cert)} sha256:{cert.fingerprint(hashes.SHA256()).hex()[:16]}"


def tdx_claims(quote: DcapQuote) -> Claims:
    """The facts of a verified TDX quote, as policies see them."""
    td = quote.body
    assert isinstance(td, TdReport)
    # TEE_TCB_SVN bytes are per-component SVNs of the TDX module and SEAM loader; Intel's
    # TCB info lists them by index (tdxtcbcomponents[i]), so they are named by index.
    tcb = {f"tee_tcb_svn_{i}": b for i, b in enumerate(td.tee_tcb_svn)}
    details: dict[str, str | int] = {
        "quote_version": quote.header.version,
        "body_type": quote.body_type,
        "tee_type": f"0x{quote.header.tee_type:08x}",
        "qe_vendor_id": quote.header.qe_vendor_id.hex(),
        "qe_svn": quote.header.qe_svn,
        "pce_svn": quote.header.pce_svn,
        "tee_tcb_svn": td.tee_tcb_svn.hex(),
        "mr_seam": td.mr_seam.hex(),
        "mr_signer_seam": td.mr_signer_seam.hex(),
        "seam_attributes": td.seam_attributes.hex(),
        "td_attributes": td.td_attributes.hex(),
        "xfam": td.xfam.hex(),
        "mr_config_id": td.mr_config_id.hex(),
        "mr_owner": td.mr_owner.hex(),
        "mr_owner_config": td.mr_owner_config.hex(),
    }
    for i, rtmr in enumerate(td.rtmrs):
        details[f"rtmr{i}"] = rtmr.hex()
    if quote.body_type == BODY_TYPE_TDX_15 and td.tee_tcb_svn2 is not None and td.mr_service_td is not None:
        details["tee_tcb_svn2"] = td.tee_tcb_svn2.hex()
        details["mr_service_td"] = td.mr_service_td.hex()
    return Claims(platform=Platform.TDX, measurement=td.mr_td, report_data=td.report_data, debug=td.debug,
                  tcb=tcb, vmpl=None, signer="pck", version=quote.header.version, details=details)


def sgx_claims(quote: DcapQuote) -> Claims:
    """The facts of a verified SGX quote, as policies see them."""
    enclave = quote.body
    assert isinstance(enclave, EnclaveReport)
    details: dict[str, str | int] = {
        "quote_version": quote.header.version,
        "body_type": quote.body_type,
        "tee_type": f"0x{quote.header.tee_type:08x}",
        "qe_vendor_id": quote.header.qe_vendor_id.hex(),
        "qe_svn": quote.header.qe_svn,
        "pce_svn": quote.header.pce_svn,
        "mr_signer": enclave.mr_signer.hex(),
        "isv_prod_id": enclave.isv_prod_id,
        "isv_svn": enclave.isv_svn,
        "config_svn": enclave.config_svn,
        "config_id": enclave.config_id.hex(),
        "cpu_svn": enclave.cpu_svn.hex(),
        "misc_select": enclave.misc_select,
        "attributes_flags": f"0x{enclave.attributes_flags:016x}",
        "attributes_xfrm": f"0x{enclave.attributes_xfrm:016x}",
        "isv_family_id": enclave.isv_family_id.hex(),
        "isv_ext_prod_id": enclave.isv_ext_prod_id.hex(),
    }
    return Claims(platform=Platform.SGX, measurement=enclave.mr_enclave, report_data=enclave.report_data,
                  debug=enclave.debug, tcb={"isv_svn": enclave.isv_svn}, vmpl=None, signer="pck",
                  version=quote.header.version, details=details)
