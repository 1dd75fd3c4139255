"""The consortium's `witness_quorum` (teenet/witness.py): validated with its field and line."""

from __future__ import annotations

import pytest

from teenet.config import load_consortium
from teenet.errors import InputError


def test_witness_quorum_defaults_to_one_and_is_bounded_by_the_witnesses(sandbox):
    base = sandbox.consortium_path.read_text()
    assert load_consortium(sandbox.consortium_path).witness_quorum == 1
    witnesses = sum(1 for m in load_consortium(sandbox.consortium_path).members.values()
                    if m.role in ("data", "compute"))
    path = sandbox.write("quorum-ok.yaml", base + f"witness_quorum: {witnesses - 1}\n")
    assert load_consortium(path).witness_quorum == witnesses - 1
    for value, expected in ((str(witnesses), f"from 1 to {witnesses - 1}"), ("0", "from 1"), ("two", "integer")):
        path = sandbox.write("quorum-bad.yaml", base + f"witness_quorum: {value}\n")
        with pytest.raises(InputError) as caught:
            load_consortium(path)
        text = str(caught.value)
        assert "witness_quorum" in text and expected in text and "quorum-bad.yaml:" in text
