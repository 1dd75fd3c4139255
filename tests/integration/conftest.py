"""A real sandbox network: coordinator, compute node and three data nodes as processes on loopback."""

from __future__ import annotations

import pytest

@pytest.fixture(scope="module")
def network(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("sandbox")
    init_sandbox(d, rows=3000)
    up_sandbox(d)
    try:
        yield d
    finally:
        down_sandbox(d)
