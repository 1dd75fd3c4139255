"""The coordinator config file: defaults, relative paths, and errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from teenet.coordinator.config import load_coordinator_config
from teenet.errors import InputError

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "coordinator.example.yaml"

GOOD = """\
name: coordinator
listen: "127.0.0.1:7400"
consortium: ../consortium.yaml
tls: {ca: pki/ca.pem, cert: pki/coordinator.pem, key: pki/coordinator.key}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "coord" / "coordinator.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_live_in_the_state_dir(tmp_path):
    cfg = load_coordinator_config(write(tmp_path, GOOD))
    folder = (tmp_path / "coord").resolve()
    assert cfg.database == folder / "coordinator.db" and cfg.audit_key == folder / "audit.key"
    assert cfg.consortium == folder / "../consortium.yaml" and cfg.tls.ca == folder / "pki/ca.pem"
    assert cfg.checkpoint_every == 64
    cfg = load_coordinator_config(write(tmp_path, GOOD + "state_dir: /var/lib/teenet\n"))
    assert cfg.database == Path("/var/lib/teenet/coordinator.db")


def test_the_shipped_example_loads():
    cfg = load_coordinator_config(EXAMPLE)
    assert cfg.name == "coordinator" and cfg.listen == "127.0.0.1:7400"
    assert cfg.database.name == "coordinator.db"


@pytest.mark.parametrize("old, new, message", [
    ('listen: "127.0.0.1:7400"', 'listen: "nowhere"', r"coordinator.yaml:2, field 'listen'.*host:port"),
    ('listen: "127.0.0.1:7400"', 'listen: "127.0.0.1:99999"', "field 'listen'"),
    ("name: coordinator", "name: Coordinator!", "field 'name'"),
    ("tls: {ca: pki/ca.pem, cert: pki/coordinator.pem, key: pki/coordinator.key}", "tls: {ca: pki/ca.pem}",
     "field 'tls.cert': missing required field"),
    ("consortium: ../consortium.yaml", "consortium: ../c.yaml\nconsortum: typo", "unknown field 'consortum'"),
])
def test_mistakes_name_file_line_and_field(tmp_path, old, new, message):
    with pytest.raises(InputError, match=message):
        load_coordinator_config(write(tmp_path, GOOD.replace(old, new)))
