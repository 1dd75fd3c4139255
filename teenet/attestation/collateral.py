"""TCB status of a verified DCAP quote from Intel collateral (TCB info v3, QE identity v2).

Entry points, each failing closed with a `VerificationError` that names its check:

  parse_pck_extensions(pck_leaf)       FMSPC, PCE-ID, SGX TCB comp SVNs, PCESVN, CPUSVN from
                                       the PCK leaf's SGX extension (1.2.840.113741.1.13.1)
                                       -> "dcap.pck_extensions"
  verify_tcb_info(doc, chain, root, now)      -> "dcap.tcb_info"
  verify_qe_identity(doc, chain, root, now)   -> "dcap.qe_identity_collateral"
      the signature (ECDSA P-256/SHA-256, hex r||s) covers the exact bytes of the signed
      object as they appear in the document; the signing certificate must be issued by
      the pinned Intel SGX Root CA; issueDate <= now <= nextUpdate.
  evaluate_tcb_status(quote, pck, tcb_info, qe_identity) -> TcbStatus  ("dcap.tcb_status")
      Intel's algorithm: FMSPC and PCE-ID match; the first TCB level (in document order)
      whose sgxtcbcomponents <= the PCK comp SVNs, pcesvn <= PCK PCESVN and, for TDX,
      tdxtcbcomponents <= TEE_TCB_SVN (from index 2 when TEE_TCB_SVN[1] > 0) gives the
      status; no level => "OutOfDate" with matched_level None. The QE report must match
      the QE identity (MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES under their masks);
      its ISVSVN selects the QE's level, and a QE that is OutOfDate or Revoked lowers the
      platform status the way Intel's QVL does. For TDX, the TDX module is checked too:
      TEE_TCB_SVN[1] is its major version, checked against 'tdxModule' (0) or the
      'tdxModuleIdentities' entry TDX_<version> (MRSIGNERSEAM, SEAM attributes under the
      mask); that identity's first level with isvsvn <= TEE_TCB_SVN[0] grades the module,
      and an OutOfDate or Revoked module lowers the platform status ("dcap.tdx_module").
  verify_with_collateral(evidence, roots, tcb_info_json, qe_identity_json, chain_pem)
      the existing DCAP verification, then the above; adds details["tcb_status"].
  verify_with_collateral_dir(evidence, roots, IntelCollateral(dir))
      the same with the documents read from a collateral directory ("dcap.collateral" when
      one is missing); verify_platform_evidence uses it when TrustRoots.intel_collateral
      is set, and the `tcb_status` policy (IntelTcbStatusIn) decides on the result.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec

from teenet.attestation.dcap import (
    _require_ca,
    _verify_p256,
    sgx_claims,
    tdx_claims,
    verify_quote,
)
from teenet.attestation.dcap_quote import DcapQuote, TdReport
from teenet.attestation.evidence import Claims, Evidence, IntelCollateral, Platform, TrustRoots
from teenet.der import DerError, der_tlv
from teenet.errors import VerificationError

SGX_EXTENSIONS_OID = "1.2.840.113741.1.13.1"
_TCB_OID = SGX_EXTENSIONS_OID + ".2"
_PCEID_OID = SGX_EXTENSIONS_OID + ".3"
_FMSPC_OID = SGX_EXTENSIONS_OID + ".4"

TCB_STATUSES = frozenset({
    "UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
    "OutOfDate", "OutOfDateConfigurationNeeded", "Revoked"})
QE_STATUSES = frozenset({"UpToDate", "OutOfDate", "Revoked"})
MAX_COLLATERAL_SIZE = 1 << 20   # Intel's TCB info is tens of KiB
MAX_TCB_LEVELS = 256
MAX_DER_ITEMS = 64


# ---------------------------------------------------------------- PCK certificate extensions

@dataclass(frozen=True)
class PckTcb:
    fmspc: bytes           # 6 bytes
    pce_id: bytes          # 2 bytes
    comp_svns: tuple[int, ...]  # SGX TCB comp01..comp16
    pce_svn: int
    cpu_svn: bytes         # 16 bytes


def _pck_error(message: str) -> VerificationError:
    return VerificationError("dcap.pck_extensions", message)


def _der_items(data: bytes, what: str) -> list[tuple[int, bytes]]:
    """The (tag, contents) TLVs that make up `data`, bounded; any overrun is a refusal."""
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(items) >= MAX_DER_ITEMS:
            raise _pck_error(f"too many DER items in {what}")
        try:
            tag, start, pos = der_tlv(data, pos)
        except DerError as exc:
            raise _pck_error(f"{exc} in {what}") from None
        items.append((tag, data[start:pos]))
    return items


def _der_oid(contents: bytes) -> str:
    if not contents or len(contents) > 32 or contents[-1] & 0x80:
        raise _pck_error("malformed OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in contents:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def _oid_value_pairs(contents: bytes, what: str) -> dict[str, tuple[int, bytes]]:
    """A SEQUENCE OF SEQUENCE { OID, value } as {oid: (tag, contents)}; duplicates refused."""
    pairs: dict[str, tuple[int, bytes]] = {}
    for tag, body in _der_items(contents, what):
        if tag != 0x30:
            raise _pck_error(f"{what} holds a non-SEQUENCE entry")
        inner = _der_items(body, what)
        if len(inner) != 2 or inner[0][0] != 0x06:
            raise _pck_error(f"{what} entry is not (OID, value)")
        oid = _der_oid(inner[0][1])
        if oid in pairs:
            raise _pck_error(f"{what} repeats {oid}")
        pairs[oid] = inner[1]
    return pairs


def _der_uint(item: tuple[int, bytes], name: str, maximum: int) -> int:
    tag, body = item
    if tag != 0x02 or not body or body[0] & 0x80 or len(body) > 3:
        raise _pck_error(f"{name} is not a small non-negative INTEGER")
    value = int.from_bytes(body, "big")
    if value > maximum:
        raise _pck_error(f"{name} is out of range")
    return value


def _der_octets(item: tuple[int, bytes] | None, name: str, size: int) -> bytes:
    if item is None or item[0] != 0x04 or len(item[1]) != size:
        raise _pck_error(f"{name} is missing or not a {size}-byte OCTET STRING")
    return item[1]


def parse_pck_extensions(pck_leaf: x509.Certificate) -> PckTcb:
    """The SGX extension values of a PCK leaf certificate; malformed -> dcap.pck_extensions."""
    try:
        ext = pck_leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSIONS_OID))
    except x509.ExtensionNotFound:
        raise _pck_error("the PCK certificate has no Intel SGX extensions") from None
    except (ValueError, x509.DuplicateExtension):
        raise _pck_error("the PCK certificate's extensions are malformed") from None
    raw = getattr(ext.value, "value", None)
    if not isinstance(raw, bytes):
        raise _pck_error("the Intel SGX extension is not an opaque value")
    outer = _der_items(raw, "SGX extensions")
    if len(outer) != 1 or outer[0][0] != 0x30:
        raise _pck_error("the SGX extensions are not one SEQUENCE")
    fields = _oid_value_pairs(outer[0][1], "SGX extensions")
    tcb_item = fields.get(_TCB_OID)
    if tcb_item is None or tcb_item[0] != 0x30:
        raise _pck_error("the TCB entry is missing or not a SEQUENCE")
    tcb = _oid_value_pairs(tcb_item[1], "SGX TCB")
    comps = []
    for i in range(1, 17):
        item = tcb.get(f"{_TCB_OID}.{i}")
        if item is None:
            raise _pck_error(f"SGX TCB comp{i:02d} SVN is missing")
        comps.append(_der_uint(item, f"SGX TCB comp{i:02d} SVN", 255))
    pce_item = tcb.get(f"{_TCB_OID}.17")
    if pce_item is None:
        raise _pck_error("PCESVN is missing")
    return PckTcb(fmspc=_der_octets(fields.get(_FMSPC_OID), "FMSPC", 6),
                  pce_id=_der_octets(fields.get(_PCEID_OID), "PCE-ID", 2),
                  comp_svns=tuple(comps), pce_svn=_der_uint(pce_item, "PCESVN", 0xFFFF),
                  cpu_svn=_der_octets(tcb.get(f"{_TCB_OID}.18"), "CPUSVN", 16))


# ---------------------------------------------------------------- signed collateral

@dataclass(frozen=True)
class QeLevel:
    isv_svn: int
    status: str
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True)
class TcbLevel:
    sgx_svns: tuple[int, ...]
    pce_svn: int
    tdx_svns: tuple[int, ...] | None
    status: str
    advisory_ids: tuple[str, ...]
    tcb_date: str


@dataclass(frozen=True)
class TdxModuleIdentity:
    """Who signs the TDX module and with which SEAM attributes ("tdxModule" has no levels and
    id ""; each of "tdxModuleIdentities" is one module major version, e.g. "TDX_01")."""

    id: str
    mr_signer: bytes
    attributes: bytes
    attributes_mask: bytes
    levels: tuple[QeLevel, ...] = ()  # (isvsvn, status, advisories), first match wins


@dataclass(frozen=True)
class TcbInfo:
    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    evaluation_data_number: int
    levels: tuple[TcbLevel, ...]
    tdx_module: TdxModuleIdentity | None = None
    tdx_module_identities: tuple[TdxModuleIdentity, ...] = ()


@dataclass(frozen=True)
class QeIdentity:
    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    mr_signer: bytes
    isv_prod_id: int
    misc_select: int
    misc_select_mask: int
    attributes: bytes
    attributes_mask: bytes
    levels: tuple[QeLevel, ...]


@dataclass(frozen=True)
class TcbStatus:
    status: str
    advisory_ids: tuple[str, ...]
    matched_level: int | None  # index into tcb_info.levels, None if no level matched
    qe_status: str | None = None
    tdx_module_status: str | None = None  # TDX module major version > 0 only


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate key")
        out[key] = value
    return out


def _signed_member(document: bytes, member: str, check: str) -> tuple[dict[str, Any], bytes, bytes]:
    """({member parsed}, the member's exact bytes in the document, signature bytes)."""
    if not isinstance(document, (bytes, bytearray)) or len(document) > MAX_COLLATERAL_SIZE:
        raise VerificationError(check, "collateral must be bytes of at most 1 MiB")
    try:
        text = bytes(document).decode("utf-8")
        json.loads(text, object_pairs_hook=_no_duplicates)  # whole-document validity, no dup keys
        decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates)
        pos = _skip_ws(text, 0)
        if text[pos:pos + 1] != "{":
            raise ValueError("not an object")
        pos = _skip_ws(text, pos + 1)
        spans: dict[str, tuple[int, int, Any]] = {}
        while text[pos:pos + 1] != "}":
            key, pos = decoder.raw_decode(text, pos)
            pos = _skip_ws(text, pos)
            if not isinstance(key, str) or text[pos:pos + 1] != ":":
                raise ValueError("bad member")
            start = _skip_ws(text, pos + 1)
            value, end = decoder.raw_decode(text, start)
            spans[key] = (start, end, value)
            pos = _skip_ws(text, end)
            if text[pos:pos + 1] == ",":
                pos = _skip_ws(text, pos + 1)
            elif text[pos:pos + 1] != "}":
                raise ValueError("bad separator")
            if len(spans) > 8:
                raise ValueError("too many members")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise VerificationError(check, "the collateral is not a valid JSON document") from None
    if set(spans) != {member, "signature"}:
        raise VerificationError(check, "the collateral has unexpected top-level members",
                                expected=f"{member}, signature", found=", ".join(sorted(spans)))
    start, end, body = spans[member]
    signature = spans["signature"][2]
    if not isinstance(body, dict) or not isinstance(signature, str) or len(signature) != 128:
        raise VerificationError(check, f"'{member}' must be an object and 'signature' 128 hex digits")
    try:
        sig = bytes.fromhex(signature)
    except ValueError:
        raise VerificationError(check, "the signature is not hex") from None
    return body, text[start:end].encode("utf-8"), sig


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _signing_key(chain_pem: bytes, root: x509.Certificate | None, now: datetime,
                 check: str) -> ec.EllipticCurvePublicKey:
    """The collateral signing certificate's key, once it is shown to be issued by `root`."""
    if root is None:
        raise VerificationError(check, "no Intel SGX Root CA is pinned; collateral cannot be trusted")
    try:
        certs = x509.load_pem_x509_certificates(bytes(chain_pem).rstrip(b"\x00"))
    except (ValueError, TypeError, x509.InvalidVersion):
        raise VerificationError(check, "the collateral signing chain is not valid PEM X.509") from None
    if not 1 <= len(certs) <= 2 or (len(certs) == 2 and certs[1] != root):
        raise VerificationError(check, "the signing chain must be the signing certificate, then optionally "
                                "the pinned root", found=f"{len(certs)} certificates")
    signer = certs[0]
    try:
        _require_ca(root, name="pinned root")
        signer.verify_directly_issued_by(root)
        key = signer.public_key()
        valid = signer.not_valid_before_utc <= now <= signer.not_valid_after_utc and \
            root.not_valid_before_utc <= now <= root.not_valid_after_utc
    except VerificationError as exc:
        raise VerificationError(check, str(exc)) from None
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise VerificationError(check, "the collateral signing certificate is not issued by the pinned root",
                                expected=root.subject.rfc4514_string(),
                                found=signer.issuer.rfc4514_string()) from None
    if not valid:
        raise VerificationError(check, f"the collateral signing chain is not valid at {now.isoformat()}")
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise VerificationError(check, "the collateral signing key is not ECDSA P-256")
    return key


def _now(now: datetime | None) -> datetime:
    now = now or datetime.now(timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def _verified_body(document: bytes, member: str, chain_pem: bytes, root: x509.Certificate | None,
                   now: datetime, check: str) -> dict[str, Any]:
    body, signed, sig = _signed_member(document, member, check)
    key = _signing_key(chain_pem, root, now, check)
    _verify_p256(key, sig, signed, check, f"'{member}' is not signed by the collateral signing certificate")
    return body


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], check: str) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise VerificationError(check, f"field '{name}' is missing or has the wrong type")
    return value


def _hex(body: dict[str, Any], name: str, size: int, check: str) -> bytes:
    value = _field(body, name, str, check)
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise VerificationError(check, f"field '{name}' is not hex") from None
    if len(raw) != size:
        raise VerificationError(check, f"field '{name}' must be {size} bytes", found=f"{len(raw)} bytes")
    return raw


def _dates(body: dict[str, Any], now: datetime, check: str) -> tuple[datetime, datetime]:
    out = []
    for name in ("issueDate", "nextUpdate"):
        try:
            stamp = datetime.fromisoformat(_field(body, name, str, check))
        except ValueError:
            raise VerificationError(check, f"field '{name}' is not an ISO 8601 time") from None
        if stamp.tzinfo is None:
            raise VerificationError(check, f"field '{name}' has no time zone")
        out.append(stamp)
    issue, next_update = out
    if not issue <= now <= next_update:
        raise VerificationError(check, f"the collateral is not current at {now.isoformat()}",
                                expected=f"{issue.isoformat()} .. {next_update.isoformat()}",
                                found=now.isoformat())
    return issue, next_update


def _svn_list(value: Any, name: str, check: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) != 16:
        raise VerificationError(check, f"'{name}' must list 16 components")
    svns = []
    for comp in value:
        svn = comp.get("svn") if isinstance(comp, dict) else None
        if not isinstance(svn, int) or isinstance(svn, bool) or not 0 <= svn <= 255:
            raise VerificationError(check, f"a component of '{name}' has no valid svn")
        svns.append(svn)
    return tuple(svns)


def _advisories(level: dict[str, Any], check: str) -> tuple[str, ...]:
    ids = level.get("advisoryIDs", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise VerificationError(check, "'advisoryIDs' must be a list of strings")
    return tuple(ids)


def _levels(body: dict, statuses, what: str, check: str) -> list[tuple[dict, dict, str]]:
    """The checked (level, tcb, tcbStatus) triples of a collateral document's 'tcbLevels'."""
    raw_levels = _field(body, "tcbLevels", list, check)
    if not 1 <= len(raw_levels) <= MAX_TCB_LEVELS:
        raise VerificationError(check, f"'tcbLevels' must hold 1..{MAX_TCB_LEVELS} levels")
    out = []
    for level in raw_levels:
        tcb = level.get("tcb") if isinstance(level, dict) else None
        if not isinstance(tcb, dict):
            raise VerificationError(check, f"{what} has no 'tcb' object")
        status = _field(level, "tcbStatus", str, check)
        if status not in statuses:
            raise VerificationError(check, f"{what} has an unknown tcbStatus", found=status[:40])
        out.append((level, tcb, status))
    return out


def verify_tcb_info(tcb_info_json: bytes, signing_chain_pem: bytes, root: x509.Certificate | None,
                    now: datetime | None = None) -> TcbInfo:
    """Check Intel's signature, the dates and the shape of a TCB Info v3 document."""
    check = "dcap.tcb_info"
    at = _now(now)
    body = _verified_body(tcb_info_json, "tcbInfo", signing_chain_pem, root, at, check)
    tcb_id = _field(body, "id", str, check)
    version = _field(body, "version", int, check)
    if tcb_id not in ("SGX", "TDX") or version != 3:
        raise VerificationError(check, "unsupported TCB info", expected="id SGX or TDX, version 3",
                                found=f"id {tcb_id}, version {version}")
    issue, next_update = _dates(body, at, check)
    levels = []
    for level, tcb, status in _levels(body, TCB_STATUSES, "a TCB level", check):
        pce = _field(tcb, "pcesvn", int, check)
        tdx = _svn_list(tcb.get("tdxtcbcomponents"), "tdxtcbcomponents", check) if tcb_id == "TDX" else None
        levels.append(TcbLevel(sgx_svns=_svn_list(tcb.get("sgxtcbcomponents"), "sgxtcbcomponents", check),
                               pce_svn=pce, tdx_svns=tdx, status=status,
                               advisory_ids=_advisories(level, check),
                               tcb_date=str(level.get("tcbDate", ""))))
    module, identities = (_tdx_modules(body, check) if tcb_id == "TDX" else (None, ()))
    return TcbInfo(id=tcb_id, version=version, issue_date=issue, next_update=next_update,
                   fmspc=_hex(body, "fmspc", 6, check), pce_id=_hex(body, "pceId", 2, check),
                   evaluation_data_number=_field(body, "tcbEvaluationDataNumber", int, check),
                   levels=tuple(levels), tdx_module=module, tdx_module_identities=identities)


def _tdx_module(entry: Any, what: str, check: str, *, with_levels: bool) -> TdxModuleIdentity:
    if not isinstance(entry, dict):
        raise VerificationError(check, f"{what} must be an object")
    levels: list[QeLevel] = []
    if with_levels:
        for level, tcb, status in _levels(entry, QE_STATUSES, f"a level of {what}", check):
            levels.append(QeLevel(isv_svn=_field(tcb, "isvsvn", int, check), status=status,
                                  advisory_ids=_advisories(level, check)))
    return TdxModuleIdentity(id=_field(entry, "id", str, check) if with_levels else "",
                             mr_signer=_hex(entry, "mrsigner", 48, check),
                             attributes=_hex(entry, "attributes", 8, check),
                             attributes_mask=_hex(entry, "attributesMask", 8, check),
                             levels=tuple(levels))


def _tdx_modules(body: dict, check: str) -> tuple[TdxModuleIdentity, tuple[TdxModuleIdentity, ...]]:
    """TDX TCB info: 'tdxModule' (required) and 'tdxModuleIdentities' (optional list)."""
    if "tdxModule" not in body:
        raise VerificationError(check, "TDX TCB info without 'tdxModule'", expected="tdxModule", found="absent")
    module = _tdx_module(body["tdxModule"], "'tdxModule'", check, with_levels=False)
    raw = body.get("tdxModuleIdentities", [])
    if not isinstance(raw, list) or len(raw) > MAX_TCB_LEVELS:
        raise VerificationError(check, f"'tdxModuleIdentities' must be a list of at most {MAX_TCB_LEVELS}")
    return module, tuple(_tdx_module(e, "a TDX module identity", check, with_levels=True) for e in raw)


def verify_qe_identity(qe_identity_json: bytes, signing_chain_pem: bytes, root: x509.Certificate | None,
                       now: datetime | None = None) -> QeIdentity:
    """Check Intel's signature, the dates and the shape of a QE identity (v2) document."""
    check = "dcap.qe_identity_collateral"
    at = _now(now)
    body = _verified_body(qe_identity_json, "enclaveIdentity", signing_chain_pem, root, at, check)
    qe_id = _field(body, "id", str, check)
    version = _field(body, "version", int, check)
    if qe_id not in ("QE", "TD_QE") or version != 2:
        raise VerificationError(check, "unsupported enclave identity", expected="id QE or TD_QE, version 2",
                                found=f"id {qe_id}, version {version}")
    issue, next_update = _dates(body, at, check)
    levels = []
    for level, tcb, status in _levels(body, QE_STATUSES, "a QE TCB level", check):
        levels.append(QeLevel(isv_svn=_field(tcb, "isvsvn", int, check), status=status,
                              advisory_ids=_advisories(level, check)))
    return QeIdentity(
        id=qe_id, version=version, issue_date=issue, next_update=next_update,
        mr_signer=_hex(body, "mrsigner", 32, check), isv_prod_id=_field(body, "isvprodid", int, check),
        misc_select=int.from_bytes(_hex(body, "miscselect", 4, check), "big"),
        misc_select_mask=int.from_bytes(_hex(body, "miscselectMask", 4, check), "big"),
        attributes=_hex(body, "attributes", 16, check), attributes_mask=_hex(body, "attributesMask", 16, check),
        levels=tuple(levels))


# ---------------------------------------------------------------- evaluation

def _tdx_svns_ok(tee_tcb_svn: bytes, level_svns: tuple[int, ...]) -> bool:
    # Intel: compare indexes 0..15, or 2..15 when TEE_TCB_SVN[1] > 0 (the TDX module's
    # major version; its own SVN is then judged through the TDX module identities).
    start = 2 if tee_tcb_svn[1] > 0 else 0
    return all(tee_tcb_svn[i] >= level_svns[i] for i in range(start, 16))


def _qe_level(quote: DcapQuote, identity: QeIdentity) -> QeLevel | None:
    check = "dcap.qe_identity_collateral"
    qe = quote.certification.qe_report
    expected_id = "TD_QE" if isinstance(quote.body, TdReport) else "QE"
    if identity.id != expected_id:
        raise VerificationError(check, "the QE identity is for another quoting enclave",
                                expected=expected_id, found=identity.id)
    if not hmac.compare_digest(qe.mr_signer, identity.mr_signer):
        raise VerificationError(check, "the QE's MRSIGNER does not match the QE identity",
                                expected=identity.mr_signer.hex(), found=qe.mr_signer.hex())
    if qe.isv_prod_id != identity.isv_prod_id:
        raise VerificationError(check, "the QE's ISVPRODID does not match the QE identity",
                                expected=str(identity.isv_prod_id), found=str(qe.isv_prod_id))
    mask = identity.misc_select_mask
    if qe.misc_select & mask != identity.misc_select & mask:
        raise VerificationError(check, "the QE's MISCSELECT does not match the QE identity",
                                expected=f"0x{identity.misc_select & mask:08x}", found=f"0x{qe.misc_select & mask:08x}")
    attrs = qe.raw[48:64]
    masked = bytes(a & m for a, m in zip(attrs, identity.attributes_mask))
    wanted = bytes(a & m for a, m in zip(identity.attributes, identity.attributes_mask))
    if masked != wanted:
        raise VerificationError(check, "the QE's ATTRIBUTES do not match the QE identity",
                                expected=wanted.hex(), found=masked.hex())
    for level in identity.levels:
        if qe.isv_svn >= level.isv_svn:
            return level
    return None


def evaluate_tcb_status(quote: DcapQuote, pck: PckTcb, tcb_info: TcbInfo,
                        qe_identity: QeIdentity | None) -> TcbStatus:
    """Intel's TCB level matching for a quote already verified by `dcap.verify_quote`."""
    check = "dcap.tcb_status"
    is_tdx = isinstance(quote.body, TdReport)
    if tcb_info.id != ("TDX" if is_tdx else "SGX"):
        raise VerificationError(check, "the TCB info is for another TEE type",
                                expected="TDX" if is_tdx else "SGX", found=tcb_info.id)
    if not hmac.compare_digest(pck.fmspc, tcb_info.fmspc):
        raise VerificationError(check, "the TCB info is for another platform (FMSPC)",
                                expected=pck.fmspc.hex(), found=tcb_info.fmspc.hex())
    if not hmac.compare_digest(pck.pce_id, tcb_info.pce_id):
        raise VerificationError(check, "the TCB info is for another PCE (PCE-ID)",
                                expected=pck.pce_id.hex(), found=tcb_info.pce_id.hex())
    status, advisories, matched = "OutOfDate", (), None
    for index, level in enumerate(tcb_info.levels):
        if not all(p >= s for p, s in zip(pck.comp_svns, level.sgx_svns)) or pck.pce_svn < level.pce_svn:
            continue
        if is_tdx:
            assert isinstance(quote.body, TdReport) and level.tdx_svns is not None
            if not _tdx_svns_ok(quote.body.tee_tcb_svn, level.tdx_svns):
                continue
        status, advisories, matched = level.status, level.advisory_ids, index
        break
    module_status = None
    if is_tdx:
        assert isinstance(quote.body, TdReport)
        module_status, module_advisories = _tdx_module_status(quote.body, tcb_info)
        advisories = tuple(dict.fromkeys(tuple(advisories) + module_advisories))
        if module_status == "Revoked":
            status = "Revoked"
        elif module_status == "OutOfDate":
            status = {"UpToDate": "OutOfDate", "SWHardeningNeeded": "OutOfDate",
                      "ConfigurationNeeded": "OutOfDateConfigurationNeeded",
                      "ConfigurationAndSWHardeningNeeded": "OutOfDateConfigurationNeeded"}.get(status, status)
    qe_status = None
    if qe_identity is not None:
        qe_level = _qe_level(quote, qe_identity)
        qe_status = qe_level.status if qe_level else "OutOfDate"
        if qe_level:
            advisories = tuple(dict.fromkeys(advisories + qe_level.advisory_ids))
        if qe_status == "Revoked":
            status = "Revoked"
        elif qe_status == "OutOfDate" and status != "Revoked":
            needs_config = status in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
                                      "OutOfDateConfigurationNeeded")
            status = "OutOfDateConfigurationNeeded" if needs_config else "OutOfDate"
    return TcbStatus(status=status, advisory_ids=tuple(advisories), matched_level=matched, qe_status=qe_status,
                     tdx_module_status=module_status)


def _tdx_module_status(report: TdReport, tcb_info: TcbInfo) -> tuple[str | None, tuple[str, ...]]:
    """Intel's TDX module check: TEE_TCB_SVN[1] is the module's major version and [0] its
    SVN. Version 0 is checked against 'tdxModule' (no status of its own); a later version
    against the 'tdxModuleIdentities' entry "TDX_<version as two hex digits>", whose first
    level with isvsvn <= the module's SVN gives the module's status. The module must be
    signed by the MRSIGNERSEAM the collateral names, with its SEAM attributes (under the mask).
    A version or SVN the collateral does not cover is refused ("dcap.tdx_module")."""
    check = "dcap.tdx_module"
    svn, version = report.tee_tcb_svn[0], report.tee_tcb_svn[1]
    status: str | None = None
    advisories: tuple[str, ...] = ()
    if version == 0:
        expected = tcb_info.tdx_module
        if expected is None:
            raise VerificationError(check, "the TCB info has no 'tdxModule'")
    else:
        name = f"TDX_{version:02X}"
        expected = next((m for m in tcb_info.tdx_module_identities if m.id.upper() == name), None)
        if expected is None:
            raise VerificationError(check, "the TCB info has no identity for this TDX module version",
                                    expected=f"{name} in tdxModuleIdentities",
                                    found=", ".join(m.id for m in tcb_info.tdx_module_identities) or "none")
        level = next((lv for lv in expected.levels if svn >= lv.isv_svn), None)
        if level is None:
            raise VerificationError(check, "the TDX module's SVN is below every level Intel lists for it",
                                    expected=f">= {min(lv.isv_svn for lv in expected.levels)}", found=str(svn))
        status, advisories = level.status, level.advisory_ids
    if not hmac.compare_digest(report.mr_signer_seam, expected.mr_signer):
        raise VerificationError(check, "the TDX module is not signed by the signer Intel's collateral names",
                                expected=expected.mr_signer.hex()[:16] + "...",
                                found=report.mr_signer_seam.hex()[:16] + "...")
    mask = expected.attributes_mask
    got = bytes(a & m for a, m in zip(report.seam_attributes, mask))
    want = bytes(a & m for a, m in zip(expected.attributes, mask))
    if got != want:
        raise VerificationError(check, "the TDX module's SEAM attributes differ from Intel's collateral",
                                expected=want.hex(), found=got.hex())
    return status, advisories


@dataclass(frozen=True)
class TcbStatusIn:
    """Policy: the TCB status must be one of `allowed` (default: UpToDate only)."""

    allowed: frozenset[str] = frozenset({"UpToDate"})

    def check(self, result: TcbStatus) -> None:
        if result.status not in self.allowed:
            raise VerificationError("dcap.tcb_status", "the platform's TCB status is not allowed",
                                    expected=", ".join(sorted(self.allowed)), found=result.status)


def verify_with_collateral(evidence: Evidence, roots: TrustRoots, tcb_info_json: bytes,
                           qe_identity_json: bytes | None, signing_chain_pem: bytes, *,
                           collateral_root: x509.Certificate | None = None,
                           policy: TcbStatusIn | None = None) -> tuple[Claims, TcbStatus]:
    """DCAP verification, then TCB status from collateral; `details["tcb_status"]` is added.

    `collateral_root` defaults to `roots.intel_sgx_root` (Intel signs both with one root).
    With `policy`, a status outside `policy.allowed` is refused ("dcap.tcb_status").
    """
    quote, pck = _verified_quote(evidence, roots)
    return _with_status(quote, pck, roots, tcb_info_json, qe_identity_json, signing_chain_pem,
                        collateral_root, policy)


def _verified_quote(evidence: Evidence, roots: TrustRoots) -> tuple[DcapQuote, PckTcb]:
    if evidence.platform not in (Platform.TDX, Platform.SGX):
        raise VerificationError("dcap.tee_type", "collateral applies to TDX and SGX evidence only",
                                found=evidence.platform.value)
    quote = verify_quote(evidence.report, roots)
    if quote.is_tdx != (evidence.platform is Platform.TDX):
        raise VerificationError("dcap.tee_type", "the evidence label and the quote's TEE type differ",
                                expected=evidence.platform.value, found=f"0x{quote.header.tee_type:08x}")
    leaf = x509.load_pem_x509_certificates(quote.certification.pck_chain_pem.rstrip(b"\x00"))[0]
    return quote, parse_pck_extensions(leaf)


def _with_status(quote: DcapQuote, pck: PckTcb, roots: TrustRoots, tcb_info_json: bytes,
                 qe_identity_json: bytes | None, signing_chain_pem: bytes,
                 collateral_root: x509.Certificate | None, policy: TcbStatusIn | None) -> tuple[Claims, TcbStatus]:
    claims = tdx_claims(quote) if quote.is_tdx else sgx_claims(quote)
    root = collateral_root if collateral_root is not None else roots.intel_sgx_root
    tcb_info = verify_tcb_info(tcb_info_json, signing_chain_pem, root, roots.now)
    qe_identity = (verify_qe_identity(qe_identity_json, signing_chain_pem, root, roots.now)
                   if qe_identity_json is not None else None)
    result = evaluate_tcb_status(quote, pck, tcb_info, qe_identity)
    if policy is not None:
        policy.check(result)
    details = dict(claims.details)
    details["tcb_status"] = result.status
    details["tcb_advisory_ids"] = ",".join(result.advisory_ids)
    if result.tdx_module_status is not None:
        details["tdx_module_tcb_status"] = result.tdx_module_status
    return replace(claims, details=details), result


def verify_with_collateral_dir(evidence: Evidence, roots: TrustRoots, collateral: IntelCollateral) -> Claims:
    """DCAP verification, then TCB status from the collateral directory (layout in
    `IntelCollateral`): the TCB info for the PCK's FMSPC and the QE identity, both required.
    A missing or unreadable file is refused ("dcap.collateral") naming the file."""
    quote, pck = _verified_quote(evidence, roots)
    base = Path(collateral.path)
    sub = base / ("tdx" if quote.is_tdx else "sgx")
    fmspc = pck.fmspc.hex().upper()
    candidates = [sub / f"tcb-info-{fmspc}.json", sub / f"tcb-info-{fmspc.lower()}.json"]
    tcb_path = next((p for p in candidates if p.is_file()), candidates[0])
    tcb_info = _read_collateral(tcb_path, f"TCB info for FMSPC {fmspc}")
    qe_identity = _read_collateral(sub / "qe-identity.json", "QE identity")
    chain = _read_collateral(base / "tcb-signing-chain.pem", "TCB signing chain")
    if collateral.check_crls:
        check_pck_revocation(quote.certification.pck_chain_pem, load_crls(base / "crl"), roots.now)
    claims, _ = _with_status(quote, pck, roots, tcb_info, qe_identity, chain, collateral.root, None)
    return claims


MAX_CRL_FILES = 16


def load_crls(directory: Path) -> list[x509.CertificateRevocationList]:
    """Every CRL in `directory` (*.crl, *.der: DER or PEM; *.pem: PEM)."""
    if not directory.is_dir():
        raise VerificationError("dcap.crl", "no CRL directory in the collateral",
                                expected=str(directory), found="absent")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".crl", ".der", ".pem") and p.is_file())
    if len(files) > MAX_CRL_FILES:
        raise VerificationError("dcap.crl", f"more than {MAX_CRL_FILES} CRL files", found=str(directory))
    return [parse_crl(_read_collateral(path, "CRL"), str(path)) for path in files]


def parse_crl(data: bytes, source: str) -> x509.CertificateRevocationList:
    """A CRL in DER or PEM; anything else is refused as "dcap.crl" naming `source`."""
    try:
        return (x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----")
                else x509.load_der_x509_crl(data))
    except ValueError:
        raise VerificationError("dcap.crl", "not a CRL (DER or PEM)", found=source) from None


def check_pck_revocation(chain_pem: bytes, crls: list[x509.CertificateRevocationList],
                         now: datetime | None = None) -> None:
    """Each certificate of a PCK chain below its root (the PCK leaf and its CA) must be
    covered by a CRL from its issuer: signed by the issuer's key, current (thisUpdate <= now
    <= nextUpdate), and not listing the certificate's serial number. Refused as "dcap.crl"
    (no usable CRL) or "dcap.revoked"."""
    at = _now(now)
    certs = x509.load_pem_x509_certificates(chain_pem.rstrip(b"\x00"))
    if len(certs) < 3:
        raise VerificationError("dcap.crl", "the PCK chain has no root to check revocation up to",
                                expected="leaf, CA, root", found=f"{len(certs)} certificate(s)")
    for cert, issuer in zip(certs[:-1], certs[1:]):
        name = issuer.subject.rfc4514_string()
        candidates = [c for c in crls if c.issuer == issuer.subject]
        if not candidates:
            raise VerificationError("dcap.crl", "no CRL from this issuer in the collateral", expected=name,
                                    found=", ".join(c.issuer.rfc4514_string() for c in crls) or "none")
        crl = max(candidates, key=lambda c: c.last_update_utc)
        try:
            signed = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        except (TypeError, ValueError, UnsupportedAlgorithm):
            signed = False
        if not signed:
            raise VerificationError("dcap.crl", "the CRL is not signed by its issuer's key", expected=name)
        next_update = crl.next_update_utc
        if not crl.last_update_utc <= at or next_update is None or at > next_update:
            raise VerificationError("dcap.crl", "the CRL is not current", expected=f"{crl.last_update_utc.isoformat()}"
                                    f" .. {next_update.isoformat() if next_update else '(no nextUpdate)'}",
                                    found=at.isoformat())
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise VerificationError("dcap.revoked", f"'{cert.subject.rfc4514_string()}' is revoked by {name}",
                                    found=f"serial {cert.serial_number:x}")


def _read_collateral(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_COLLATERAL_SIZE + 1)
    except OSError as exc:
        raise VerificationError("dcap.collateral", f"cannot read the {what}",
                                expected=str(path), found=exc.strerror or type(exc).__name__) from None
    if len(data) > MAX_COLLATERAL_SIZE:
        raise VerificationError("dcap.collateral", f"the {what} is larger than {MAX_COLLATERAL_SIZE} bytes",
                                found=str(path))
    return data
