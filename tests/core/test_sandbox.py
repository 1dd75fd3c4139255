"""`teenet sandbox init`: the consortium it writes loads, and it takes a party's own files."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest
import pyarrow.csv as pacsv

from teenet.cli.main import main
from teenet.config import load_analyst_config, load_node_config


def test_init_with_a_partys_own_csv_and_two_compute_nodes(tmp_path, capsys):
    own = tmp_path / "my-customers.csv"
    pacsv.write_csv(pa.table({"customer_id": [1, 2, 3], "segment": ["a", "b", "a"], "balance": [1.5, 2.5, 3.5]}), own)
    d = tmp_path / "net"
    code = main(["sandbox", "init", str(d), "--rows", "300", "--computes", "2",
                 "--data", f"bank:accounts={own}", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert sorted(summary["computes"]) == ["compute-1", "compute-2"]
    consortium = load_analyst_config(d / "analyst.yaml").consortium
    assert consortium.member("bank").tables == {"accounts": ("customer_id", "segment", "balance")}
    assert consortium.member("compute-2").role == "compute"
    bank = load_node_config(d / "bank.yaml")
    assert bank.tables["accounts"].path == own.resolve() and bank.tables["accounts"].format == "csv"
    assert load_node_config(d / "compute-2.yaml").listen == consortium.member("compute-2").endpoint


def test_init_refuses_a_bad_data_option_in_one_line(tmp_path, capsys):
    for spec, expected in (("bank=x.csv", "PARTY:TABLE=PATH"), ("police:t=x.csv", "party must be one of"),
                           (f"bank:t={tmp_path / 'missing.csv'}", "existing .csv or .parquet")):
        code = main(["sandbox", "init", str(tmp_path / "n"), "--data", spec])
        _, err = capsys.readouterr()
        assert code == 1 and expected in err and len(err.strip().splitlines()) == 1


def test_init_will_not_overwrite_without_force(tmp_path, capsys):
    assert main(["sandbox", "init", str(tmp_path), "--rows", "200"]) == 0
    capsys.readouterr()
    assert main(["sandbox", "init", str(tmp_path), "--rows", "200"]) == 1
    assert "--force" in capsys.readouterr().err


def _own_files(tmp_path):
    """A CSV of string ids (padded in one file) and one of numeric features, as a user has them."""
    ids = [f"C-{i:05d}" for i in range(300)]
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,age,income,segment,defaulted\n" + "".join(
        f"{c},{20 + i % 50},{1000 + 7 * i},{'abc'[i % 3]},{i % 2}\n" for i, c in enumerate(ids[:200])))
    usage = tmp_path / "usage.csv"
    usage.write_text("customer_id,minutes,data_gb\n" + "".join(
        f" {c} ,{i * 1.5},{i % 17}\n" for i, c in enumerate(ids[100:])))
    return customers, usage


def test_init_with_own_files_writes_jobs_on_their_columns_and_key_type_and_no_synthetic_tables(tmp_path, capsys):
    from teenet.jobspec import check_against_consortium, parse_job_spec

    customers, usage = _own_files(tmp_path)
    d = tmp_path / "net"
    code = main(["sandbox", "init", str(d), "--data", f"bank:customers={customers}",
                 "--data", f"telco:usage={usage}", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["parties"] == ["bank", "telco"] and not (d / "data").exists() and not (d / "insurer.yaml").exists()
    consortium = load_analyst_config(d / "analyst.yaml").consortium
    for name in ("psi-overlap", "summary", "default-risk"):
        spec = parse_job_spec((d / "jobs" / f"{name}.yaml").read_text())
        check_against_consortium(spec, consortium)
        assert main(["job", "validate", str(d / "jobs" / f"{name}.yaml"), "--config", str(d / "analyst.yaml")]) == 0
        assert dict(spec.params)["normalise"]["type"] == "str"  # string ids: never `type: int`
    train = parse_job_spec((d / "jobs" / "default-risk.yaml").read_text())
    assert dict(train.params)["label"] == {"party": "bank", "column": "defaulted"}
    assert {c for i in train.inputs for c in i.columns} == {"age", "income", "segment", "defaulted", "minutes", "data_gb"}
    predict = (d / "jobs" / "predict.yaml").read_text()
    assert 'model: {job: "<64-hex id of the train job>", from: bank}' in predict and "job id" in predict


def test_init_with_integer_ids_normalises_them_as_int(tmp_path, capsys):
    from teenet.jobspec import parse_job_spec

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("id,x\n" + "".join(f"{i},{i}\n" for i in range(50)))
    b.write_text("id,y\n" + "".join(f"{i},{i}\n" for i in range(25, 90)))
    assert main(["sandbox", "init", str(tmp_path / "n"), "--data", f"bank:a={a}", "--data", f"insurer:b={b}"]) == 0
    spec = parse_job_spec((tmp_path / "n" / "jobs" / "psi-overlap.yaml").read_text())
    assert dict(spec.params)["normalise"] == {"type": "int"} and [i.party for i in spec.inputs] == ["bank", "insurer"]
    assert "default-risk" in capsys.readouterr().out  # no label column: said, and not written
    assert not (tmp_path / "n" / "jobs" / "default-risk.yaml").exists()


def test_a_malformed_csv_is_one_line_and_leaves_no_folder(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,x\n1,2\n3\n4,5\n")
    d = tmp_path / "net"
    code = main(["sandbox", "init", str(d), "--data", f"bank:t={bad}"])
    _, err = capsys.readouterr()
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert str(bad) in err and "Row #3" in err and "Traceback" not in err
    assert not d.exists()


def test_files_without_a_shared_column_stop_init_saying_what_to_rename(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("cust,x\n1,2\n")
    b.write_text("client,y\n1,2\n")
    code = main(["sandbox", "init", str(tmp_path / "n"), "--data", f"bank:a={a}", "--data", f"telco:b={b}"])
    err = capsys.readouterr().err
    assert code == 1 and "share no column name" in err and "cust" in err and "client" in err
    assert not (tmp_path / "n").exists()


def test_a_column_name_no_job_can_use_stops_init(tmp_path, capsys):
    a = tmp_path / "a.csv"
    a.write_text("Customer ID,x\n1,2\n")
    assert main(["sandbox", "init", str(tmp_path / "n"), "--data", f"bank:a={a}"]) == 1
    assert "column 'Customer ID'" in capsys.readouterr().err and not (tmp_path / "n").exists()


@pytest.mark.slow
def test_status_and_up_name_each_process(tmp_path, capsys, monkeypatch):
    """`status` reads processes.json; `up` starts only the missing (each a stand-in process
    with the daemon's config on its command line, as `_running` checks)."""
    import subprocess
    import sys

    from teenet.cli import sandbox

    d = tmp_path / "net"
    sandbox.init_sandbox(d, rows=200)
    assert [p["state"] for p in sandbox.status_sandbox(d)] == ["down"] * 5
    started, children = [], []

    def fake_start(directory, name, args):
        started.append(name)
        children.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", args[-1]]))
        return {"name": name, "pid": children[-1].pid, "log": str(directory / "logs" / f"{name}.log"), "args": args}

    monkeypatch.setattr(sandbox, "start_process", fake_start)
    monkeypatch.setattr(sandbox, "_wait_ready", lambda p, marker, timeout: None)
    procs = sandbox.up_sandbox(d)
    assert started == ["coordinator", "compute-1", "bank", "telco", "insurer"] and all(p["started"] for p in procs)
    # one process goes down: status says which, and up starts it alone
    recorded = json.loads((d / sandbox.PROCESS_FILE).read_text())
    telco = next(p for p in recorded if p["name"] == "telco")
    telco["pid"] = 2**22 + 12345  # no such process
    (d / sandbox.PROCESS_FILE).write_text(json.dumps(recorded))
    capsys.readouterr()
    assert main(["sandbox", "status", str(d)]) == 1
    out, err = capsys.readouterr()
    assert "telco" in err and "1 of 5 processes are down" in err
    started.clear()
    procs = sandbox.up_sandbox(d)
    assert started == ["telco"] and [p["name"] for p in procs if p["started"]] == ["telco"]
    assert main(["sandbox", "status", str(d), "--json"]) == 0
    assert {p["state"] for p in json.loads(capsys.readouterr().out)} == {"up"}
    assert sorted(sandbox.down_sandbox(d)) == sorted(["coordinator", "compute-1", "bank", "telco", "insurer"])
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
