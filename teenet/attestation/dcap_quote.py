"""Parse Intel DCAP ECDSA quotes (SGX v3/v4/v5, TDX v4/v5) into typed fields; no crypto here.

Layout (all integers little-endian), after Intel's "ECDSA Quote Library API" and the TDX
DCAP quote specification:

    header (48)   version u16, attestation key type u16, TEE type u32 (v3: reserved, 0),
                  QE SVN u16, PCE SVN u16, QE vendor id (16), user data (20)
    body          v3/v4: SGX enclave report (384) or TDX TD report (584), by TEE type;
                  v5: body type u16 (1 SGX 384, 2 TDX 1.0 584, 3 TDX 1.5 648), size u32, body
    u32           length of the signature data that follows
    signature     quote signature r||s (64, big-endian), attestation key x||y (64)
    certification v3: QE report (384), QE report signature (64), QE auth data (u16 + bytes),
                  then certification data (type u16, size u32, data: type 5 = PEM PCK chain);
                  v4/v5: certification data of type 6 whose data holds that same sequence.

The quote signature covers the header and the body (for v5 including its descriptor).
Every length field is bounded by the bytes that remain; bytes after the signature data
are tolerated (real quotes carry padding) and counted in `trailing`. Anything malformed
raises `VerificationError("dcap.parse", ...)`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from teenet.errors import VerificationError

HEADER_SIZE = 48
ENCLAVE_REPORT_SIZE = 384
TD_REPORT_10_SIZE = 584
TD_REPORT_15_SIZE = 648
MAX_QUOTE_SIZE = 1 << 20  # real quotes are ~5 KiB; refuse absurd inputs before parsing

ATTESTATION_KEY_ECDSA_P256 = 2
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
BODY_TYPE_SGX = 1
BODY_TYPE_TDX_10 = 2
BODY_TYPE_TDX_15 = 3
CERT_DATA_PCK_CHAIN = 5
CERT_DATA_QE_REPORT = 6

_BODY_SIZES = {BODY_TYPE_SGX: ENCLAVE_REPORT_SIZE, BODY_TYPE_TDX_10: TD_REPORT_10_SIZE,
               BODY_TYPE_TDX_15: TD_REPORT_15_SIZE}


def _parse_error(message: str) -> VerificationError:
    return VerificationError("dcap.parse", message)


class _Reader:
    """Bounded reads over the quote; every overrun is a `dcap.parse` refusal naming the field."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise _parse_error(f"quote is truncated in {what}: needs {size} bytes at offset {self.pos}, "
                               f"{max(len(self.data) - self.pos, 0)} remain")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos


@dataclass(frozen=True)
class QuoteHeader:
    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True)
class EnclaveReport:
    """An SGX enclave report body (the app enclave in an SGX quote, or the QE report)."""

    raw: bytes
    cpu_svn: bytes
    misc_select: int
    attributes_flags: int
    attributes_xfrm: int
    mr_enclave: bytes
    mr_signer: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    isv_ext_prod_id: bytes
    report_data: bytes

    @property
    def debug(self) -> bool:
        return bool(self.attributes_flags & 0x2)  # SGX ATTRIBUTES.DEBUG is bit 1


@dataclass(frozen=True)
class TdReport:
    """A TDX TD report body: TDX 1.0 (584 bytes) or TDX 1.5 (648, adds TEE_TCB_SVN2, MRSERVICETD)."""

    raw: bytes
    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_service_td: bytes | None = None

    @property
    def debug(self) -> bool:
        return bool(self.td_attributes[0] & 0x1)  # TD_ATTRIBUTES.DEBUG is bit 0


@dataclass(frozen=True)
class QeCertification:
    """What lets a verifier trust the attestation key: the QE report, signed by the PCK key."""

    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes


@dataclass(frozen=True)
class DcapQuote:
    header: QuoteHeader
    body_type: int
    body: EnclaveReport | TdReport
    signed_data: bytes
    signature: bytes
    attestation_key: bytes
    certification: QeCertification
    trailing: int

    @property
    def is_tdx(self) -> bool:
        return isinstance(self.body, TdReport)


def parse_enclave_report(raw: bytes) -> EnclaveReport:
    if len(raw) != ENCLAVE_REPORT_SIZE:
        raise _parse_error(f"enclave report must be {ENCLAVE_REPORT_SIZE} bytes, got {len(raw)}")
    flags, xfrm = struct.unpack_from("<QQ", raw, 48)
    prod_id, svn, config_svn = struct.unpack_from("<HHH", raw, 256)
    return EnclaveReport(
        raw=raw, cpu_svn=raw[0:16], misc_select=struct.unpack_from("<I", raw, 16)[0],
        isv_ext_prod_id=raw[32:48], attributes_flags=flags, attributes_xfrm=xfrm,
        mr_enclave=raw[64:96], mr_signer=raw[128:160], config_id=raw[192:256],
        isv_prod_id=prod_id, isv_svn=svn, config_svn=config_svn,
        isv_family_id=raw[304:320], report_data=raw[320:384])


def parse_td_report(raw: bytes) -> TdReport:
    if len(raw) not in (TD_REPORT_10_SIZE, TD_REPORT_15_SIZE):
        raise _parse_error(f"TD report must be {TD_REPORT_10_SIZE} or {TD_REPORT_15_SIZE} bytes, got {len(raw)}")
    r = _Reader(raw)
    fields = dict(
        tee_tcb_svn=r.take(16, "TEE_TCB_SVN"), mr_seam=r.take(48, "MRSEAM"),
        mr_signer_seam=r.take(48, "MRSIGNERSEAM"), seam_attributes=r.take(8, "SEAMATTRIBUTES"),
        td_attributes=r.take(8, "TDATTRIBUTES"), xfam=r.take(8, "XFAM"), mr_td=r.take(48, "MRTD"),
        mr_config_id=r.take(48, "MRCONFIGID"), mr_owner=r.take(48, "MROWNER"),
        mr_owner_config=r.take(48, "MROWNERCONFIG"))
    rtmrs = tuple(r.take(48, f"RTMR{i}") for i in range(4))
    report_data = r.take(64, "REPORTDATA")
    svn2 = service_td = None
    if len(raw) == TD_REPORT_15_SIZE:
        svn2, service_td = r.take(16, "TEE_TCB_SVN2"), r.take(48, "MRSERVICETD")
    return TdReport(raw=raw, rtmrs=rtmrs, report_data=report_data,  # type: ignore[arg-type]
                    tee_tcb_svn2=svn2, mr_service_td=service_td, **fields)


def _parse_header(r: _Reader) -> QuoteHeader:
    version = r.u16("header.version")
    key_type = r.u16("header.attestation_key_type")
    tee_type = r.u32("header.tee_type")
    qe_svn, pce_svn = r.u16("header.qe_svn"), r.u16("header.pce_svn")
    vendor, user = r.take(16, "header.qe_vendor_id"), r.take(20, "header.user_data")
    if version not in (3, 4, 5):
        raise _parse_error(f"unsupported quote version {version}; expected 3, 4 or 5")
    if key_type != ATTESTATION_KEY_ECDSA_P256:
        raise _parse_error(f"unsupported attestation key type {key_type}; expected 2 (ECDSA-256 with P-256)")
    if tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX):
        raise _parse_error(f"unknown TEE type 0x{tee_type:08x}; expected 0x00000000 (SGX) or 0x00000081 (TDX)")
    if version == 3 and tee_type != TEE_TYPE_SGX:
        raise _parse_error("a version 3 quote can only be an SGX quote")
    return QuoteHeader(version, key_type, tee_type, qe_svn, pce_svn, vendor, user)


def _parse_body(r: _Reader, header: QuoteHeader) -> tuple[int, EnclaveReport | TdReport]:
    if header.version == 5:
        body_type = r.u16("body descriptor type")
        size = r.u32("body descriptor size")
        if body_type not in _BODY_SIZES:
            raise _parse_error(f"unknown v5 body type {body_type}; expected 1 (SGX), 2 (TDX 1.0) or 3 (TDX 1.5)")
        if size != _BODY_SIZES[body_type]:
            raise _parse_error(f"v5 body type {body_type} must be {_BODY_SIZES[body_type]} bytes, "
                               f"descriptor says {size}")
    else:
        body_type = BODY_TYPE_TDX_10 if header.tee_type == TEE_TYPE_TDX else BODY_TYPE_SGX
    is_tdx_body = body_type in (BODY_TYPE_TDX_10, BODY_TYPE_TDX_15)
    if is_tdx_body != (header.tee_type == TEE_TYPE_TDX):
        raise _parse_error(f"body type {body_type} does not match TEE type 0x{header.tee_type:08x}")
    raw = r.take(_BODY_SIZES[body_type], "report body")
    return body_type, (parse_td_report(raw) if is_tdx_body else parse_enclave_report(raw))


def _parse_cert_data_header(r: _Reader, what: str) -> tuple[int, int]:
    cert_type = r.u16(f"{what} type")
    size = r.u32(f"{what} size")
    if size > r.remaining:
        raise _parse_error(f"{what} claims {size} bytes but only {r.remaining} remain")
    return cert_type, size


def _parse_qe_certification(r: _Reader) -> QeCertification:
    """QE report, its signature, QE auth data, then the type-5 PCK chain (all bounded by `r`)."""
    qe_report = parse_enclave_report(r.take(ENCLAVE_REPORT_SIZE, "QE report"))
    qe_signature = r.take(64, "QE report signature")
    auth_size = r.u16("QE auth data size")
    auth = r.take(auth_size, "QE auth data")
    cert_type, size = _parse_cert_data_header(r, "PCK certification data")
    if cert_type != CERT_DATA_PCK_CHAIN:
        raise _parse_error(f"certification data type {cert_type} is not supported; expected 5 (PEM PCK chain)")
    chain = r.take(size, "PCK certificate chain")
    return QeCertification(qe_report, qe_signature, auth, chain)


def parse_quote(raw: bytes) -> DcapQuote:
    """Parse a DCAP ECDSA-P256 quote; raise `VerificationError('dcap.parse')` if malformed."""
    if not isinstance(raw, (bytes, bytearray)):
        raise _parse_error("a quote must be bytes")
    raw = bytes(raw)
    if len(raw) > MAX_QUOTE_SIZE:
        raise _parse_error(f"quote is {len(raw)} bytes; at most {MAX_QUOTE_SIZE} are accepted")
    r = _Reader(raw)
    header = _parse_header(r)
    body_type, body = _parse_body(r, header)
    signed_end = r.pos
    sig_data_size = r.u32("signature data size")
    if sig_data_size > r.remaining:
        raise _parse_error(f"signature data claims {sig_data_size} bytes but only {r.remaining} remain")
    sig = _Reader(r.take(sig_data_size, "signature data"))
    signature = sig.take(64, "quote signature")
    attestation_key = sig.take(64, "attestation key")
    if header.version == 3:
        certification = _parse_qe_certification(sig)
    else:
        cert_type, size = _parse_cert_data_header(sig, "certification data")
        if cert_type != CERT_DATA_QE_REPORT:
            raise _parse_error(f"certification data type {cert_type} is not supported; "
                               "expected 6 (QE report certification data)")
        inner = _Reader(sig.take(size, "QE report certification data"))
        certification = _parse_qe_certification(inner)
    return DcapQuote(header=header, body_type=body_type, body=body, signed_data=raw[:signed_end],
                     signature=signature, attestation_key=attestation_key,
                     certification=certification, trailing=r.remaining)


def detect_dcap_platform(raw: bytes) -> str | None:
    """'tdx' or 'sgx' if `raw` starts like a DCAP ECDSA quote header, else None (no verification)."""
    if len(raw) < HEADER_SIZE:
        return None
    version, key_type, tee_type = struct.unpack_from("<HHI", raw, 0)
    if version not in (3, 4, 5) or key_type != ATTESTATION_KEY_ECDSA_P256:
        return None
    return {TEE_TYPE_SGX: "sgx", TEE_TYPE_TDX: "tdx"}.get(tee_type)
