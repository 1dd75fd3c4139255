"""`teenet job result` (and `submit --wait --out`) exits 1 when a result's lineage does not verify."""

import pytest
import typer

from teenet.cli.job import _exit_if_lineage_broken


def test_a_broken_lineage_exits_1_and_names_the_link(capsys):
    data = {"lineage": [{"kind": "ids", "ok": True, "broken": None},
                        {"kind": "aggregate", "ok": False, "broken": "drop.inclusion"}]}
    with pytest.raises(typer.Exit) as exc:
        _exit_if_lineage_broken(data)
    assert exc.value.exit_code == 1
    err = capsys.readouterr().err
    assert "aggregate" in err and "drop.inclusion" in err and "ids" not in err


def test_verified_lineage_or_none_passes():
    _exit_if_lineage_broken({"lineage": [{"kind": "ids", "ok": True, "broken": None}]})
    _exit_if_lineage_broken({"lineage": []})
