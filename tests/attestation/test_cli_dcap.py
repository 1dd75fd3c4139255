"""`teenet attest verify` on genuine TDX and SGX quotes (raw files), and on a tampered copy.

Only the behaviour a user sees is asserted: exit code, the facts in the JSON, and a
one-line error naming the failed check.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

pytest.importorskip("teenet.cli.attest", reason="cli/attest.py (teenet attest verify) is not written yet")

from teenet.cli.main import main  # noqa: E402

AT = "2026-06-01T00:00:00+00:00"  # inside every fixture certificate's validity

FACTS = {
    "tdx/tdx-v4-quote.dat": ("tdx", 4),
    "tdx/tdx-v5-quote.dat": ("tdx", 5),
    "sgx/sgx-v3-quote.dat": ("sgx", 3),
}


def _measurement(raw: bytes, platform: str) -> str:
    body = 48 + (6 if struct.unpack_from("<H", raw)[0] == 5 else 0)
    return raw[body + 136:body + 184].hex() if platform == "tdx" else raw[body + 64:body + 96].hex()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["attest", "verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(FACTS))
@pytest.mark.parametrize("platform_flag", ["auto", "explicit"])
def test_genuine_quote_verifies(name: str, platform_flag: str, attestation_fixtures: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    platform, version = FACTS[name]
    path = attestation_fixtures / name
    raw = path.read_bytes()
    flag = platform if platform_flag == "explicit" else "auto"
    # The SGX fixture is a debug enclave: accepted only when debug is explicitly allowed.
    debug = ["--allow-debug"] if platform == "sgx" else []
    code, out, err = _run(capsys, str(path), "--json", "--at", AT, "--platform", flag, *debug)
    assert code == 0, err
    result = json.loads(out)
    assert result["verified"] is True
    assert result["platform"] == platform
    assert result["version"] == version
    assert result["details"]["quote_version"] == version
    assert result["measurement"] == _measurement(raw, platform)
    assert result["signer"] == "pck"
    if platform == "sgx":
        assert result["report_data"] == "00" * 64  # README fact: the SGX quote's report_data is all zeros
        assert result["debug"] is True
    else:
        assert result["debug"] is False


def test_debug_sgx_enclave_is_refused_by_default(attestation_fixtures: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, str(attestation_fixtures / "sgx" / "sgx-v3-quote.dat"), "--json", "--at", AT)
    assert code == 1
    assert "policy.debug" in err


def test_measurement_pin_is_enforced(attestation_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = attestation_fixtures / "tdx" / "tdx-v4-quote.dat"
    right = _measurement(path.read_bytes(), "tdx")
    code, _, err = _run(capsys, str(path), "--json", "--at", AT, "--measurement", right)
    assert code == 0, err
    code, _, err = _run(capsys, str(path), "--json", "--at", AT, "--measurement", "00" * 48)
    assert code == 1
    assert "policy.measurement" in err


@pytest.mark.parametrize("name,offset_in_body,check", [
    ("tdx/tdx-v4-quote.dat", 136, "dcap.signature"),   # MRTD
    ("sgx/sgx-v3-quote.dat", 320, "dcap.signature"),   # report_data
])
def test_tampered_quote_is_refused_in_one_line(name: str, offset_in_body: int, check: str, tmp_path: Path,
                                               attestation_fixtures: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    tampered = tmp_path / "tampered.dat"
    shutil.copyfile(attestation_fixtures / name, tampered)
    data = bytearray(tampered.read_bytes())
    data[48 + offset_in_body] ^= 0x01
    tampered.write_bytes(bytes(data))
    code, out, err = _run(capsys, str(tampered), "--json", "--at", AT)
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert check in lines[0]
    assert "Traceback" not in err and "Traceback" not in out


def test_truncated_quote_is_refused_in_one_line(tmp_path: Path, attestation_fixtures: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cut = tmp_path / "cut.dat"
    cut.write_bytes((attestation_fixtures / "tdx" / "tdx-v5-quote.dat").read_bytes()[:900])
    code, _, err = _run(capsys, str(cut), "--json", "--at", AT, "--platform", "tdx")
    assert code == 1
    assert "dcap.parse" in err
    assert "Traceback" not in err


def test_revocation_is_reported_unchecked_without_crl_and_a_forged_crl_is_refused(
        attestation_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from teenet.attestation.dcap_quote import parse_quote

    path = attestation_fixtures / "tdx" / "tdx-v4-quote.dat"
    code, out, err = _run(capsys, str(path), "--json", "--at", AT)
    assert code == 0, err
    assert any("revocation NOT checked" in w for w in json.loads(out)["warnings"])
    # A CRL carrying the genuine PCK CA's name, signed by some other key.
    chain = parse_quote(path.read_bytes()).certification.pck_chain_pem.rstrip(b"\x00")
    issuer = x509.load_pem_x509_certificates(chain)[0].issuer
    at = datetime(2026, 6, 1, tzinfo=timezone.utc)
    forged = (x509.CertificateRevocationListBuilder().issuer_name(issuer).last_update(at - timedelta(days=1))
              .next_update(at + timedelta(days=30)).sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
    crl = tmp_path / "pck.crl"
    crl.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    code, out, err = _run(capsys, str(path), "--at", AT, "--crl", str(crl))
    assert code == 1 and out == ""
    assert "dcap.crl" in err and "not signed by its issuer" in err and "Traceback" not in err
