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
