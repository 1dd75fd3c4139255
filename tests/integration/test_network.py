"""Jobs through the real network: auto-approved, operator-approved, rejected, cancelled,
the coordinator killed mid-job, and what the untrusted coordinator ever holds."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pyarrow.parquet as pq
import pytest

from integration_helpers import cli_json, run_cli, write_job

pytestmark = pytest.mark.slow

TRAIN_WITH_INSURER = """\
name: risk-with-claims
function: train
compute: compute-1
inputs:
  - {party: bank,    table: customers, key: customer_id, columns: [income, defaulted]}
  - {party: insurer, table: policies,  key: customer_id, columns: [claims, premium]}
params: {layout: vertical, model: logistic_regression, label: {party: bank, column: defaulted},
         test_fraction: 0.25, seed: 3}
release:
  - {kind: metrics, to: [analyst]}
"""


def _status(capsys, net, job_id):
    return cli_json(capsys, "job", "status", job_id, "--config", net / "analyst.yaml")


def _wait_state(capsys, net, job_id, states, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = _status(capsys, net, job_id)
        if st["state"] in states:
            return st
        time.sleep(0.2)
    raise AssertionError(f"job stayed {st['state']}")


def _wait_pending(capsys, net, party, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, out, _ = run_cli(capsys, "approvals", "list", "--config", net / f"{party}.yaml", "--json")
        if code == 0 and any(r["job_id"] == job_id for r in json.loads(out)):
            return json.loads(out)
        time.sleep(0.2)
    raise AssertionError(f"{party} never listed job {job_id[:12]} as pending")


def _audit_events(net, party):
    from teenet.audit import read_log

    entries, _ = read_log(net / "state" / party / "audit.db")
    return [dict(e.event) for e in entries]


def test_auto_approved_psi_runs_end_to_end_and_the_result_verifies(network, capsys, tmp_path):
    out = cli_json(capsys, "job", "submit", network / "jobs" / "psi-overlap.yaml", "--config",
                   network / "analyst.yaml", "--wait")
    assert out["state"] == "succeeded", out
    res = cli_json(capsys, "job", "result", out["job_id"], "--config", network / "analyst.yaml", "--out", tmp_path)
    assert res["verified"] is True and res["enclave"]["simulated"] is True
    size = json.loads((tmp_path / "size.json").read_text())
    ids = [set(pq.read_table(network / "data" / p / f"{t}.parquet", columns=["customer_id"])["customer_id"].to_pylist())
           for p, t in (("bank", "customers"), ("telco", "usage"), ("insurer", "policies"))]
    assert json.dumps(size).count(str(len(ids[0] & ids[1] & ids[2]))) >= 1


def test_vertical_training_releases_a_model_the_analyst_can_open(network, capsys, tmp_path):
    out = cli_json(capsys, "job", "submit", network / "jobs" / "default-risk.yaml", "--config",
                   network / "analyst.yaml", "--wait")
    assert out["state"] == "succeeded", out
    cli_json(capsys, "job", "result", out["job_id"], "--config", network / "analyst.yaml", "--out", tmp_path)
    assert (tmp_path / "model.onnx").stat().st_size > 100
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.5 < float(json.dumps(metrics) and _find(metrics, "auc")) <= 1.0
    # the owners named as recipients fetch their own share with their node config
    bank = cli_json(capsys, "job", "result", out["job_id"], "--config", network / "bank.yaml", "--out", tmp_path / "bank")
    assert sorted(r["kind"] for r in bank["results"]) == ["metrics", "model"]
    telco = cli_json(capsys, "job", "result", out["job_id"], "--config", network / "telco.yaml", "--out", tmp_path / "telco")
    assert [r["kind"] for r in telco["results"]] == ["metrics"]
    assert not (tmp_path / "telco" / "model.onnx").exists()
    code, _, err = run_cli(capsys, "job", "result", out["job_id"], "--config", network / "insurer.yaml",
                           "--out", tmp_path / "insurer")
    assert code == 1 and "Traceback" not in err and not (tmp_path / "insurer").exists()


def _find(obj, key):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key and isinstance(v, (int, float)):
                return v
            found = _find(v, key)
            if found is not None:
                return found
    return None


def test_a_job_outside_auto_approval_waits_for_the_operator_then_runs(network, capsys):
    spec = write_job(network, "risk-with-claims", TRAIN_WITH_INSURER)
    job_id = cli_json(capsys, "job", "submit", spec, "--config", network / "analyst.yaml")["job_id"]
    pending = _wait_pending(capsys, network, "insurer", job_id)
    row = next(r for r in pending if r["job_id"] == job_id)
    assert row["tables"] == [{"table": "policies", "columns": ["customer_id", "claims", "premium"]}]
    assert _status(capsys, network, job_id)["state"] == "awaiting_approvals"
    cli_json(capsys, "approvals", "approve", job_id[:10], "--config", network / "insurer.yaml", "--operator", "dana")
    assert _wait_state(capsys, network, job_id, {"succeeded", "failed"})["state"] == "succeeded"
    assert any(e["event"] == "approved" and e.get("decided_by") == "operator:dana" and e["job_id"] == job_id
               for e in _audit_events(network, "insurer"))


def test_a_rejected_job_never_runs_and_nothing_is_shipped(network, capsys):
    spec = write_job(network, "risk-rejected", TRAIN_WITH_INSURER.replace("seed: 3", "seed: 4"))
    job_id = cli_json(capsys, "job", "submit", spec, "--config", network / "analyst.yaml")["job_id"]
    _wait_pending(capsys, network, "insurer", job_id)
    cli_json(capsys, "approvals", "reject", job_id, "--config", network / "insurer.yaml",
             "--reason", "claims data is not for credit scoring")
    st = _wait_state(capsys, network, job_id, {"failed", "succeeded"})
    assert st["state"] == "failed" and "claims data is not for credit scoring" in st["reason"]
    time.sleep(1.0)
    assert _status(capsys, network, job_id)["uploaded"] == []
    for party in ("bank", "insurer"):
        assert not any(e["event"] == "released_table" and e["job_id"] == job_id
                       for e in _audit_events(network, party))


def test_a_job_names_a_column_the_owner_does_not_have(network, capsys):
    spec = write_job(network, "bad-column", TRAIN_WITH_INSURER.replace("[claims, premium]", "[claims, salary]"))
    code, _, err = run_cli(capsys, "job", "submit", spec, "--config", network / "analyst.yaml")
    assert code == 1 and "salary" in err and "Traceback" not in err
    assert re.search(r"bad-column\.yaml:6, field 'inputs\[1\]\.columns\[1\]'", err)


def test_a_cancelled_job_stops(network, capsys):
    spec = write_job(network, "risk-cancelled", TRAIN_WITH_INSURER.replace("seed: 3", "seed: 5"))
    job_id = cli_json(capsys, "job", "submit", spec, "--config", network / "analyst.yaml")["job_id"]
    _wait_pending(capsys, network, "insurer", job_id)
    st = cli_json(capsys, "job", "cancel", job_id, "--config", network / "analyst.yaml", "--reason", "wrong cohort")
    assert st["state"] == "cancelled"
    code, _, err = run_cli(capsys, "approvals", "approve", job_id, "--config", network / "insurer.yaml")
    time.sleep(1.0)
    assert _status(capsys, network, job_id)["state"] == "cancelled"
    assert _status(capsys, network, job_id)["uploaded"] == []


def test_the_coordinator_killed_mid_job_loses_nothing(network, capsys):
    from teenet.cli.sandbox import PROCESS_FILE, _wait_ready, start_process

    spec = write_job(network, "risk-restart", TRAIN_WITH_INSURER.replace("seed: 3", "seed: 6"))
    job_id = cli_json(capsys, "job", "submit", spec, "--config", network / "analyst.yaml")["job_id"]
    _wait_pending(capsys, network, "insurer", job_id)
    procs = json.loads((network / PROCESS_FILE).read_text())
    coord = next(p for p in procs if p["name"] == "coordinator")
    os.kill(coord["pid"], signal.SIGKILL)
    time.sleep(0.5)
    cli_json(capsys, "approvals", "approve", job_id, "--config", network / "insurer.yaml")
    time.sleep(1.0)  # the insurer's node signs while the coordinator is down, and keeps retrying
    fresh = start_process(network.directory, "coordinator", coord["args"])
    procs = [p if p["name"] != "coordinator" else fresh for p in procs]
    (network / PROCESS_FILE).write_text(json.dumps(procs))
    _wait_ready(fresh, "listening", 30)
    assert _wait_state(capsys, network, job_id, {"succeeded", "failed"})["state"] == "succeeded"


def _plaintext_needles(network, rows=200):
    needles = []
    for party, table in (("bank", "customers"), ("telco", "usage"), ("insurer", "policies")):
        df = pq.read_table(network / "data" / party / f"{table}.parquet").to_pandas().head(rows)
        for cid in df["customer_id"]:
            needles += [str(cid).encode(), int(cid).to_bytes(8, "little")]
        for col in df.columns:
            if df[col].dtype.kind == "f":
                needles += [repr(float(v)).encode() for v in df[col]]
    return needles


def test_the_coordinator_never_holds_a_plaintext_value(network, capsys):
    """Search everything the coordinator stored for values of the input tables. The proxy
    captures are TLS records, so their search shows only that nothing crossed in the clear;
    what the coordinator reads, decrypted, is searched by tests/attacks/test_attack_wire.py."""
    stored = b"".join(f.read_bytes() for f in (network / "state" / "coordinator").iterdir())
    to_coordinator = network.coordinator_wire.captured()
    to_compute = network.compute_wire.captured()
    assert len(stored) > 10_000 and len(to_coordinator) > 10_000
    assert len(to_compute) > 50_000  # the sealed tables of the jobs above crossed here
    needles = _plaintext_needles(network)
    for where, blob in (("coordinator database", stored), ("coordinator wire", to_coordinator),
                        ("compute wire", to_compute)):
        leaked = [n for n in needles if len(n) >= 8 and n in blob]
        assert leaked == [], f"{len(leaked)} plaintext values found in the {where}"


def test_a_hostile_spec_gets_one_clear_line_and_the_daemons_keep_serving(network, capsys):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b]\n"
    for text, expected in ((bomb, "alias"), ("name: x\nfunction: psi\nsurprise: 1\n", "surprise"),
                           ("name: [unclosed\n", "hostile.yaml:")):
        spec = write_job(network, "hostile", text)
        code, _, err = run_cli(capsys, "job", "submit", spec, "--config", network / "analyst.yaml")
        assert code == 1 and expected in err.lower() and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    out = cli_json(capsys, "job", "submit", network / "jobs" / "spend-by-region.yaml", "--config",
                   network / "analyst.yaml", "--wait")
    assert out["state"] == "succeeded", out


def test_each_nodes_audit_chain_verifies_and_says_what_left(network, capsys):
    for party in ("bank", "telco", "insurer"):
        out = cli_json(capsys, "audit", "verify", "--db", network / "state" / party / "audit.db")
        assert out["ok"] is True, out
    events = _audit_events(network, "bank")
    shipped = [e for e in events if e["event"] == "released_table"]
    assert shipped and all(e["to"] == "compute-1" and e["enclave_measurement"] and e["columns"] for e in shipped)
    out = cli_json(capsys, "audit", "verify", "--db", network / "state" / "coordinator" / "coordinator.db")
    assert out["ok"] is True, out
    # An operator names their own config: the log is found, and its checkpoints are checked
    # against the owner's key (the member's signing key from the consortium file, or the
    # coordinator's audit key), not the key the log names itself.
    for config in ("bank.yaml", "coordinator.yaml"):
        out = cli_json(capsys, "audit", "verify", "--config", network / config)
        assert out["ok"] is True and out["key_pinned"] is True, out
    assert out["checkpoints"] >= 1, out  # the coordinator signs every 64 entries; it has passed that
    out = cli_json(capsys, "audit", "show", "--config", network / "bank.yaml", "--limit", "3")
    assert len(out["entries"]) == 3 and out["db"].endswith("audit.db")
    # Another owner's key: the coordinator's signed checkpoints do not verify under the bank's key.
    import base64

    from teenet.config import load_node_config

    bank_key = load_node_config(network / "bank.yaml").member.keys.signing.public_bytes_raw()
    code, _, err = run_cli(capsys, "audit", "verify", "--db", network / "state" / "coordinator" / "coordinator.db",
                           "--public-key", base64.b64encode(bank_key).decode())
    assert code == 1 and "audit.chain" in err and "Traceback" not in err


def test_a_job_the_owner_cannot_check_is_rejected_with_the_reason(network, capsys):
    """The analyst's copy of the consortium file says the bank publishes a column that the
    owners' copies do not: an owner's node cannot check the job and rejects it, once."""
    import yaml

    data = yaml.safe_load((network / "consortium.yaml").read_text())
    data["members"]["bank"]["tables"]["customers"].append("salary")
    (network / "consortium-analyst.yaml").write_text(yaml.safe_dump(data))
    cfg = yaml.safe_load((network / "analyst.yaml").read_text())
    cfg["consortium"] = "consortium-analyst.yaml"
    (network / "analyst-stale.yaml").write_text(yaml.safe_dump(cfg))
    spec = write_job(network, "needs-salary", TRAIN_WITH_INSURER.replace("[income, defaulted]", "[salary, defaulted]"))
    job_id = cli_json(capsys, "job", "submit", spec, "--config", network / "analyst-stale.yaml")["job_id"]
    st = _wait_state(capsys, network, job_id, {"failed", "succeeded"})
    assert st["state"] == "failed" and "cannot check this job: job." in st["reason"], st
    assert st["uploaded"] == []
    party = re.match(r"rejected by (\w+):", st["reason"]).group(1)  # the bank or the insurer, whichever polled first
    rejections = [e for e in _audit_events(network, party) if e["event"] == "rejected" and e["job_id"] == job_id]
    assert len(rejections) == 1
    assert "salary" in rejections[0]["detail"]  # the owner's operator reads what it could not check


def test_a_results_lineage_verifies_offline_and_any_edit_is_named(network, capsys, tmp_path):
    """teenet lineage (issue 14): the PSI's result file verifies link by link; each edit of
    its lineage (a fingerprint, a row count, the measurement, the drop time, a proof byte)
    is refused naming the broken link; the data nodes audited the fingerprints shipped."""
    import base64
    import copy

    from teenet.canonical import canonical_json

    out = cli_json(capsys, "job", "submit", network / "jobs" / "psi-overlap.yaml", "--config",
                   network / "analyst.yaml", "--wait")
    assert out["state"] == "succeeded", out
    job_id = out["job_id"]
    code, text, err = run_cli(capsys, "job", "result", job_id, "--config", network / "analyst.yaml",
                              "--out", tmp_path)
    assert code == 0, err
    assert "lineage verified" in text and "fingerprint" in text
    result_file = tmp_path / "lineage-size.json"
    code, text, err = run_cli(capsys, "lineage", "show", result_file, "--config", network / "analyst.yaml", "--json")
    report = json.loads(text)
    # 0 once a quorum cosigned the compute node's log past the drop event, 3 until then
    # (tests/integration/test_witnessing.py follows it to 0)
    assert code in (0, 3), err
    assert report["ok"] is True and report["broken"] is None and report["status"] in ("witnessed", "unwitnessed")
    lin = report["lineage"]
    assert lin["job_id"] == job_id and lin["enclave"]["node"] == "compute-1"
    k = lin["release_rules"]["k"]
    assert k >= 2
    for inp in lin["inputs"]:  # rounded, never exact below k
        assert inp["rows"] == f"<{k}" or int(inp["rows"]) % k == 0
    # the owners' own audits recorded the same fingerprint they shipped
    shipped = {(e["node"], e["table"]): e["fingerprint"] for p in ("bank", "telco", "insurer")
               for e in _audit_events(network, p) if e.get("event") == "shipped" and e.get("job_id") == job_id}
    assert {(i["party"], i["table"]): i["fingerprint"] for i in lin["inputs"]} == shipped
    drop = [e for e in _audit_events(network, "compute-1")
            if e.get("event") == "inputs_and_keys_dropped" and e.get("job_id") == job_id]
    assert len(drop) == 1

    doc = json.loads(result_file.read_text())

    def edited(change) -> set:
        d = copy.deepcopy(doc)
        st = json.loads(base64.b64decode(d["result"]["statement"]))
        change(st["lineage"])
        d["result"]["statement"] = base64.b64encode(canonical_json(st)).decode()
        path = tmp_path / "edited.json"
        path.write_text(json.dumps(d))
        code, text, err = run_cli(capsys, "lineage", "show", path, "--config", network / "analyst.yaml", "--json")
        assert code == 1, text
        broken = {link["link"] for link in json.loads(text)["links"] if not link["ok"]}
        assert "lineage does not verify" in err
        return broken

    def flip_proof(lineage) -> None:
        raw = bytearray(base64.b64decode(lineage["dropped"]["inclusion_proof"][0]))
        raw[0] ^= 1
        lineage["dropped"]["inclusion_proof"][0] = base64.b64encode(bytes(raw)).decode()

    assert lin["dropped"]["inclusion_proof"], "a single-entry log would prove nothing here"
    # the fingerprint is also in the owner's own shipped entry, which then no longer matches it
    assert edited(lambda l: l["inputs"][0].update(fingerprint="00" * 32)) == {"statement.signature",
                                                                             "shipped.bank/customers"}
    assert edited(lambda l: l["inputs"][0].update(rows="7")) >= {"statement.signature", "lineage.rows"}
    assert edited(lambda l: l["enclave"].update(measurement="00" * 48)) == {"statement.signature",
                                                                            "lineage.measurement"}
    assert edited(lambda l: l["dropped"].update(at="2020-01-01T00:00:00.000000Z")) == {"statement.signature",
                                                                                       "drop.inclusion"}
    assert edited(flip_proof) == {"statement.signature", "drop.inclusion"}


def test_submit_wait_out_fetches_verifies_and_writes_the_results_in_the_same_process(network, capsys, tmp_path):
    out = cli_json(capsys, "job", "submit", network / "jobs" / "psi-overlap.yaml", "--config",
                   network / "analyst.yaml", "--wait", "--out", tmp_path / "one")
    assert out["state"] == "succeeded", out
    assert out["result"]["verified"] is True and out["result"]["job_id"] == out["job_id"]
    assert out["result"]["files"] == [str(tmp_path / "one" / "size.json")]
    # the same bytes as a separate `job result` of that job writes
    cli_json(capsys, "job", "result", out["job_id"], "--config", network / "analyst.yaml", "--out", tmp_path / "two")
    assert (tmp_path / "one" / "size.json").read_bytes() == (tmp_path / "two" / "size.json").read_bytes()
