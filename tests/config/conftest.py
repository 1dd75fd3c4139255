"""Fixtures for the config tests: a sandbox laid out from configs/*.example.yaml with fresh keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from config_sandbox import MEMBERS, Sandbox, make_sandbox
from teenet.identity import MemberKeys


@pytest.fixture(scope="session")
def member_keys() -> dict[str, MemberKeys]:
    return {name: MemberKeys.generate() for name in MEMBERS}


@pytest.fixture
def sandbox(tmp_path: Path, member_keys: dict[str, MemberKeys]) -> Sandbox:
    return make_sandbox(tmp_path, member_keys)
