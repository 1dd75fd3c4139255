"""TCB status from Intel collateral, on the genuine fixture quotes and SYNTHETIC collateral.

No genuine TCB info or QE identity is available offline, so each test signs its own with a
test CA (ECDSA P-256) pinned as the collateral root only; the quotes still chain to the
real Intel SGX Root CA. TCB levels are placed around the real PCK SVNs of each quote.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from teenet.attestation.collateral import (
    TcbStatusIn,
    evaluate_tcb_status,
    parse_pck_extensions,
    verify_qe_identity,
    verify_tcb_info,
    verify_with_collateral,
)
from teenet.attestation.dcap import verify_quote
from teenet.attestation.evidence import Evidence, Platform, TrustRoots
from teenet.errors import VerificationError

INSIDE = datetime(2026, 6, 1, tzinfo=timezone.utc)
SGX_QE_MRSIGNER = "8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff"
TDX_QE_MRSIGNER = "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5"


# ------------------------------------------------------------------ fixtures and builders

@pytest.fixture(scope="module")
def roots(attestation_fixtures: Path) -> TrustRoots:
    root = x509.load_pem_x509_certificate((attestation_fixtures / "tdx" / "intel-sgx-root-ca.pem").read_bytes())
    return TrustRoots(intel_sgx_root=root, now=INSIDE)


@pytest.fixture(scope="module")
def raw_quotes(attestation_fixtures: Path) -> dict[str, bytes]:
    return {
        "tdx-v4": (attestation_fixtures / "tdx" / "tdx-v4-quote.dat").read_bytes(),
        "tdx-v5": (attestation_fixtures / "tdx" / "tdx-v5-quote.dat").read_bytes(),
        "sgx-v3": (attestation_fixtures / "sgx" / "sgx-v3-quote.dat").read_bytes(),
    }


@pytest.fixture(scope="module")
def quotes(raw_quotes, roots):
    return {name: verify_quote(raw, roots) for name, raw in raw_quotes.items()}


@pytest.fixture(scope="module")
def pcks(quotes):
    return {name: parse_pck_extensions(_leaf(q)) for name, q in quotes.items()}


def _leaf(quote) -> x509.Certificate:
    return x509.load_pem_x509_certificates(quote.certification.pck_chain_pem.rstrip(b"\x00"))[0]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, extra=None) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(INSIDE - timedelta(days=365)).not_valid_after(INSIDE + timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class CollateralPki:
    """A collateral CA and its TCB signing certificate (ECDSA P-256)."""

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert("Test SGX Root CA", self.ca_key, "Test SGX Root CA", self.ca_key, ca=True)
        self.signer_key = ec.generate_private_key(ec.SECP256R1())
        self.signer = _cert("Test TCB Signing", self.signer_key, "Test SGX Root CA", self.ca_key, ca=False)
        self.chain = (self.signer.public_bytes(serialization.Encoding.PEM)
                      + self.ca.public_bytes(serialization.Encoding.PEM))

    def sign(self, member: str, body: dict, *, sep: str = " ") -> bytes:
        # Deliberately not compact: the verifier must use the bytes as they appear.
        body_text = json.dumps(body, separators=(",", ":" + sep))
        der = self.signer_key.sign(body_text.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        sig = (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex()
        return f'{{"{member}": {body_text}, "signature":"{sig}"}}'.encode()


@pytest.fixture(scope="module")
def pki() -> CollateralPki:
    return CollateralPki()


def _comps(svns) -> list[dict]:
    return [{"svn": int(s), "category": "", "type": ""} for s in svns]


def _level(sgx, pcesvn, status, *, tdx=None, advisories=()) -> dict:
    tcb: dict = {"sgxtcbcomponents": _comps(sgx), "pcesvn": pcesvn}
    if tdx is not None:
        tcb["tdxtcbcomponents"] = _comps(tdx)
    return {"tcb": tcb, "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": status, "advisoryIDs": list(advisories)}


ZERO_SIGNER = "00" * 48  # the genuine quotes' MRSIGNERSEAM: Intel's own TDX module


def _module(*, mrsigner=ZERO_SIGNER, attributes="0000000000000000", mask="FFFFFFFFFFFFFFFF", id=None,
            levels=None) -> dict:
    entry = {"mrsigner": mrsigner, "attributes": attributes, "attributesMask": mask}
    if id is not None:
        entry["id"] = id
        entry["tcbLevels"] = levels if levels is not None else [
            {"tcb": {"isvsvn": 0}, "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": "UpToDate"}]
    return entry


def _tcb_info(pck, levels, *, tee="SGX", fmspc=None, issue="2026-05-01T00:00:00Z",
              next_update="2026-07-01T00:00:00Z", version=3, tdx_module=None, tdx_identities=None) -> dict:
    body = {"id": tee, "version": version, "issueDate": issue, "nextUpdate": next_update,
            "fmspc": (fmspc or pck.fmspc).hex().upper(), "pceId": pck.pce_id.hex().upper(), "tcbType": 0,
            "tcbEvaluationDataNumber": 17, "tcbLevels": levels}
    if tee == "TDX":  # as Intel publishes it: the module's signer, and one identity per major version
        body["tdxModule"] = tdx_module if tdx_module is not None else _module()
        body["tdxModuleIdentities"] = (tdx_identities if tdx_identities is not None
                                       else [_module(id="TDX_01"), _module(id="TDX_03")])
    return body


def _qe_identity(quote, *, levels=None, mrsigner=None, attributes=None, isvprodid=None) -> dict:
    qe = quote.certification.qe_report
    return {"id": "TD_QE" if quote.is_tdx else "QE", "version": 2, "issueDate": "2026-05-01T00:00:00Z",
            "nextUpdate": "2026-07-01T00:00:00Z", "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
            "attributes": attributes or qe.raw[48:64].hex().upper(),
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": mrsigner or (TDX_QE_MRSIGNER if quote.is_tdx else SGX_QE_MRSIGNER).upper(),
            "isvprodid": qe.isv_prod_id if isvprodid is None else isvprodid,
            "tcbLevels": levels or [{"tcb": {"isvsvn": qe.isv_svn}, "tcbDate": "2025-01-01T00:00:00Z",
                                     "tcbStatus": "UpToDate"}]}


def _bump(svns, index, by=1):
    out = list(svns)
    out[index] += by
    return out


def _refused(check: str, fn, *args, **kwargs) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        fn(*args, **kwargs)
    assert info.value.check == check, str(info.value)
    return info.value


# ------------------------------------------------------------------ PCK extensions

def test_pck_extensions_of_genuine_quotes(pcks):
    expected = {"tdx-v4": ("50806f000000", (3, 3, 2, 2, 2, 1, 0, 2), 11),
                "tdx-v5": ("90c06f000000", (4, 4, 2, 2, 4, 1, 0, 5), 13),
                "sgx-v3": ("00906ed50000", (17, 17, 2, 4, 1, 128, 6, 0), 11)}
    for name, (fmspc, head, pcesvn) in expected.items():
        pck = pcks[name]
        assert len(pck.fmspc) == 6 and pck.fmspc.hex() == fmspc
        assert pck.pce_id == bytes(2)
        assert pck.comp_svns == head + (0,) * 8
        assert pck.pce_svn == pcesvn
        # On these platforms the CPUSVN in the certificate is the comp SVNs byte by byte.
        assert pck.cpu_svn == bytes(pck.comp_svns)


def _leaf_with_sgx_extension(value: bytes) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.840.113741.1.13.1"), value)
    return _cert("PCK", key, "PCK", key, ca=False, extra=ext)


def test_malformed_pck_extensions_are_refused(quotes):
    genuine = _leaf(quotes["sgx-v3"]).extensions.get_extension_for_oid(
        x509.ObjectIdentifier("1.2.840.113741.1.13.1")).value.value
    bad = [genuine[:-1], genuine[:40], b"\x30\x84\xff\xff\xff\xff", b"\x30\x00", b"\x04\x02ab",
           genuine + b"\x00", genuine.replace(bytes.fromhex("2a864886f84d010d0104"),
                                              bytes.fromhex("2a864886f84d010d0109"))]
    for value in bad:
        _refused("dcap.pck_extensions", parse_pck_extensions, _leaf_with_sgx_extension(value))
    key = ec.generate_private_key(ec.SECP256R1())
    _refused("dcap.pck_extensions", parse_pck_extensions, _cert("x", key, "x", key, ca=False))
    assert parse_pck_extensions(_leaf_with_sgx_extension(genuine)).fmspc.hex() == "00906ed50000"


# ------------------------------------------------------------------ signed collateral

def test_tcb_info_signature_covers_the_exact_bytes(pki, pcks):
    doc = pki.sign("tcbInfo", _tcb_info(pcks["sgx-v3"], [_level(pcks["sgx-v3"].comp_svns, 11, "UpToDate")]))
    info = verify_tcb_info(doc, pki.chain, pki.ca, INSIDE)
    assert info.fmspc == pcks["sgx-v3"].fmspc and len(info.levels) == 1
    # One byte of the signed object changed (an SVN 1 -> 0, still valid JSON): refused.
    start = doc.index(b'"pcesvn": 11')
    tampered = doc[:start] + b'"pcesvn": 10' + doc[start + len(b'"pcesvn": 11'):]
    err = _refused("dcap.tcb_info", verify_tcb_info, tampered, pki.chain, pki.ca, INSIDE)
    assert "not signed" in str(err)
    # The same content re-serialised (whitespace only) is not what was signed: refused.
    outer = json.loads(doc)
    reserialised = json.dumps(outer, separators=(",", ":")).encode()
    _refused("dcap.tcb_info", verify_tcb_info, reserialised, pki.chain, pki.ca, INSIDE)
    # A flipped signature byte.
    sig_at = doc.index(b'"signature":"') + len(b'"signature":"')
    flipped = doc[:sig_at] + (b"1" if doc[sig_at:sig_at + 1] != b"1" else b"2") + doc[sig_at + 1:]
    _refused("dcap.tcb_info", verify_tcb_info, flipped, pki.chain, pki.ca, INSIDE)


def test_tcb_info_from_another_ca_or_expired_is_refused(pki, pcks, roots):
    pck = pcks["sgx-v3"]
    doc = pki.sign("tcbInfo", _tcb_info(pck, [_level(pck.comp_svns, 11, "UpToDate")]))
    # The genuine Intel root did not issue the test signing certificate.
    _refused("dcap.tcb_info", verify_tcb_info, doc, pki.chain, roots.intel_sgx_root, INSIDE)
    _refused("dcap.tcb_info", verify_tcb_info, doc, pki.chain, None, INSIDE)
    other = CollateralPki()
    _refused("dcap.tcb_info", verify_tcb_info, doc, other.chain, pki.ca, INSIDE)  # other key, other root
    err = _refused("dcap.tcb_info", verify_tcb_info, doc, pki.chain, pki.ca, datetime(2026, 7, 2, tzinfo=timezone.utc))
    assert "not current" in str(err)
    _refused("dcap.tcb_info", verify_tcb_info, doc, pki.chain, pki.ca, datetime(2026, 4, 30, tzinfo=timezone.utc))
    for bad in (_tcb_info(pck, [_level(pck.comp_svns, 11, "UpToDate")], version=2),
                _tcb_info(pck, [_level(pck.comp_svns, 11, "UpToDate")], tee="SEV"),
                _tcb_info(pck, [_level(pck.comp_svns, 11, "Fine")]),
                _tcb_info(pck, [])):
        _refused("dcap.tcb_info", verify_tcb_info, pki.sign("tcbInfo", bad), pki.chain, pki.ca, INSIDE)
    dup = doc.replace(b'{"tcbInfo"', b'{"signature":"00", "tcbInfo"', 1)
    _refused("dcap.tcb_info", verify_tcb_info, dup, pki.chain, pki.ca, INSIDE)


# ------------------------------------------------------------------ status evaluation

def _evaluate(pki, quote, pck, levels, *, tee=None, fmspc=None, qe=None, **module):
    info = verify_tcb_info(pki.sign("tcbInfo", _tcb_info(pck, levels, tee=tee or ("TDX" if quote.is_tdx else "SGX"),
                                                          fmspc=fmspc, **module)), pki.chain, pki.ca, INSIDE)
    identity = None if qe is None else verify_qe_identity(pki.sign("enclaveIdentity", qe), pki.chain, pki.ca, INSIDE)
    return evaluate_tcb_status(quote, pck, info, identity)


def test_sgx_levels_walked_in_order(pki, quotes, pcks):
    quote, pck = quotes["sgx-v3"], pcks["sgx-v3"]
    svns = pck.comp_svns
    levels = [_level(_bump(svns, 5), 11, "UpToDate"),                # comp06 one above the platform
              _level(svns, 12, "UpToDate"),                          # PCESVN one above
              _level(svns, 11, "SWHardeningNeeded", advisories=["INTEL-SA-00615"]),
              _level([0] * 16, 0, "OutOfDate")]
    result = _evaluate(pki, quote, pck, levels)
    assert (result.status, result.matched_level, result.advisory_ids) == ("SWHardeningNeeded", 2, ("INTEL-SA-00615",))
    above = _evaluate(pki, quote, pck, levels[:2])
    assert (above.status, above.matched_level) == ("OutOfDate", None)
    err = _refused("dcap.tcb_status", TcbStatusIn(frozenset({"UpToDate", "SWHardeningNeeded"})).check, above)
    assert "OutOfDate" in str(err)
    revoked = _evaluate(pki, quote, pck, [levels[0], _level(svns, 11, "Revoked")])
    assert (revoked.status, revoked.matched_level) == ("Revoked", 1)
    _refused("dcap.tcb_status", TcbStatusIn().check, revoked)
    TcbStatusIn().check(_evaluate(pki, quote, pck, [_level(svns, 11, "UpToDate")]))


def test_wrong_platform_collateral_is_refused(pki, quotes, pcks):
    quote, pck = quotes["sgx-v3"], pcks["sgx-v3"]
    levels = [_level(pck.comp_svns, 11, "UpToDate")]
    err = _refused("dcap.tcb_status", _evaluate, pki, quote, pck, levels, fmspc=bytes.fromhex("00906ed50001"))
    assert "FMSPC" in str(err)
    _refused("dcap.tcb_status", _evaluate, pki, quotes["tdx-v4"], pcks["tdx-v4"],
             [_level(pcks["tdx-v4"].comp_svns, 11, "UpToDate")], tee="SGX")


def test_tdx_levels_use_tee_tcb_svn(pki, quotes, pcks):
    # v4: TEE_TCB_SVN = 03 00 04 00..: [1] == 0, so all 16 bytes count.
    q4, p4 = quotes["tdx-v4"], pcks["tdx-v4"]
    tee4 = list(q4.body.tee_tcb_svn)
    assert tee4[1] == 0
    r = _evaluate(pki, q4, p4, [_level(p4.comp_svns, 11, "UpToDate", tdx=_bump(tee4, 0)),
                                _level(p4.comp_svns, 11, "OutOfDate", tdx=tee4)])
    assert (r.status, r.matched_level) == ("OutOfDate", 1)
    # v5: TEE_TCB_SVN = 0b 01 04 ..: [1] > 0, so bytes 0 and 1 are not compared; byte 2 is.
    q5, p5 = quotes["tdx-v5"], pcks["tdx-v5"]
    tee5 = list(q5.body.tee_tcb_svn)
    assert tee5[1] > 0
    r = _evaluate(pki, q5, p5, [_level(p5.comp_svns, 13, "UpToDate", tdx=_bump(tee5, 2)),
                                _level(p5.comp_svns, 13, "ConfigurationNeeded", tdx=_bump(_bump(tee5, 0), 1)),
                                _level(p5.comp_svns, 13, "OutOfDate", tdx=[0] * 16)])
    assert (r.status, r.matched_level) == ("ConfigurationNeeded", 1)
    # The SGX part of a TDX level still counts.
    r = _evaluate(pki, q5, p5, [_level(_bump(p5.comp_svns, 0), 13, "UpToDate", tdx=tee5)])
    assert (r.status, r.matched_level) == ("OutOfDate", None)


def test_tdx_module_identity_grades_the_module(pki, quotes, pcks):
    # v5: TEE_TCB_SVN = 0b 01 ..: module major version 1 (TDX_01), module SVN 11.
    q5, p5 = quotes["tdx-v5"], pcks["tdx-v5"]
    assert (q5.body.tee_tcb_svn[1], q5.body.tee_tcb_svn[0]) == (1, 11)
    platform = [_level(p5.comp_svns, p5.pce_svn, "UpToDate", tdx=list(q5.body.tee_tcb_svn))]

    def levels(*pairs):
        return [{"tcb": {"isvsvn": svn}, "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": status,
                 "advisoryIDs": advisories} for svn, status, advisories in pairs]

    current = _evaluate(pki, q5, p5, platform, tdx_identities=[
        _module(id="TDX_01", levels=levels((11, "UpToDate", []), (0, "OutOfDate", [])))])
    assert (current.status, current.tdx_module_status) == ("UpToDate", "UpToDate")
    stale = _evaluate(pki, q5, p5, platform, tdx_identities=[
        _module(id="TDX_01", levels=levels((12, "UpToDate", []), (11, "OutOfDate", ["INTEL-SA-01111"])))])
    assert (stale.status, stale.tdx_module_status, stale.advisory_ids) == ("OutOfDate", "OutOfDate",
                                                                            ("INTEL-SA-01111",))
    revoked = _evaluate(pki, q5, p5, platform, tdx_identities=[
        _module(id="tdx_01", levels=levels((0, "Revoked", [])))])  # ids compare case-insensitively
    assert revoked.status == "Revoked"
    # The SGX/TDX level said ConfigurationNeeded; an out-of-date module keeps the "configuration" part.
    config = [_level(p5.comp_svns, p5.pce_svn, "ConfigurationNeeded", tdx=list(q5.body.tee_tcb_svn))]
    assert _evaluate(pki, q5, p5, config, tdx_identities=[
        _module(id="TDX_01", levels=levels((11, "OutOfDate", [])))]).status == "OutOfDateConfigurationNeeded"
    # A module version or SVN the collateral does not cover is refused, not guessed.
    err = _refused("dcap.tdx_module", _evaluate, pki, q5, p5, platform, tdx_identities=[_module(id="TDX_03")])
    assert "TDX_01" in str(err)
    err = _refused("dcap.tdx_module", _evaluate, pki, q5, p5, platform, tdx_identities=[
        _module(id="TDX_01", levels=levels((12, "UpToDate", [])))])
    assert ">= 12" in str(err) and "found 11" in str(err)


def test_tdx_module_signer_and_attributes_must_match(pki, quotes, pcks):
    # v4: TEE_TCB_SVN[1] == 0, so the module is checked against 'tdxModule' (no status of its own).
    q4, p4 = quotes["tdx-v4"], pcks["tdx-v4"]
    platform = [_level(p4.comp_svns, p4.pce_svn, "UpToDate", tdx=list(q4.body.tee_tcb_svn))]
    ok = _evaluate(pki, q4, p4, platform)
    assert (ok.status, ok.tdx_module_status) == ("UpToDate", None)
    _refused("dcap.tdx_module", _evaluate, pki, q4, p4, platform, tdx_module=_module(mrsigner="01" + "00" * 47))
    _refused("dcap.tdx_module", _evaluate, pki, q4, p4, platform, tdx_module=_module(attributes="0000000000000001"))
    # Under a mask that ignores that bit, the attributes agree.
    _evaluate(pki, q4, p4, platform, tdx_module=_module(attributes="0000000000000001", mask="FFFFFFFFFFFFFFFE"))
    # TDX TCB info must name the module at all.
    body = _tcb_info(p4, platform, tee="TDX")
    del body["tdxModule"]
    _refused("dcap.tcb_info", verify_tcb_info, pki.sign("tcbInfo", body), pki.chain, pki.ca, INSIDE)


# ------------------------------------------------------------------ QE identity

def test_qe_identity_matches_and_grades_the_qe(pki, quotes, pcks):
    for name in ("sgx-v3", "tdx-v5"):
        quote, pck = quotes[name], pcks[name]
        levels = [_level(pck.comp_svns, pck.pce_svn, "UpToDate", tdx=list(quote.body.tee_tcb_svn) if quote.is_tdx else None)]
        ok = _evaluate(pki, quote, pck, levels, qe=_qe_identity(quote))
        assert (ok.status, ok.qe_status) == ("UpToDate", "UpToDate")
        isvsvn = quote.certification.qe_report.isv_svn
        newer = [{"tcb": {"isvsvn": isvsvn + 1}, "tcbStatus": "UpToDate", "tcbDate": "2025-01-01T00:00:00Z"},
                 {"tcb": {"isvsvn": isvsvn}, "tcbStatus": "OutOfDate", "tcbDate": "2024-01-01T00:00:00Z",
                  "advisoryIDs": ["INTEL-SA-00999"]}]
        old_qe = _evaluate(pki, quote, pck, levels, qe=_qe_identity(quote, levels=newer))
        assert (old_qe.status, old_qe.qe_status, old_qe.advisory_ids) == ("OutOfDate", "OutOfDate", ("INTEL-SA-00999",))
        revoked = [{"tcb": {"isvsvn": 0}, "tcbStatus": "Revoked", "tcbDate": "2024-01-01T00:00:00Z"}]
        assert _evaluate(pki, quote, pck, levels, qe=_qe_identity(quote, levels=revoked)).status == "Revoked"


def test_qe_identity_mismatch_is_refused(pki, quotes, pcks):
    quote, pck = quotes["sgx-v3"], pcks["sgx-v3"]
    levels = [_level(pck.comp_svns, 11, "UpToDate")]
    attrs = bytearray(quote.certification.qe_report.raw[48:64])
    attrs[0] ^= 0x01  # a masked-in bit (INIT)
    unmasked = bytearray(quote.certification.qe_report.raw[48:64])
    unmasked[8] ^= 0xFF  # XFRM is masked out: still accepted
    for qe, what in ((_qe_identity(quote, mrsigner=TDX_QE_MRSIGNER), "MRSIGNER"),
                     (_qe_identity(quote, isvprodid=2), "ISVPRODID"),
                     (_qe_identity(quote, attributes=attrs.hex()), "ATTRIBUTES"),
                     (dict(_qe_identity(quote), miscselect="00000001"), "MISCSELECT"),
                     (dict(_qe_identity(quote), id="TD_QE"), "another quoting enclave")):
        err = _refused("dcap.qe_identity_collateral", _evaluate, pki, quote, pck, levels, qe=qe)
        assert what in str(err)
    assert _evaluate(pki, quote, pck, levels, qe=_qe_identity(quote, attributes=unmasked.hex())).status == "UpToDate"
    doc = pki.sign("enclaveIdentity", _qe_identity(quote))
    at = doc.index(b'"isvprodid": 1')
    _refused("dcap.qe_identity_collateral", verify_qe_identity,
             doc[:at] + b'"isvprodid": 3' + doc[at + 14:], pki.chain, pki.ca, INSIDE)


# ------------------------------------------------------------------ end to end

def test_verify_with_collateral(pki, raw_quotes, pcks, roots, quotes):
    pck = pcks["sgx-v3"]
    info = pki.sign("tcbInfo", _tcb_info(pck, [_level(pck.comp_svns, 11, "SWHardeningNeeded",
                                                      advisories=["INTEL-SA-00334"])]))
    qe = pki.sign("enclaveIdentity", _qe_identity(quotes["sgx-v3"]))
    evidence = Evidence(Platform.SGX, raw_quotes["sgx-v3"])
    claims, status = verify_with_collateral(evidence, roots, info, qe, pki.chain, collateral_root=pki.ca)
    assert claims.details["tcb_status"] == "SWHardeningNeeded" == status.status
    assert claims.details["tcb_advisory_ids"] == "INTEL-SA-00334"
    assert claims.measurement.hex().startswith("1dd0df84")
    _refused("dcap.tcb_status", verify_with_collateral, evidence, roots, info, qe, pki.chain,
             collateral_root=pki.ca, policy=TcbStatusIn())
    # Without an explicit collateral root, the pinned Intel root must have signed it: refused.
    _refused("dcap.tcb_info", verify_with_collateral, evidence, roots, info, None, pki.chain)
    _refused("dcap.tee_type", verify_with_collateral, Evidence(Platform.TDX, raw_quotes["sgx-v3"]), roots,
             info, None, pki.chain, collateral_root=pki.ca)


def test_cli_refuses_collateral_not_signed_under_the_pinned_intel_root(pki, pcks, attestation_fixtures, tmp_path,
                                                                      capsys):
    """`teenet attest verify --tcb-info` checks collateral against the pinned Intel root:
    collateral signed by anyone else is refused in one line, naming the check."""
    from teenet.cli.main import main

    pck = pcks["sgx-v3"]
    info = tmp_path / "tcb-info.json"
    info.write_bytes(pki.sign("tcbInfo", _tcb_info(pck, [_level(pck.comp_svns, pck.pce_svn, "UpToDate")])))
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pki.chain)
    quote = attestation_fixtures / "sgx" / "sgx-v3-quote.dat"
    base = ["attest", "verify", str(quote), "--platform", "sgx", "--allow-debug", "--at", "2026-06-01T00:00:00Z"]
    assert main(base) == 0  # the quote alone verifies
    capsys.readouterr()
    assert main(base + ["--tcb-info", str(info), "--collateral-chain", str(chain)]) == 1
    err = capsys.readouterr().err
    assert "dcap.tcb_info" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(base + ["--tcb-info", str(info)]) == 1
    assert "--collateral-chain" in capsys.readouterr().err


# ------------------------------------------------------------------ a collateral directory at the verifier

def _collateral_dir(tmp_path: Path, pki, quote, pck, status: str, *, qe: bool = True) -> Path:
    """Lay collateral out as a node's `enclave.intel_collateral` directory holds it."""
    sub = tmp_path / "collateral" / ("tdx" if quote.is_tdx else "sgx")
    sub.mkdir(parents=True, exist_ok=True)
    tee = list(quote.body.tee_tcb_svn) if quote.is_tdx else None
    levels = [_level(pck.comp_svns, pck.pce_svn, status, tdx=tee,
                     advisories=["INTEL-SA-00615"] if status != "UpToDate" else ())]
    (sub / f"tcb-info-{pck.fmspc.hex().upper()}.json").write_bytes(
        pki.sign("tcbInfo", _tcb_info(pck, levels, tee="TDX" if quote.is_tdx else "SGX")))
    if qe:
        (sub / "qe-identity.json").write_bytes(pki.sign("enclaveIdentity", _qe_identity(quote)))
    (tmp_path / "collateral" / "tcb-signing-chain.pem").write_bytes(pki.chain)
    return tmp_path / "collateral"


def _policy(claims_measurement: bytes, statuses):
    from teenet.attestation.policy import policy_from_config

    config = {"measurements": [claims_measurement.hex()], "allow_debug": True}
    if statuses is not None:
        config["tcb_status"] = list(statuses)
    return policy_from_config(config)


@pytest.mark.parametrize("name", ["sgx-v3", "tdx-v4", "tdx-v5"])
def test_a_collateral_directory_gives_each_verification_a_tcb_status_the_policy_decides_on(
        name, pki, raw_quotes, quotes, pcks, roots, tmp_path):
    from dataclasses import replace as with_fields

    from teenet.attestation.evidence import IntelCollateral
    from teenet.attestation.verifier import verify_evidence, verify_platform_evidence

    quote, pck = quotes[name], pcks[name]
    evidence = Evidence(Platform.TDX if quote.is_tdx else Platform.SGX, raw_quotes[name])
    directory = _collateral_dir(tmp_path, pki, quote, pck, "SWHardeningNeeded")
    with_collateral = with_fields(roots, intel_collateral=IntelCollateral(str(directory), root=pki.ca, check_crls=False))
    measurement = verify_platform_evidence(evidence, roots).measurement

    claims = verify_evidence(evidence, with_collateral, _policy(measurement, ["UpToDate", "SWHardeningNeeded"]), None)
    assert claims.details["tcb_status"] == "SWHardeningNeeded"
    assert claims.details["tcb_advisory_ids"] == "INTEL-SA-00615"
    err = _refused("policy.tcb_status", verify_evidence, evidence, with_collateral,
                   _policy(measurement, ["UpToDate"]), None)
    assert "found SWHardeningNeeded" in str(err) and "INTEL-SA-00615" in str(err)
    # Without collateral at the verifier, a tcb_status policy has nothing to decide on: refused.
    err = _refused("policy.tcb_status", verify_evidence, evidence, roots,
                   _policy(measurement, ["UpToDate", "SWHardeningNeeded"]), None)
    assert "intel_collateral" in str(err)
    # Collateral not signed under the pinned Intel root (no override): refused before any status.
    pinned_only = with_fields(roots, intel_collateral=IntelCollateral(str(directory), check_crls=False))
    _refused("dcap.tcb_info", verify_evidence, evidence, pinned_only,
             _policy(measurement, ["UpToDate", "SWHardeningNeeded"]), None)


def test_missing_collateral_is_refused_naming_the_file(pki, raw_quotes, quotes, pcks, roots, tmp_path):
    from dataclasses import replace as with_fields

    from teenet.attestation.evidence import IntelCollateral
    from teenet.attestation.verifier import verify_platform_evidence

    quote, pck = quotes["sgx-v3"], pcks["sgx-v3"]
    evidence = Evidence(Platform.SGX, raw_quotes["sgx-v3"])
    directory = _collateral_dir(tmp_path, pki, quote, pck, "UpToDate", qe=False)
    with_collateral = with_fields(roots, intel_collateral=IntelCollateral(str(directory), root=pki.ca, check_crls=False))
    err = _refused("dcap.collateral", verify_platform_evidence, evidence, with_collateral)
    assert "QE identity" in str(err) and "qe-identity.json" in str(err)
    # TDX evidence looks in tdx/, which holds nothing for its FMSPC.
    err = _refused("dcap.collateral", verify_platform_evidence, Evidence(Platform.TDX, raw_quotes["tdx-v4"]),
                   with_collateral)
    assert pcks["tdx-v4"].fmspc.hex().upper() in str(err)
    (directory / "sgx" / "qe-identity.json").write_bytes(pki.sign("enclaveIdentity", _qe_identity(quote)))
    assert verify_platform_evidence(evidence, with_collateral).details["tcb_status"] == "UpToDate"


def test_a_tcb_status_policy_passes_amd_evidence_and_checks_its_config():
    from teenet.attestation.evidence import Claims
    from teenet.attestation.policy import IntelTcbStatusIn, policy_from_config
    from teenet.errors import InputError

    snp = Claims(platform=Platform.SNP, measurement=bytes(48), report_data=bytes(64), debug=False)
    IntelTcbStatusIn(frozenset({"UpToDate"})).verify(snp)  # AMD: min_tcb pins its TCB instead
    for bad in ([], ["Fine"], "UpToDate", [1]):
        with pytest.raises(InputError) as info:
            policy_from_config({"measurements": ["00" * 48], "tcb_status": bad})
        assert info.value.field == "tcb_status"


# ------------------------------------------------------------------ CRLs of the PCK chain

def _crl(issuer_name: str, issuer_key, revoked=(), *, this=INSIDE - timedelta(days=1),
         next_=INSIDE + timedelta(days=30)) -> x509.CertificateRevocationList:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(_name(issuer_name))
               .last_update(this).next_update(next_))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(this).build())
    return builder.sign(issuer_key, hashes.SHA256())


class ChainPki:
    """A synthetic root -> PCK CA -> PCK leaf chain, as Intel's is shaped."""

    def __init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _cert("Test SGX Root CA", self.root_key, "Test SGX Root CA", self.root_key, ca=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert("Test PCK Platform CA", self.ca_key, "Test SGX Root CA", self.root_key, ca=True)
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())
        self.leaf = _cert("Test PCK Certificate", self.leaf_key, "Test PCK Platform CA", self.ca_key, ca=False)
        self.pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.leaf, self.ca, self.root))

    def crls(self, *, leaf_revoked=False, ca_revoked=False):
        return [_crl("Test PCK Platform CA", self.ca_key, [self.leaf.serial_number] if leaf_revoked else []),
                _crl("Test SGX Root CA", self.root_key, [self.ca.serial_number] if ca_revoked else [])]


def test_pck_chain_revocation_is_checked_against_each_issuers_crl():
    from teenet.attestation.collateral import check_pck_revocation

    chain = ChainPki()
    check_pck_revocation(chain.pem, chain.crls(), INSIDE)  # current, signed, nothing revoked
    err = _refused("dcap.revoked", check_pck_revocation, chain.pem, chain.crls(leaf_revoked=True), INSIDE)
    assert "Test PCK Certificate" in str(err)
    err = _refused("dcap.revoked", check_pck_revocation, chain.pem, chain.crls(ca_revoked=True), INSIDE)
    assert "Test PCK Platform CA" in str(err)
    # A CRL under the right name but another key; a stale one; none for an issuer.
    forged = [_crl("Test PCK Platform CA", ec.generate_private_key(ec.SECP256R1())), chain.crls()[1]]
    assert "not signed" in str(_refused("dcap.crl", check_pck_revocation, chain.pem, forged, INSIDE))
    stale = [_crl("Test PCK Platform CA", chain.ca_key, next_=INSIDE - timedelta(hours=1),
                  this=INSIDE - timedelta(days=2)), chain.crls()[1]]
    assert "not current" in str(_refused("dcap.crl", check_pck_revocation, chain.pem, stale, INSIDE))
    err = _refused("dcap.crl", check_pck_revocation, chain.pem, chain.crls()[:1], INSIDE)
    assert "Test SGX Root CA" in str(err)
    # The newest CRL of an issuer counts: an old one that did not list the leaf does not hide it.
    old = _crl("Test PCK Platform CA", chain.ca_key, this=INSIDE - timedelta(days=3))
    _refused("dcap.revoked", check_pck_revocation, chain.pem, [old] + chain.crls(leaf_revoked=True), INSIDE)


def test_a_node_collateral_directory_needs_genuine_crls_for_the_quote(pki, raw_quotes, quotes, pcks, roots,
                                                                     tmp_path):
    """With CRL checks on (the default), the genuine quote is refused until the directory holds
    a CRL signed by Intel's PCK CA: none is stored offline, so a forged one (right issuer name,
    test key) must be refused too."""
    from dataclasses import replace as with_fields

    from teenet.attestation.evidence import IntelCollateral
    from teenet.attestation.verifier import verify_platform_evidence

    quote, pck = quotes["sgx-v3"], pcks["sgx-v3"]
    evidence = Evidence(Platform.SGX, raw_quotes["sgx-v3"])
    directory = _collateral_dir(tmp_path, pki, quote, pck, "UpToDate")
    checked = with_fields(roots, intel_collateral=IntelCollateral(str(directory), root=pki.ca))
    err = _refused("dcap.crl", verify_platform_evidence, evidence, checked)
    assert "no CRL directory" in str(err)
    intel_ca = _leaf(quote).issuer
    (directory / "crl").mkdir()
    forged = (x509.CertificateRevocationListBuilder().issuer_name(intel_ca).last_update(INSIDE - timedelta(days=1))
              .next_update(INSIDE + timedelta(days=30)).sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
    (directory / "crl" / "pck-platform.crl").write_bytes(forged.public_bytes(serialization.Encoding.DER))
    err = _refused("dcap.crl", verify_platform_evidence, evidence, checked)
    assert "not signed by its issuer" in str(err) and intel_ca.rfc4514_string() in str(err)
    (directory / "crl" / "pck-platform.crl").write_bytes(b"not a CRL")
    assert "not a CRL" in str(_refused("dcap.crl", verify_platform_evidence, evidence, checked))
