"""What `teenet job validate` says about a mistake: the file, the line and the YAML's own field."""

from __future__ import annotations

import pytest

from teenet.cli.main import main

JOB = """name: x
function: psi
compute: compute-1
inputs:
  - {party: bank, table: customers, key: customer_id}
  - {party: telco, table: usage, key: customer_id}
release:
  - {kind: size, to: [analyst]}
  - {kind: model, to: [analyst]}
"""


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setenv("TEENET_NO_CACHE", "1")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from teenet.cli.sandbox import init_sandbox

    d = tmp_path_factory.mktemp("net")
    init_sandbox(d, rows=200)
    return d


def validate(capsys, tmp_path, text: str, *extra: str) -> tuple[int, str]:
    spec = tmp_path / "job.yaml"
    spec.write_text(text)
    capsys.readouterr()
    code = main(["job", "validate", str(spec), *extra])
    return code, capsys.readouterr().err.strip()


def test_a_release_kind_the_function_never_releases_names_file_line_and_release_index(capsys, tmp_path):
    code, err = validate(capsys, tmp_path, JOB)
    assert code == 1 and len(err.splitlines()) == 1
    assert f"{tmp_path / 'job.yaml'}:9" in err
    assert "release[1].kind" in err and "requests[" not in err
    assert "ids, size, sums" in err


def test_an_unknown_party_lists_the_consortiums_data_members(capsys, tmp_path, net):
    code, err = validate(capsys, tmp_path, JOB.replace("party: telco", "party: telcox").replace(
        "  - {kind: model, to: [analyst]}\n", ""), "--config", str(net / "analyst.yaml"))
    assert code == 1
    assert ":6, field 'inputs[1].party'" in err
    assert "(data members: bank, insurer, telco)" in err
    code, err = validate(capsys, tmp_path, JOB.replace("to: [analyst]}\n  - {kind: model, to: [analyst]}",
                                                       "to: [analyst, eve]}"), "--config",
                         str(net / "analyst.yaml"))
    assert code == 1 and "recipient 'eve'" in err and "analyst, bank, compute-1, insurer, telco" in err


def test_a_validated_spec_is_remembered_only_for_the_same_spec_and_code(tmp_path, monkeypatch):
    from teenet.cli import validation_cache
    from teenet.jobspec import parse_job_spec

    monkeypatch.delenv("TEENET_NO_CACHE")
    monkeypatch.setenv("TEENET_CACHE_DIR", str(tmp_path / "cache"))
    good = JOB.replace("  - {kind: model, to: [analyst]}\n", "")
    spec = parse_job_spec(good)
    assert not validation_cache.passed_before(spec)
    validation_cache.record_pass(spec)
    assert validation_cache.passed_before(spec)
    assert validation_cache.passed_before(parse_job_spec("# a comment changes nothing checked\n" + good))
    assert not validation_cache.passed_before(parse_job_spec(good.replace("[analyst]", "[analyst, bank]")))
    assert not validation_cache.passed_before(parse_job_spec(good + "params: {normalise: {trim: true}}\n"))
    monkeypatch.setattr(validation_cache, "_models_code", lambda: b"other code")
    assert not validation_cache.passed_before(spec)


def test_a_remembered_spec_is_still_checked_against_the_consortium(capsys, tmp_path, monkeypatch, net):
    monkeypatch.delenv("TEENET_NO_CACHE")
    monkeypatch.setenv("TEENET_CACHE_DIR", str(tmp_path / "cache"))
    good = JOB.replace("  - {kind: model, to: [analyst]}\n", "")
    assert validate(capsys, tmp_path, good)[0] == 0
    code, err = validate(capsys, tmp_path, good.replace("table: usage", "table: calls"), "--config",
                         str(net / "analyst.yaml"))
    assert code == 1 and "table 'calls'" in err


PREDICT = """name: score
function: predict
compute: compute-1
inputs:
  - {party: bank, table: customers, key: customer_id, columns: [age]}
  - {party: telco, table: usage, key: customer_id, columns: [minutes]}
params:
  model: MODEL
  ids_from: bank
release:
  - {kind: scores, to: [bank]}
"""
TRAIN_ID = "ab" * 32


@pytest.mark.parametrize("model, field, expected", [
    ("default-risk", "params.model'", "job: \"<64-hex id of the train job>\""),
    (f"{{job: \"{TRAIN_ID}\"}}", "params.model'", "from: <party that received the model>"),
    ("{job: \"abc123\", from: bank}", "params.model.job'", "64 lowercase hex characters"),
    (f"{{job: \"{TRAIN_ID.upper()}\", from: bank}}", "params.model.job'", "64 lowercase hex characters"),
    (f"{{job: \"{TRAIN_ID}\", from: insurer}}", "params.model.from'", "one of bank, telco"),
    (f"{{job: \"{TRAIN_ID}\", from: bank, to: telco}}", "params.model'", "expected {job:"),
])
def test_a_predict_jobs_model_reference_is_checked_and_named(capsys, tmp_path, model, field, expected):
    code, err = validate(capsys, tmp_path, PREDICT.replace("MODEL", model))
    assert code == 1 and len(err.splitlines()) == 1, err
    assert f"{tmp_path / 'job.yaml'}:8" in err and f"field '{field}" in err and expected in err, err
    assert "Traceback" not in err


def test_a_well_formed_model_reference_validates(capsys, tmp_path):
    code, err = validate(capsys, tmp_path, PREDICT.replace("MODEL", f"{{job: \"{TRAIN_ID}\", from: bank}}"))
    assert code == 0, err


def test_submit_out_without_wait_is_refused_before_anything_is_sent(capsys, tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(JOB)
    code = main(["job", "submit", str(spec), "--out", str(tmp_path / "res"), "--config", str(tmp_path / "none.yaml")])
    err = capsys.readouterr().err
    assert code == 1 and "--out" in err and "--wait" in err and "Traceback" not in err
    assert not (tmp_path / "res").exists()


@pytest.mark.slow  # starts the installed command as processes
def test_the_installed_command_ends_a_job_command_with_its_output_whole_and_its_code(tmp_path):
    """`teenet job ...` ends the process without the interpreter's teardown: all it wrote to a
    pipe still arrives, and the exit code is the command's (0 success, 1 refusal, 2 usage)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    teenet = Path(sys.executable).with_name("teenet")
    good = tmp_path / "good.yaml"
    good.write_text(PREDICT.replace("MODEL", f"{{job: \"{TRAIN_ID}\", from: bank}}"))
    # block-buffered stdout, as in a user's pipe: what the quick exit must flush itself
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("TEENET_CONFIG", "PYTHONUNBUFFERED")}
    env["TEENET_NO_CACHE"] = "1"
    ok = subprocess.run([teenet, "job", "validate", good, "--json"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"function": "predict", "name": "score", "valid": True}
    bad = tmp_path / "bad.yaml"
    bad.write_text(PREDICT.replace("MODEL", "default-risk"))
    refused = subprocess.run([teenet, "job", "validate", bad], capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and "params.model" in refused.stderr and refused.stdout == ""
    usage = subprocess.run([teenet, "job", "validate"], capture_output=True, text=True, env=env)
    assert usage.returncode == 2 and "Missing argument" in usage.stderr
