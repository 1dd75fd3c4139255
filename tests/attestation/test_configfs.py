"""ConfigfsTsmAttester against a temporary directory that plays the kernel's configfs-tsm part.

The fake kernel creates an entry's attributes on mkdir, bumps `generation` and produces the
outblob (a genuine SNP report or TDX quote) when `inblob` is written, and removes the entry
on rmdir, as configfs does. Races are a second writer bumping `generation` between our
write and our final read.
"""

from __future__ import annotations

import shutil
import struct
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from teenet.attestation.configfs import (
    ConfigfsTsmAttester, TsmFiles, parse_snp_certificate_table, snp_certificates_from_auxblob,
)
from teenet.attestation.dcap import verify_tdx_evidence
from teenet.attestation.evidence import Evidence, Platform, TrustRoots
from teenet.errors import InputError, VerificationError

VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd").bytes
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1").bytes
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782").bytes
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae").bytes
CRL_GUID = uuid.UUID("92f81bc3-5811-4d3d-97ff-d19f88dc67ea").bytes


def build_cert_table(entries: list[tuple[bytes, bytes]]) -> bytes:
    """GUID + offset + length per entry, an all-zero terminator, then the certificates."""
    header_size = 24 * (len(entries) + 1)
    header, data = b"", b""
    for guid, der in entries:
        header += guid + struct.pack("<II", header_size + len(data), len(der))
        data += der
    return header + bytes(24) + data


class FakeTsmKernel(TsmFiles):
    """configfs-tsm over a plain directory: the kernel's side of mkdir, write and rmdir."""

    def __init__(self, base: Path, *, provider: str | None, outblob: bytes, auxblob: bytes | None = None,
                 on_outblob_read: Callable[[Path], None] | None = None) -> None:
        self.base = base
        self.provider = provider
        self.outblob = outblob
        self.auxblob = auxblob
        self.on_outblob_read = on_outblob_read
        self.entries_made: list[Path] = []
        self.inblobs: list[bytes] = []
        self.lock = threading.Lock()

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)  # a real directory: FileNotFoundError if base is missing
        self.entries_made.append(path)
        (path / "generation").write_text("0\n")
        (path / "inblob").write_bytes(b"")
        (path / "privlevel").write_text("0\n")
        if self.provider is not None:
            (path / "provider").write_text(self.provider + "\n")

    def write(self, path: Path, data: bytes) -> None:
        with self.lock:
            if path.name == "inblob" and len(data) > 64:
                raise OSError(22, "Invalid argument")
            path.write_bytes(data)
            self.bump(path.parent)
            if path.name == "inblob":
                self.inblobs.append(data)
                (path.parent / "outblob").write_bytes(self.outblob)
                if self.auxblob is not None:
                    (path.parent / "auxblob").write_bytes(self.auxblob)

    def read(self, path: Path) -> bytes:
        data = super().read(path)
        if path.name == "outblob" and self.on_outblob_read is not None:
            self.on_outblob_read(path.parent)
        return data

    def rmdir(self, path: Path) -> None:
        shutil.rmtree(path)  # configfs removes the attributes with the entry

    def bump(self, entry: Path) -> None:
        generation = entry / "generation"
        generation.write_text(f"{int(generation.read_text()) + 1}\n")


@pytest.fixture()
def tsm_base(tmp_path: Path) -> Path:
    base = tmp_path / "tsm" / "report"
    base.mkdir(parents=True)
    return base


@pytest.fixture(scope="module")
def snp_material(attestation_fixtures: Path) -> dict[str, bytes]:
    snp = attestation_fixtures / "snp"
    ask, ark = x509.load_pem_x509_certificates((snp / "milan-ask-ark.pem").read_bytes())
    return {
        "report": (snp / "milan-vcek-report.bin").read_bytes(),
        "vlek_report": (snp / "milan-vlek-report.bin").read_bytes(),
        "vcek": (snp / "milan-vcek.der").read_bytes(),
        "vlek": (snp / "milan-vlek.der").read_bytes(),
        "ask": ask.public_bytes(Encoding.DER),
        "ark": ark.public_bytes(Encoding.DER),
    }


REPORT_DATA = bytes(range(64))


def test_snp_guest_gives_report_and_chain_leaf_first(tsm_base: Path, snp_material: dict[str, bytes]) -> None:
    # The host's order is deliberately not the chain order, and carries a CRL entry to skip.
    table = build_cert_table([(ARK_GUID, snp_material["ark"]), (CRL_GUID, b"crl-bytes"),
                              (ASK_GUID, snp_material["ask"]), (VCEK_GUID, snp_material["vcek"])])
    kernel = FakeTsmKernel(tsm_base, provider="sev_guest", outblob=snp_material["report"], auxblob=table)
    attester = ConfigfsTsmAttester(tsm_base, files=kernel)
    evidence = attester.attest(REPORT_DATA)
    assert evidence.platform is Platform.SNP and attester.platform is Platform.SNP
    assert evidence.report == snp_material["report"]
    assert evidence.certificates == (snp_material["vcek"], snp_material["ask"], snp_material["ark"])
    assert evidence.provider == "configfs-tsm:sev_guest"
    assert kernel.inblobs == [REPORT_DATA]
    assert list(tsm_base.iterdir()) == []  # the entry is removed
    assert Evidence.from_bytes(evidence.to_bytes()) == evidence


def test_snp_vlek_report_picks_the_vlek(tsm_base: Path, snp_material: dict[str, bytes]) -> None:
    table = build_cert_table([(VCEK_GUID, snp_material["vcek"]), (VLEK_GUID, snp_material["vlek"]),
                              (ASK_GUID, snp_material["ask"]), (ARK_GUID, snp_material["ark"])])
    # The VLEK report's signer info (0x4) names the VLEK as its signing key.
    assert snp_certificates_from_auxblob(table, snp_material["vlek_report"])[0] == snp_material["vlek"]
    assert snp_certificates_from_auxblob(table, snp_material["report"])[0] == snp_material["vcek"]


def test_snp_privlevel_is_written_and_counted(tsm_base: Path, snp_material: dict[str, bytes]) -> None:
    written: list[bytes] = []

    class Recording(FakeTsmKernel):
        def write(self, path: Path, data: bytes) -> None:
            written.append(path.name.encode() + b"=" + data[:4])
            super().write(path, data)

    kernel = Recording(tsm_base, provider="sev_guest", outblob=snp_material["report"], auxblob=b"")
    evidence = ConfigfsTsmAttester(tsm_base, privlevel=2, files=kernel).attest(REPORT_DATA)
    assert written[0] == b"privlevel=2"
    assert written[1].startswith(b"inblob=")
    assert evidence.certificates == ()  # empty auxblob: the verifier uses its VCEK cache


def test_tdx_guest_gives_a_quote_that_verifies(tsm_base: Path, attestation_fixtures: Path) -> None:
    quote = (attestation_fixtures / "tdx" / "tdx-v4-quote.dat").read_bytes()
    kernel = FakeTsmKernel(tsm_base, provider="tdx_guest", outblob=quote, auxblob=None)
    evidence = ConfigfsTsmAttester(tsm_base, files=kernel).attest(REPORT_DATA)
    assert evidence.platform is Platform.TDX
    assert evidence.certificates == ()
    assert evidence.provider == "configfs-tsm:tdx_guest"
    root = x509.load_pem_x509_certificate((attestation_fixtures / "tdx" / "intel-sgx-root-ca.pem").read_bytes())
    claims = verify_tdx_evidence(evidence, TrustRoots(intel_sgx_root=root,
                                                      now=datetime(2026, 6, 1, tzinfo=timezone.utc)))
    assert claims.platform is Platform.TDX


def test_privlevel_on_tdx_is_refused(tsm_base: Path) -> None:
    kernel = FakeTsmKernel(tsm_base, provider="tdx_guest", outblob=b"q")
    with pytest.raises(InputError, match="privlevel applies only to SEV-SNP"):
        ConfigfsTsmAttester(tsm_base, privlevel=0, files=kernel).attest(REPORT_DATA)
    assert list(tsm_base.iterdir()) == []


def test_a_race_is_retried_then_succeeds(tsm_base: Path, snp_material: dict[str, bytes]) -> None:
    races = {"left": 1}

    def other_writer(entry: Path) -> None:
        if races["left"]:
            races["left"] -= 1
            kernel.bump(entry)  # someone else wrote inblob to our entry

    kernel = FakeTsmKernel(tsm_base, provider="sev_guest", outblob=snp_material["report"],
                           on_outblob_read=other_writer)
    evidence = ConfigfsTsmAttester(tsm_base, files=kernel).attest(REPORT_DATA)
    assert evidence.report == snp_material["report"]
    assert len(kernel.entries_made) == 2  # a fresh entry for the second attempt
    assert list(tsm_base.iterdir()) == []


def test_a_persistent_race_is_refused(tsm_base: Path, snp_material: dict[str, bytes]) -> None:
    # A real second writer on another thread, racing every attempt.
    def other_writer(entry: Path) -> None:
        thread = threading.Thread(target=kernel.write, args=(entry / "inblob", b"\x00" * 64))
        thread.start()
        thread.join()

    kernel = FakeTsmKernel(tsm_base, provider="sev_guest", outblob=snp_material["report"],
                           on_outblob_read=other_writer)
    with pytest.raises(VerificationError) as err:
        ConfigfsTsmAttester(tsm_base, max_attempts=3, files=kernel).attest(REPORT_DATA)
    assert err.value.check == "tsm.generation"
    assert "gave up after 3 attempts" in str(err.value)
    assert "generation 2, expected 1" in str(err.value)
    assert len(kernel.entries_made) == 3
    assert list(tsm_base.iterdir()) == []


def test_missing_provider_is_a_clear_error(tsm_base: Path) -> None:
    kernel = FakeTsmKernel(tsm_base, provider=None, outblob=b"x")
    with pytest.raises(InputError, match="no TSM provider is registered"):
        ConfigfsTsmAttester(tsm_base, files=kernel).attest(REPORT_DATA)
    assert list(tsm_base.iterdir()) == []


def test_unknown_provider_is_a_clear_error(tsm_base: Path) -> None:
    kernel = FakeTsmKernel(tsm_base, provider="arm_cca_guest", outblob=b"x")
    with pytest.raises(InputError, match="unknown TSM provider 'arm_cca_guest'; expected one of sev_guest, tdx_guest"):
        ConfigfsTsmAttester(tsm_base, files=kernel).attest(REPORT_DATA)
    assert kernel.inblobs == []  # nothing was requested from an unknown provider
    assert list(tsm_base.iterdir()) == []


@pytest.mark.parametrize("bad", [b"", b"\x01" * 32, b"\x01" * 65, "a" * 64])
def test_report_data_of_the_wrong_length_is_refused(tsm_base: Path, bad) -> None:
    kernel = FakeTsmKernel(tsm_base, provider="sev_guest", outblob=b"x")
    with pytest.raises(InputError, match="report_data must be exactly 64 bytes") as err:
        ConfigfsTsmAttester(tsm_base, files=kernel).attest(bad)
    assert err.value.field == "report_data"
    assert kernel.entries_made == []


def test_no_configfs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot create a report entry") as err:
        ConfigfsTsmAttester(tmp_path / "absent").attest(REPORT_DATA)
    assert "kernel 6.7+" in str(err.value)


def test_garbled_generation_is_a_clear_error(tsm_base: Path) -> None:
    class Garbled(FakeTsmKernel):
        def mkdir(self, path: Path) -> None:
            super().mkdir(path)
            (path / "generation").write_text("lots\n")

    with pytest.raises(InputError, match="expected a decimal counter"):
        ConfigfsTsmAttester(tsm_base, files=Garbled(tsm_base, provider="tdx_guest", outblob=b"x")).attest(REPORT_DATA)
    assert list(tsm_base.iterdir()) == []


@pytest.mark.parametrize("table,message", [
    (b"\x01" * 30, "no all-zero terminating entry"),
    (VCEK_GUID + struct.pack("<II", 48, 5000) + bytes(24) + b"x" * 10, "entry 0 points outside"),
    (VCEK_GUID + struct.pack("<II", 0, 10) + bytes(24) + b"x" * 10, "entry 0 points outside"),
    (VCEK_GUID + struct.pack("<II", 72, 2) + VCEK_GUID + struct.pack("<II", 72, 2) + bytes(24) + b"xy",
     "lists the VCEK twice"),
])
def test_malformed_certificate_tables_are_refused(table: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_snp_certificate_table(table)


def test_certificate_table_without_a_leaf_gives_no_chain(snp_material: dict[str, bytes]) -> None:
    table = build_cert_table([(ASK_GUID, snp_material["ask"]), (ARK_GUID, snp_material["ark"])])
    assert parse_snp_certificate_table(table) == {"ask": snp_material["ask"], "ark": snp_material["ark"]}
    assert snp_certificates_from_auxblob(table, snp_material["report"]) == ()


def test_snp_evidence_from_configfs_verifies_when_the_snp_verifier_is_present(
        tsm_base: Path, snp_material: dict[str, bytes]) -> None:
    snp = pytest.importorskip("teenet.attestation.snp", reason="teenet/attestation/snp.py not written yet")
    table = build_cert_table([(VCEK_GUID, snp_material["vcek"]), (ASK_GUID, snp_material["ask"]),
                              (ARK_GUID, snp_material["ark"])])
    kernel = FakeTsmKernel(tsm_base, provider="sev_guest", outblob=snp_material["report"], auxblob=table)
    evidence = ConfigfsTsmAttester(tsm_base, files=kernel).attest(REPORT_DATA)
    ark = x509.load_der_x509_certificate(snp_material["ark"])
    claims = snp.verify_snp_evidence(evidence, TrustRoots(amd_arks={"Milan": ark},
                                                          now=datetime(2024, 6, 1, tzinfo=timezone.utc)))
    assert claims.report_data[:5] == bytes([1, 2, 3, 4, 5])


def test_random_tables_are_parsed_or_refused_never_crash(snp_material: dict[str, bytes]) -> None:
    import random

    rng = random.Random(7)
    good = build_cert_table([(VCEK_GUID, snp_material["vcek"]), (ASK_GUID, snp_material["ask"])])
    for _ in range(2000):
        blob = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            blob[rng.randrange(0, 72)] = rng.randrange(256)  # mangle the entries, not the data
        try:
            table = parse_snp_certificate_table(bytes(blob))
        except InputError as exc:
            assert str(exc).startswith("auxblob: ")
            continue
        assert all(len(der) > 0 for der in table.values())
