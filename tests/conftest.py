"""Shared test fixtures. Genuine attestation evidence lives in tests/fixtures (sources in its README)."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ATTESTATION_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "attestation"


@pytest.fixture(scope="session")
def attestation_fixtures() -> Path:
    """tests/fixtures/attestation: the project carries it, so a missing folder is an error."""
    assert ATTESTATION_FIXTURES.is_dir(), f"genuine attestation evidence missing at {ATTESTATION_FIXTURES}"
    return ATTESTATION_FIXTURES


@pytest.fixture(scope="session")
def sim_platform(tmp_path_factory):
    """One simulated SEV-SNP platform per test session (RSA-4096 keys are slow to make)."""
    from teenet.attestation.sim import SimulatedPlatform

    return SimulatedPlatform.load_or_create(tmp_path_factory.mktemp("sim-platform"))
