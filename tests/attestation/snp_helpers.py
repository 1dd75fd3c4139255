"""Helpers shared by the SEV-SNP, simulator and CLI tests: genuine fixtures, tampering, one
simulated platform per test process (RSA-4096 generation is slow)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509

from teenet.attestation.evidence import Evidence, Platform
from teenet.attestation.sim import SimulatedPlatform

# Inside the VLEK certificate's validity (2024-12-10 .. 2025-12-10).
VLEK_VALID_AT = datetime(2025, 6, 1, tzinfo=timezone.utc)
MEASUREMENT = bytes(range(48))


def snp_dir(fixtures: Path) -> Path:
    return fixtures / "snp"


def read(fixtures: Path, name: str) -> bytes:
    return (snp_dir(fixtures) / name).read_bytes()


def vcek_evidence(fixtures: Path) -> Evidence:
    return Evidence(Platform.SNP, read(fixtures, "milan-vcek-report.bin"), (read(fixtures, "milan-vcek.der"),))


def vlek_evidence(fixtures: Path) -> Evidence:
    return Evidence(Platform.SNP, read(fixtures, "milan-vlek-report.bin"), (read(fixtures, "milan-vlek.der"),))


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    """A copy with one byte changed."""
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def pem_certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


@functools.cache
def shared_sim_platform_dir() -> Path:
    """One simulated platform for the whole test run, in a temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="teenet-sim-test-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    SimulatedPlatform.load_or_create(directory)
    return directory


@functools.cache
def shared_sim_platform() -> SimulatedPlatform:
    return SimulatedPlatform.load_or_create(shared_sim_platform_dir())


@functools.cache
def other_sim_platform() -> SimulatedPlatform:
    """A second, unrelated simulated platform (for swapped-key attacks)."""
    directory = Path(tempfile.mkdtemp(prefix="teenet-sim-test-other-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return SimulatedPlatform.load_or_create(directory)
