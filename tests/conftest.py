"""Shared test fixtures. Real evidence lives in ../shared/fixtures (never copied here)."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
ATTESTATION_FIXTURES = SHARED / "fixtures" / "attestation"


@pytest.fixture(scope="session")
def attestation_fixtures() -> Path:
    """../shared/fixtures/attestation, or a skip that says why."""
    if not ATTESTATION_FIXTURES.is_dir():
        pytest.skip(f"genuine attestation evidence not found at {ATTESTATION_FIXTURES} "
                    "(the shared/ folder sits beside the project root in CI and development)")
    return ATTESTATION_FIXTURES


@pytest.fixture(scope="session")
def sim_platform(tmp_path_factory):
    """One simulated SEV-SNP platform per test session (RSA-4096 keys are slow to make)."""
    from teenet.attestation.sim import SimulatedPlatform

    return SimulatedPlatform.load_or_create(tmp_path_factory.mktemp("sim-platform"))
