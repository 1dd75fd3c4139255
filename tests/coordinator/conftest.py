"""Fixtures for the coordinator tests (helpers live in coordinator_testkit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from coordinator_testkit import World, make_world
from teenet.audit import AuditLog
from teenet.coordinator.state import Coordinator
from teenet.coordinator.store import CoordinatorStore


@pytest.fixture(scope="session")
def world() -> World:
    return make_world()


@pytest.fixture
def open_coordinator(world: World, tmp_path: Path) -> Iterator[Callable[..., Coordinator]]:
    """Open (or reopen) the coordinator whose database is tmp_path/coordinator.db."""
    opened: list[Coordinator] = []
    audit_key = ed25519.Ed25519PrivateKey.generate()

    def make(*, checkpoint_every: int = 4, **limits) -> Coordinator:
        store = CoordinatorStore(tmp_path / "coordinator.db")
        audit = AuditLog(store.conn, audit_key, checkpoint_every=checkpoint_every, lock=store.lock)
        c = Coordinator(store, audit, world.consortium, clock=world.clock, **limits)
        opened.append(c)
        return c

    yield make
    for c in opened:
        try:
            c.store.close()
        except Exception:
            pass


@pytest.fixture
def coordinator(open_coordinator: Callable[..., Coordinator]) -> Coordinator:
    return open_coordinator()


