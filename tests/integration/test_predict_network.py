"""Train, then predict for the bank's customers, over the real network.

The train job releases its model to the analyst and the bank; the predict job names that
model as `{job: <train id>, from: bank}`: the bank's node fetches the model it received,
verifies it, and ships it to the predict enclave, which accepts it only with the releasing
enclave's signature and the train job's signed spec. Scores go to the bank alone, and equal
what the same model gives on the same rows in plaintext.
"""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from integration_helpers import cli_json, write_job

pytestmark = pytest.mark.slow

PREDICT = """\
name: score-customers
function: predict
compute: compute-1
inputs:
  - {{party: bank,  table: customers, key: customer_id, columns: [age, income]}}
  - {{party: telco, table: usage,     key: customer_id, columns: [minutes, data_gb, late_payments]}}
params:
  model: {{job: "{train}", from: {sender}}}
  ids_from: bank
release:
  - {{kind: scores, to: [bank]}}
"""


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """A sandbox whose telco lets the bank receive scores of rows it owns (ids and scores go
    only to parties every owner allows)."""
    import yaml

    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("predict")
    init_sandbox(d, rows=3000)
    config = yaml.safe_load((d / "telco.yaml").read_text())
    config["policy"]["id_recipients"] = ["telco", "bank"]
    (d / "telco.yaml").write_text(yaml.safe_dump(config))
    up_sandbox(d)
    try:
        yield d
    finally:
        down_sandbox(d)


def _audit(net, party):
    from teenet.audit import read_log

    entries, _ = read_log(net / "state" / party / "audit.db")
    return [dict(e.event) for e in entries]


def _approve_when_pending(capsys, net, job_id, parties, timeout=60):
    deadline = time.monotonic() + timeout
    left = set(parties)
    while left and time.monotonic() < deadline:
        for party in sorted(left):
            rows = cli_json(capsys, "approvals", "list", "--config", net / f"{party}.yaml")
            if any(r["job_id"] == job_id for r in rows):
                cli_json(capsys, "approvals", "approve", job_id, "--config", net / f"{party}.yaml",
                         "--operator", "dana", "--reason", "scoring our own customers")
                left.discard(party)
        time.sleep(0.2)
    assert not left, f"{sorted(left)} never showed the job as pending"


def test_train_then_predict_for_the_banks_customers(network, capsys, tmp_path):
    train = cli_json(capsys, "job", "submit", network / "jobs" / "default-risk.yaml", "--config",
                     network / "analyst.yaml", "--wait", "--timeout", "120")
    assert train["state"] == "succeeded", train
    spec = write_job(network, "score-customers", PREDICT.format(train=train["job_id"], sender="bank"))
    cli_json(capsys, "job", "validate", spec, "--config", network / "analyst.yaml")
    job_id = cli_json(capsys, "job", "submit", spec, "--config", network / "analyst.yaml")["job_id"]
    _approve_when_pending(capsys, network, job_id, ("bank", "telco"))
    done = cli_json(capsys, "job", "status", job_id, "--config", network / "analyst.yaml")
    deadline = time.monotonic() + 90
    while done["state"] not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.2)
        done = cli_json(capsys, "job", "status", job_id, "--config", network / "analyst.yaml")
    assert done["state"] == "succeeded", done
    assert done["results"] == ["scores->bank"]

    # The enclave took the model only after checking where it came from.
    compute = [e for e in _audit(network, "compute-1") if e.get("job_id") == job_id]
    received = next(e for e in compute if e["event"] == "model_received")
    assert received["train_job"] == train["job_id"] and received["party"] == "bank"
    assert any(e["event"] == "released_model" and e["train_job"] == train["job_id"]
               for e in _audit(network, "bank") if e.get("job_id") == job_id)

    # The bank opens its scores; they are the model's on the pooled plaintext rows.
    got = cli_json(capsys, "job", "result", job_id, "--config", network / "bank.yaml", "--out", tmp_path / "bank")
    assert got["verified"]
    scores = pacsv.read_csv(tmp_path / "bank" / "scores.csv")
    model_dir = tmp_path / "analyst"
    cli_json(capsys, "job", "result", train["job_id"], "--config", network / "analyst.yaml", "--out", model_dir)
    from teenet.models import PartyInput, ReleaseRequest, ReleaseRules, run_function

    customers = pq.read_table(network / "data" / "bank" / "customers.parquet")
    usage = pq.read_table(network / "data" / "telco" / "usage.parquet")
    inputs = [PartyInput("bank", "customers", ("customer_id",), ("age", "income"),
                         customers.select(["customer_id", "age", "income"])),
              PartyInput("telco", "usage", ("customer_id",), ("minutes", "data_gb", "late_payments"),
                         usage.select(["customer_id", "minutes", "data_gb", "late_payments"]))]
    plain = run_function("predict", inputs, {"model_onnx": (model_dir / "model.onnx").read_bytes(),
                                             "ids_from": "bank"},
                         [ReleaseRequest("scores", ("bank",))],
                         ReleaseRules(min_group_size=10, approved_recipients={"scores": frozenset({"bank"})},
                                      id_owners=frozenset({"bank"})))
    expected = pa.ipc.open_stream(plain[0].payload).read_all()
    assert scores.num_rows == expected.num_rows > 100
    assert scores.column("customer_id").to_pylist() == expected.column("customer_id").to_pylist()
    assert max(abs(a - b) for a, b in zip(scores.column("score").to_pylist(),
                                          expected.column("score").to_pylist())) < 1e-9

    # The scores' lineage names the model (teenet.lineage): its train job, the digest of the
    # statement of the copy the bank shipped and the releasing enclave; given the bank's own
    # train result file, that file's lineage verifies and is linked; another copy is not it.
    import json

    from integration_helpers import run_cli

    got = cli_json(capsys, "job", "result", train["job_id"], "--config", network / "bank.yaml", "--out",
                   tmp_path / "bank-train")
    model_file = tmp_path / "bank-train" / "lineage-model.json"
    code, text, err = run_cli(capsys, "lineage", "show", tmp_path / "bank" / "lineage-scores.json", "--config",
                              network / "bank.yaml", "--model-lineage", model_file, "--json")
    report = json.loads(text)
    assert code in (0, 3) and report["ok"], err  # 3 until a quorum cosigned every log it depends on
    links = {link["link"]: link["ok"] for link in report["links"]}
    assert links["model.named"] and links["model.lineage"] and links["model/drop.inclusion"]
    assert report["lineage"]["model"]["train_job"] == train["job_id"]
    assert report["model"]["job_id"] == train["job_id"]
    code, text, _ = run_cli(capsys, "lineage", "show", tmp_path / "bank" / "lineage-scores.json", "--config",
                            network / "bank.yaml", "--model-lineage", model_dir / "lineage-model.json", "--json")
    assert code == 1 and json.loads(text)["broken"] == "model.lineage"  # the analyst's copy, not the shipped one

    # A config whose record does not hold the job opens nothing, and says why.

    other = network / "other-analyst.yaml"
    other.write_text((network / "analyst.yaml").read_text())
    code, _, err = run_cli(capsys, "job", "result", job_id, "--config", other, "--out", tmp_path / "other")
    assert code != 0 and "is not one you submitted" in err and not (tmp_path / "other").exists(), err

    # Nobody else got the scores: the analyst's mailbox for this job is empty.
    theirs = cli_json(capsys, "job", "result", job_id, "--config", network / "analyst.yaml",
                      "--out", tmp_path / "nothing")
    assert theirs["results"] == [] and not (tmp_path / "nothing" / "scores.csv").exists()


def test_a_model_the_shipper_never_received_fails_the_job_with_the_reason(network, capsys):
    """The train job released its model to the analyst and the bank, not the telco: the telco
    has nothing to ship, and says so, instead of the job waiting."""
    train = next(j for j in cli_json(capsys, "job", "list", "--config", network / "analyst.yaml")
                 if j["name"] == "default-risk" and j["state"] == "succeeded")
    spec = write_job(network, "score-from-telco", PREDICT.format(train=train["job_id"], sender="telco")
                     .replace("name: score-customers", "name: score-from-telco"))
    job_id = cli_json(capsys, "job", "submit", spec, "--config", network / "analyst.yaml")["job_id"]
    _approve_when_pending(capsys, network, job_id, ("bank", "telco"))
    deadline = time.monotonic() + 60
    st = {}
    while time.monotonic() < deadline:
        st = cli_json(capsys, "job", "status", job_id, "--config", network / "analyst.yaml")
        if st["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert st["state"] == "failed", st
    assert st["reason"] == "telco could not ship the model: model.recipient", st["reason"]
    assert not any(e["event"] == "model_received" for e in _audit(network, "compute-1") if e.get("job_id") == job_id)
