"""GramineSgxAttester against a temporary directory laid out like Gramine's /dev/attestation."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509

from teenet.attestation.dcap import verify_sgx_evidence
from teenet.attestation.evidence import Evidence, Platform, TrustRoots
from teenet.attestation.gramine import GramineSgxAttester
from teenet.errors import InputError, VerificationError


def make_dev_attestation(tmp_path: Path, *, kind: str | None = "dcap", quote: bytes | None = None) -> Path:
    base = tmp_path / "dev-attestation"
    base.mkdir()
    if kind is not None:
        (base / "attestation_type").write_text(kind)
    (base / "user_report_data").write_bytes(bytes(64))
    if quote is not None:
        (base / "quote").write_bytes(quote)
    return base


@pytest.fixture(scope="module")
def sgx_quote(attestation_fixtures: Path) -> bytes:
    return (attestation_fixtures / "sgx" / "sgx-v3-quote.dat").read_bytes()


def test_quote_is_returned_as_sgx_evidence_and_verifies(tmp_path: Path, sgx_quote: bytes,
                                                       attestation_fixtures: Path) -> None:
    base = make_dev_attestation(tmp_path, quote=sgx_quote)
    # The genuine quote's report_data is all zeros, so that is what this enclave asks for.
    evidence = GramineSgxAttester(base).attest(bytes(64))
    assert evidence == Evidence(Platform.SGX, sgx_quote, (), "gramine:dcap")
    assert (base / "user_report_data").read_bytes() == bytes(64)
    root = x509.load_pem_x509_certificate((attestation_fixtures / "sgx" / "intel-sgx-root-ca.pem").read_bytes())
    claims = verify_sgx_evidence(evidence, TrustRoots(intel_sgx_root=root,
                                                      now=datetime(2026, 6, 1, tzinfo=timezone.utc)))
    assert claims.report_data == bytes(64)


def test_report_data_is_written_and_a_quote_without_it_is_refused(tmp_path: Path, sgx_quote: bytes) -> None:
    base = make_dev_attestation(tmp_path, quote=sgx_quote)
    wanted = bytes(range(64))
    with pytest.raises(VerificationError) as err:
        GramineSgxAttester(base).attest(wanted)
    assert err.value.check == "gramine.report_data"
    assert (base / "user_report_data").read_bytes() == wanted


def test_not_under_gramine(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not running inside Gramine-SGX"):
        GramineSgxAttester(tmp_path / "nothing").attest(bytes(64))


@pytest.mark.parametrize("kind", ["none", "epid"])
def test_wrong_attestation_type(tmp_path: Path, kind: str, sgx_quote: bytes) -> None:
    base = make_dev_attestation(tmp_path, kind=kind, quote=sgx_quote)
    with pytest.raises(InputError, match=f"attestation type is '{kind}'; expected 'dcap'"):
        GramineSgxAttester(base).attest(bytes(64))
    assert (base / "user_report_data").read_bytes() == bytes(64)  # nothing written


def test_missing_quote_is_a_clear_error(tmp_path: Path) -> None:
    base = make_dev_attestation(tmp_path, quote=None)
    with pytest.raises(InputError, match="cannot read"):
        GramineSgxAttester(base).attest(bytes(64))


def test_garbage_quote_is_refused(tmp_path: Path) -> None:
    base = make_dev_attestation(tmp_path, quote=b"\x03\x00garbage")
    with pytest.raises(VerificationError) as err:
        GramineSgxAttester(base).attest(bytes(64))
    assert err.value.check == "dcap.parse"


def test_tdx_quote_is_refused(tmp_path: Path, attestation_fixtures: Path) -> None:
    base = make_dev_attestation(tmp_path, quote=(attestation_fixtures / "tdx" / "tdx-v4-quote.dat").read_bytes())
    with pytest.raises(VerificationError) as err:
        GramineSgxAttester(base).attest(bytes(64))
    assert err.value.check == "gramine.quote"


@pytest.mark.parametrize("bad", [b"", b"\x00" * 63, b"\x00" * 65])
def test_report_data_of_the_wrong_length(tmp_path: Path, bad: bytes, sgx_quote: bytes) -> None:
    base = make_dev_attestation(tmp_path, quote=sgx_quote)
    with pytest.raises(InputError, match="report_data must be exactly 64 bytes"):
        GramineSgxAttester(base).attest(bad)


# --- the MRENCLAVE sealing key (key_protection: enclave) -----------------------------------

def test_sealing_key_seals_and_only_the_same_mrenclave_key_unseals(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from teenet.attestation.gramine import gramine_sealing_key
    from teenet.keyfiles import EnclaveProtection, read_private_key, write_private_key

    base = make_dev_attestation(tmp_path)
    (base / "keys").mkdir()
    (base / "keys" / "_sgx_mrenclave").write_bytes(bytes(range(16)))
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "keys" / "signing.key"
    write_private_key(path, key, EnclaveProtection(gramine_sealing_key(base)))
    again = read_private_key(path, EnclaveProtection(gramine_sealing_key(base)))
    assert isinstance(again, ed25519.Ed25519PrivateKey) and again.private_bytes_raw() == key.private_bytes_raw()
    # Another MRENCLAVE (other code) gets another sealing key from EGETKEY.
    (base / "keys" / "_sgx_mrenclave").write_bytes(bytes(range(1, 17)))
    with pytest.raises(InputError, match="cannot unseal"):
        read_private_key(path, EnclaveProtection(gramine_sealing_key(base)))


def test_sealing_key_outside_gramine_or_of_the_wrong_size(tmp_path: Path) -> None:
    from teenet.attestation.gramine import gramine_sealing_key

    base = make_dev_attestation(tmp_path)
    with pytest.raises(InputError, match=r"keys/_sgx_mrenclave: not running inside Gramine-SGX 1.5 or later"):
        gramine_sealing_key(base)
    (base / "keys").mkdir()
    (base / "keys" / "_sgx_mrenclave").write_bytes(bytes(32))
    with pytest.raises(InputError, match="an SGX sealing key is 16 bytes, got 32"):
        gramine_sealing_key(base)
