"""A coordinator refuses to start when the consortium file pins another audit key than its
own: the members would witness a log it never writes (teenet/coordinator/server.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.audit import load_audit_key
from teenet.errors import InputError

from coordinator_testkit import serve_coordinator


def test_a_coordinator_whose_audit_key_is_not_the_consortiums_refuses_to_start(world, tmp_path):
    other = replace(world.consortium, coordinator_audit_key=ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(InputError) as caught:
        serve_coordinator(replace(world, consortium=other), tmp_path / "a", ("bank",))
    assert "coordinator.audit_key" in str(caught.value)
    own = load_audit_key(tmp_path / "b" / "state" / "audit.key").public_key()
    running = serve_coordinator(replace(world, consortium=replace(world.consortium, coordinator_audit_key=own)),
                                tmp_path / "b", ("bank",))
    running.close()
