"""The consortium's optional `coordinator.audit_key` (teenet/config.py): the coordinator's log
key members witness its log under; validated with its field and line."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.cli.audit import _coordinator_log_state
from teenet.config import load_consortium
from teenet.errors import InputError
from teenet.identity import b64_raw
from teenet.witness import coordinator_log

LINE = "coordinator: {name: coordinator, endpoint: \"127.0.0.1:7400\"}"


def test_the_coordinators_log_key_is_optional_checked_and_never_a_members(sandbox):
    base = sandbox.consortium_path.read_text()
    assert LINE in base
    old = load_consortium(sandbox.consortium_path)
    assert old.coordinator_audit_key is None and coordinator_log(old) == {}  # old files keep working
    assert _coordinator_log_state(old).startswith("unwitnessed: the consortium file names no coordinator.audit_key")
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    ok = sandbox.write("with-key.yaml", base.replace(LINE, LINE[:-1] + f", audit_key: \"{b64_raw(key)}\"}}"))
    pinned = load_consortium(ok)
    assert pinned.coordinator_audit_key.public_bytes_raw() == key.public_bytes_raw()
    assert list(coordinator_log(pinned)) == ["coordinator"] and _coordinator_log_state(pinned) == "witnessed"
    bank = b64_raw(sandbox.keys["bank"].public().signing)
    for value, expected in (("not-base64!", "coordinator.audit_key"), (bank, "already bank.signing_key's")):
        bad = sandbox.write("bad-key.yaml", base.replace(LINE, LINE[:-1] + f", audit_key: \"{value}\"}}"))
        with pytest.raises(InputError) as caught:
            load_consortium(bad)
        text = str(caught.value)
        assert expected in text and "bad-key.yaml:" in text, text
