"""`teenet sandbox init`: the consortium it writes loads, and it takes a party's own files."""

from __future__ import annotations

import json

import pyarrow as pa
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
