"""A real sandbox network: coordinator, compute node and three data nodes as processes on loopback.

Recording proxies stand in front of the coordinator and the compute node (the consortium
file points everyone at them), so tests can search everything that crossed the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from netproxy import RecordingProxy


@dataclass
class Network:
    directory: Path
    coordinator_wire: RecordingProxy
    compute_wire: RecordingProxy

    def __truediv__(self, other: str) -> Path:
        return self.directory / other


def interpose_proxies(directory: Path) -> tuple[RecordingProxy, RecordingProxy]:
    """Point the consortium's coordinator and compute endpoints at recording proxies."""
    import yaml

    path = directory / "consortium.yaml"
    text = path.read_text()
    data = yaml.safe_load(text)
    coord_port = int(data["coordinator"]["endpoint"].rsplit(":", 1)[1])
    compute_port = int(data["members"]["compute-1"]["endpoint"].rsplit(":", 1)[1])
    coordinator_wire, compute_wire = RecordingProxy(coord_port), RecordingProxy(compute_port)
    text = text.replace(f"127.0.0.1:{coord_port}", f"127.0.0.1:{coordinator_wire.port}")
    text = text.replace(f"127.0.0.1:{compute_port}", f"127.0.0.1:{compute_wire.port}")
    path.write_text(text)  # the daemons themselves still listen on their own ports
    return coordinator_wire, compute_wire


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("sandbox")
    init_sandbox(d, rows=3000)
    coordinator_wire, compute_wire = interpose_proxies(d)
    up_sandbox(d)
    try:
        yield Network(d, coordinator_wire, compute_wire)
    finally:
        down_sandbox(d)
        coordinator_wire.close()
        compute_wire.close()
