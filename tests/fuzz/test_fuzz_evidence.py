"""Fuzzing the evidence parsers and verifiers on genuine hardware evidence and its mutants:
SEV-SNP reports (parse_snp_report, verify_snp_evidence, VCEK and VLEK, real and simulated),
DCAP quotes (parse_quote, TDX v4/v5 and SGX v3 verification) and the JSON evidence
envelope (Evidence.from_bytes, then verification).

Only TeenetError subclasses may be raised. Whatever verifies must carry exactly the
genuine evidence's signed claims (measurement, report data): a mutation may land in a
part nobody relies on, never in one that changes what is believed."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from cryptography import x509
from hypothesis import strategies as st

from fuzz_counts import fuzz, mutate, run_target
from teenet.attestation.dcap import verify_sgx_evidence, verify_tdx_evidence
from teenet.attestation.dcap_quote import parse_quote
from teenet.attestation.evidence import Evidence, Platform, TrustRoots
from teenet.attestation.roots import default_trust_roots
from teenet.attestation.sim import UnsafeSimulatedAttester
from teenet.attestation.snp import REPORT_SIZE, parse_snp_report, verify_snp_evidence
from teenet.attestation.verifier import verify_platform_evidence

FAST, SLOW = 300, 2000
DCAP_INSIDE = datetime(2026, 6, 1, tzinfo=timezone.utc)   # inside every fixture quote's PCK validity
VLEK_INSIDE = datetime(2025, 6, 1, tzinfo=timezone.utc)   # inside the VLEK certificate's validity


@pytest.fixture(scope="module")
def genuine(attestation_fixtures, sim_platform):
    f = attestation_fixtures
    snp = f / "snp"
    intel_root = x509.load_pem_x509_certificate((f / "tdx" / "intel-sgx-root-ca.pem").read_bytes())
    sim_attester = UnsafeSimulatedAttester(sim_platform, bytes(range(48)))
    return {
        "vcek": Evidence(Platform.SNP, (snp / "milan-vcek-report.bin").read_bytes(),
                         ((snp / "milan-vcek.der").read_bytes(),)),
        "vlek": Evidence(Platform.SNP, (snp / "milan-vlek-report.bin").read_bytes(),
                         ((snp / "milan-vlek.der").read_bytes(),)),
        "sim": sim_attester.attest(bytes(range(64))),
        "tdx-v4": Evidence(Platform.TDX, (f / "tdx" / "tdx-v4-quote.dat").read_bytes()),
        "tdx-v5": Evidence(Platform.TDX, (f / "tdx" / "tdx-v5-quote.dat").read_bytes()),
        "sgx-v3": Evidence(Platform.SGX, (f / "sgx" / "sgx-v3-quote.dat").read_bytes()),
        "roots": default_trust_roots(sim_ark=sim_platform.ark),
        "vlek_roots": default_trust_roots(now=VLEK_INSIDE),
        "dcap_roots": TrustRoots(intel_sgx_root=intel_root, now=DCAP_INSIDE),
    }


def _roots(g, name):
    return g["vlek_roots"] if name == "vlek" else g["dcap_roots"] if name[:3] in ("tdx", "sgx") else g["roots"]


def _verify(g, name, evidence):
    if name.startswith("tdx"):
        return verify_tdx_evidence(evidence, _roots(g, name))
    if name.startswith("sgx"):
        return verify_sgx_evidence(evidence, _roots(g, name))
    return verify_snp_evidence(evidence, _roots(g, name))


def poke(data, raw: bytes) -> bytes:
    """Change 1..4 bytes in place (the length stays, so deeper checks are reached)."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(out) - 1))
        out[at] = data.draw(st.integers(0, 255)) if data.draw(st.booleans()) else out[at] ^ 0x01
    return bytes(out)


def _fuzz(name, examples, body, *, min_refused=0.5):
    counter = fuzz(name, examples, body)
    assert counter.total - counter.accepted >= examples * min_refused, counter
    return counter


def test_every_genuine_sample_verifies(genuine):
    for name in ("vcek", "vlek", "sim", "tdx-v4", "tdx-v5", "sgx-v3"):
        assert _verify(genuine, name, genuine[name]).measurement


# --- SEV-SNP report parser ------------------------------------------------------------------

def _snp_parse_body(genuine):
    def body(data, counter):
        base = genuine[data.draw(st.sampled_from(("vcek", "vlek", "sim")))].report
        raw = data.draw(st.one_of(st.just(None), st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE),
                                  st.binary(max_size=2 * REPORT_SIZE)))
        if raw is None:
            raw = poke(data, base) if data.draw(st.booleans()) else mutate(data, base)
        accepted, report = run_target(counter, lambda: parse_snp_report(raw))
        if accepted:
            # reserved bytes are not kept; every named field survives a round trip
            assert parse_snp_report(report.to_bytes()) == report
    return body


def test_fuzz_snp_report_parser(genuine):
    _fuzz("snp report parser", FAST, _snp_parse_body(genuine), min_refused=0.2)


@pytest.mark.slow
def test_fuzz_snp_report_parser_long(genuine):
    _fuzz("snp report parser (long)", SLOW, _snp_parse_body(genuine), min_refused=0.2)


# --- SEV-SNP evidence verifier (genuine VCEK and VLEK, simulated) ----------------------------

def _snp_verify_body(genuine):
    def body(data, counter):
        name = data.draw(st.sampled_from(("vcek", "vlek", "sim")))
        ev = genuine[name]
        target = data.draw(st.sampled_from(("report", "report", "cert", "both", "certs")))
        report, certs = ev.report, ev.certificates
        if target in ("report", "both"):
            report = poke(data, report)
        if target in ("cert", "both"):
            certs = tuple(mutate(data, c) if data.draw(st.booleans()) else poke(data, c) for c in certs)
        if target == "certs":
            certs = tuple(data.draw(st.lists(st.one_of(st.sampled_from(
                [c for e in ("vcek", "vlek", "sim") for c in genuine[e].certificates]),
                st.binary(max_size=400)), max_size=4)))
        mutant = replace(ev, report=report, certificates=certs)
        accepted, claims = run_target(counter, lambda: _verify(genuine, name, mutant))
        if accepted:
            original = parse_snp_report(ev.report)
            assert parse_snp_report(report).signed_bytes == original.signed_bytes
            assert claims.measurement == original.measurement and claims.report_data == original.report_data
    return body


def test_fuzz_snp_evidence_verifier(genuine):
    _fuzz("snp evidence verifier", FAST, _snp_verify_body(genuine))


@pytest.mark.slow
def test_fuzz_snp_evidence_verifier_long(genuine):
    _fuzz("snp evidence verifier (long)", SLOW, _snp_verify_body(genuine))


@pytest.mark.parametrize("offset, value", [(130, None), (291, 3), (384, None), (392, None)],
                         ids=["issuer", "subject-tag", "curve", "key"])
def test_a_malformed_certificate_is_refused_cleanly(genuine, offset, value):
    """One byte of the genuine VCEK certificate changed (found by the fuzzer): the certificate
    still loads, but a field read later is malformed; it is refused, not a crash."""
    ev = genuine["vcek" if offset != 130 else "vlek"]
    cert = bytearray(ev.certificates[0])
    cert[offset] = value if value is not None else cert[offset] ^ 0x01
    from teenet.errors import VerificationError
    with pytest.raises(VerificationError) as info:
        _verify(genuine, "vcek" if offset != 130 else "vlek", replace(ev, certificates=(bytes(cert),)))
    assert info.value.check.startswith("snp.")


# --- DCAP quotes: parser and verifier --------------------------------------------------------

def _dcap_body(genuine, verify: bool):
    def body(data, counter):
        name = data.draw(st.sampled_from(("tdx-v4", "tdx-v5", "sgx-v3")))
        ev = genuine[name]
        raw = poke(data, ev.report) if data.draw(st.booleans()) else mutate(data, ev.report)
        if not verify:
            accepted, quote = run_target(counter, lambda: parse_quote(raw))
            if accepted:
                assert len(quote.signed_data) <= len(raw)
            return
        accepted, claims = run_target(counter, lambda: _verify(genuine, name, replace(ev, report=raw)))
        if accepted:
            original = _verify(genuine, name, ev)
            assert parse_quote(raw).signed_data == parse_quote(ev.report).signed_data
            assert claims.measurement == original.measurement and claims.report_data == original.report_data
    return body


def test_fuzz_dcap_quote_parser(genuine):
    _fuzz("dcap quote parser", FAST, _dcap_body(genuine, False), min_refused=0.3)


def test_fuzz_dcap_quote_verifier(genuine):
    _fuzz("dcap quote verifier", FAST, _dcap_body(genuine, True))


@pytest.mark.slow
def test_fuzz_dcap_quote_parser_and_verifier_long(genuine):
    _fuzz("dcap quote parser (long)", SLOW, _dcap_body(genuine, False), min_refused=0.3)
    _fuzz("dcap quote verifier (long)", SLOW, _dcap_body(genuine, True))


# --- the JSON evidence envelope, then verification --------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)), max_leaves=8)


def _envelope_body(genuine):
    names = ("vcek", "vlek", "sim", "tdx-v4", "tdx-v5", "sgx-v3")

    def body(data, counter):
        name = data.draw(st.sampled_from(names))
        doc = genuine[name].to_json()
        kind = data.draw(st.sampled_from(("bytes", "field", "b64", "random")))
        if kind == "bytes":
            raw = mutate(data, genuine[name].to_bytes())
        elif kind == "field":
            doc[data.draw(st.sampled_from(("platform", "report", "certificates", "provider", "extra")))] = \
                data.draw(json_values)
            raw = json.dumps(doc).encode()
        elif kind == "b64":  # valid base64 of a mutated report, under any platform label
            doc["report"] = base64.b64encode(poke(data, genuine[name].report)).decode()
            doc["platform"] = data.draw(st.sampled_from([p.value for p in Platform]))
            raw = json.dumps(doc).encode()
        else:
            raw = data.draw(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))

        def parse_and_verify():
            ev = Evidence.from_bytes(raw, source="fuzz")
            return ev, verify_platform_evidence(ev, _roots(genuine, name))

        accepted, out = run_target(counter, parse_and_verify)
        if accepted:
            ev, claims = out
            assert ev.platform == genuine[name].platform
            original = _verify(genuine, name, genuine[name])
            assert claims.measurement == original.measurement and claims.report_data == original.report_data
    return body


def test_fuzz_evidence_envelope(genuine):
    _fuzz("evidence JSON envelope + verifier", FAST, _envelope_body(genuine))


@pytest.mark.slow
def test_fuzz_evidence_envelope_long(genuine):
    _fuzz("evidence JSON envelope + verifier (long)", SLOW, _envelope_body(genuine))
