"""`teenet budget show|raise`: the ledger next to the configured budgets; a raise is audited first."""

from __future__ import annotations

import json

import pytest

from teenet.audit import read_log, verify_chain
from teenet.cli.main import main

from config_sandbox import Sandbox


def _run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def bank(sandbox: Sandbox):
    sandbox.keys["bank"].save(sandbox.root / "bank" / "keys")
    return sandbox.root / "bank" / "node.yaml"


def test_show_before_the_node_ran_gives_the_configured_budget(bank, capsys):
    code, out, err = _run(capsys, "budget", "show", "--config", bank, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["accountant"] == "sequential composition"
    [t] = doc["tables"]
    assert (t["table"], t["epsilon"], t["delta"], t["spent_epsilon"], t["remaining_epsilon"]) == \
        ("customers", 10.0, 1e-6, 0.0, 10.0)
    assert not (bank.parent / "state" / "node.db").exists()  # showing creates no state
    code, out, _ = _run(capsys, "budget", "show", "--config", bank)
    assert code == 0 and "customers" in out and "sequential composition" in out


def test_a_raise_is_in_the_audit_chain_with_the_operator_and_adds_to_the_budget(bank, sandbox, capsys):
    code, out, err = _run(capsys, "budget", "raise", "customers", "--epsilon", "2.5", "--delta", "0.000001",
                          "--operator", "dana", "--reason", "board approved Q3", "--config", bank, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["epsilon"] == pytest.approx(12.5) and doc["remaining_delta"] == pytest.approx(2e-6)
    entries, checkpoints = read_log(bank.parent / "state" / "audit.db")
    [raised] = [dict(e.event) for e in entries if e.event["event"] == "budget_raised"]
    assert (raised["table"], raised["epsilon"], raised["operator"], raised["reason"], raised["budget_epsilon"]) == \
        ("customers", 2.5, "dana", "board approved Q3", 12.5)
    assert verify_chain(entries, checkpoints, sandbox.keys["bank"].public().signing).ok
    code, out, _ = _run(capsys, "budget", "show", "--config", bank, "--json")
    assert json.loads(out)["tables"][0]["raised_epsilon"] == pytest.approx(2.5)


@pytest.mark.parametrize("args, words", [
    (["staff", "--epsilon", "1"], "table 'staff' is not shared by bank's policy"),
    (["customers", "--epsilon", "0"], "nothing to raise"),
    (["customers", "--epsilon", "-1"], "--epsilon must be a number from 0"),
    (["customers", "--epsilon", "1", "--delta", "0.9"], "--delta must be a number from 0 to 0.5"),
])
def test_a_bad_raise_is_one_red_line_and_changes_nothing(bank, capsys, args, words):
    code, _, err = _run(capsys, "budget", "raise", *args, "--operator", "dana", "--reason", "x", "--config", bank)
    assert code == 1 and words in err and err.count("\n") == 1, err
    assert not (bank.parent / "state" / "audit.db").exists()


def test_a_compute_node_has_no_budget(sandbox, capsys):
    code, _, err = _run(capsys, "budget", "show", "--config", sandbox.root / "compute-1" / "node.yaml")
    assert code == 1 and "only data nodes keep privacy budgets" in err
