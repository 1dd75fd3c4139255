"""Jobs on a compute cluster, through the network: a coordinator, three data nodes, compute-1
leading two compute-worker processes and compute-2 a single compute node, all real
processes on loopback (`teenet sandbox init --computes 2 --workers 2`, simulated
attestation). The same PSI (size, ids, sums) and aggregate give the cluster exactly the
single node's answer; a coordinator that rewrites the offer's workers is refused by the data
node before anything is sealed, and one that strips them gets no whole table into the leader; a worker killed after its partitions arrived fails the job
within seconds, nothing released, the keys dropped at the leader and the other worker; started
again with the same config it is admitted again and the next cluster job is the single node's;
a worker frozen mid-job (as cut off from the leader: its connections stay open, it answers
nothing) fails the job within its worker_ttl, and once thawed it finds itself dropped and
exits, so its job keys end with it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from integration_helpers import cli_json, run_cli, write_job, job_status, until_status

pytestmark = pytest.mark.slow
WORKER_TTL = 6  # seconds (the leader's cluster.worker_ttl in this network; the default is 30)

PSI = """\
name: {name}
function: psi
compute: {compute}
inputs:
  - {{party: bank,  table: customers, key: customer_id, columns: [income]}}
  - {{party: telco, table: usage,     key: customer_id, columns: [minutes]}}
params: {{normalise: {{type: int}}, payload: [{{party: bank, column: income}}, {{party: telco, column: minutes}}]}}
release:
  - {{kind: size, to: [analyst]}}
  - {{kind: sums, to: [analyst]}}
  - {{kind: ids,  to: [bank]}}
"""

AGGREGATE = """\
name: {name}
function: aggregate
compute: {compute}
inputs:
  - {{party: bank,    table: customers, key: customer_id, columns: [region, income]}}
  - {{party: insurer, table: policies,  key: customer_id, columns: [premium]}}
params:
  combine: join
  group_by: [region]
  metrics:
    - {{column: income, stats: [count, sum, mean]}}
    - {{column: premium, stats: [mean, std]}}
release:
  - {{kind: aggregate, to: [analyst]}}
"""

# The insurer's operator decides PSI jobs (its auto-approve rule is narrowed below), so a
# test can hold a job between the bank's approval and its table: the fault jobs.
HELD = """\
name: {name}
function: psi
compute: compute-1
inputs:
  - {{party: bank,    table: customers, key: customer_id, columns: []}}
  - {{party: insurer, table: policies,  key: customer_id, columns: []}}
release:
  - {{kind: size, to: [analyst]}}
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("cluster")
    init_sandbox(d, rows=800, computes=2, workers=2)
    for party in ("bank", "telco"):  # ids of the intersection may go to the bank
        cfg = yaml.safe_load((d / f"{party}.yaml").read_text())
        cfg["policy"]["id_recipients"] = ["bank"]
        cfg["policy"]["auto_approve"][0]["release_kinds"].append("ids")
        (d / f"{party}.yaml").write_text(yaml.safe_dump(cfg))
    leader = yaml.safe_load((d / "compute-1.yaml").read_text())
    leader["cluster"]["worker_ttl"] = WORKER_TTL  # a frozen worker counts as lost this soon
    (d / "compute-1.yaml").write_text(yaml.safe_dump(leader))
    insurer = yaml.safe_load((d / "insurer.yaml").read_text())
    insurer["policy"]["auto_approve"][0]["functions"] = ["aggregate"]
    (d / "insurer.yaml").write_text(yaml.safe_dump(insurer))
    up_sandbox(d)
    try:
        yield d
    finally:
        down_sandbox(d)


_status = job_status
_until = until_status


def _run(capsys, net, template, name, compute):
    spec = write_job(net, name, template.format(name=name, compute=compute))
    job_id = cli_json(capsys, "job", "submit", spec, "--config", net / "analyst.yaml")["job_id"]
    st = _until(capsys, net, job_id, lambda s: s["state"] in ("succeeded", "failed"), 120)
    assert st["state"] == "succeeded", (st["compute"], st["reason"])
    return job_id


def _results(capsys, net, job_id, who, out):
    res = cli_json(capsys, "job", "result", job_id, "--config", net / f"{who}.yaml", "--out", out)
    assert res["verified"] is True
    return res


def _audit(net, node):
    from teenet.audit import read_log

    name = "coordinator/coordinator.db" if node == "coordinator" else f"{node}/audit.db"
    entries, _ = read_log(net / "state" / name)
    return [e.event for e in entries]


def _eventually_audited(net, node, job_id, event, timeout=10):
    """The first `event` of the job in `node`'s audit, waiting for it (a stop is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in _audit(net, node) if e.get("job_id") == job_id and e["event"] == event]
        if found or time.monotonic() > deadline:
            assert found, f"{node} never audited {event} for the job"
            return found[0]
        time.sleep(0.1)


def shipped_seq(net, job_id):
    from teenet.audit import read_log

    entries, _ = read_log(net / "state" / "bank" / "audit.db")
    return next(e.seq for e in entries if e.event.get("job_id") == job_id and e.event["event"] == "shipped")


def _procs(net):
    from teenet.cli.sandbox import PROCESS_FILE

    return {p["name"]: p for p in json.loads((net / PROCESS_FILE).read_text())}


def test_psi_on_the_cluster_is_the_single_nodes_answer(net, capsys, tmp_path):
    on_cluster = _run(capsys, net, PSI, "psi-cluster", "compute-1")
    single = _run(capsys, net, PSI, "psi-single", "compute-2")
    answers = {}
    for job_id, where in ((on_cluster, "cluster"), (single, "single")):
        _results(capsys, net, job_id, "analyst", tmp_path / where)
        _results(capsys, net, job_id, "bank", tmp_path / where / "bank")
        ids = (tmp_path / where / "bank" / "ids.csv").read_text().split()
        answers[where] = (json.loads((tmp_path / where / "size.json").read_text()),
                          json.loads((tmp_path / where / "sums.json").read_text()), ids[1:])
    (size, sums, ids), (size1, sums1, ids1) = answers["cluster"], answers["single"]
    assert size == size1 and ids == ids1  # exact
    for a, b in zip(sums["sums"], sums1["sums"], strict=True):  # counts exact; a float sum of partition sums
        assert {**a, "sum": None} == {**b, "sum": None} and a["sum"] == pytest.approx(b["sum"], rel=1e-12)
    assert size["intersection_size"] == len(ids) > 10 and ids == sorted(ids, key=int)
    assert [s["suppressed"] for s in sums["sums"]] == [False, False]
    # The rows went to the workers, partitioned: the leader learnt partitions, never a table.
    leader = [e for e in _audit(net, "compute-1") if e.get("job_id") == on_cluster]
    arrived = [(e["party"], e["partition"]) for e in leader if e["event"] == "partition_received"]
    assert sorted(arrived) == [("bank", 0), ("bank", 1), ("telco", 0), ("telco", 1)]
    assert not any(e["event"] == "table_received" for e in leader)
    dropped = [e for e in leader if e["event"] == "cluster_partitions_dropped"]
    assert dropped and dropped[0]["workers"] == ["compute-1-w1", "compute-1-w2"] and dropped[0]["unreachable"] == []
    # The lineage fingerprint of a clustered table is what its owner recorded when shipping it.
    shipped = next(e for e in _audit(net, "bank") if e.get("job_id") == on_cluster and e["event"] == "shipped")
    lineage = json.loads((tmp_path / "cluster" / "lineage-size.json").read_text())
    from teenet.lineage import statement_lineage
    import base64

    inputs = statement_lineage(base64.b64decode(lineage["result"]["statement"]))["inputs"]
    bank = next(i for i in inputs if i["party"] == "bank")
    assert bank["fingerprint"] == shipped["fingerprint"]
    # and the bank's signed shipped record travelled with its partitions, checked by the leader
    assert bank["shipped"]["audit_seq"] == shipped_seq(net, on_cluster)


def test_aggregate_on_the_cluster_is_the_single_nodes_answer(net, capsys, tmp_path):
    docs = []
    for compute, where in (("compute-1", "cluster"), ("compute-2", "single")):
        job_id = _run(capsys, net, AGGREGATE, f"aggregate-{where}", compute)
        _results(capsys, net, job_id, "analyst", tmp_path / where)
        docs.append(json.loads((tmp_path / where / "aggregate.json").read_text()))
    cluster, single = docs
    assert cluster["columns"] == single["columns"] and len(cluster["rows"]) == len(single["rows"]) > 1
    assert cluster["suppressed_groups"] == single["suppressed_groups"]
    for a, b in zip(cluster["rows"], single["rows"]):
        assert a[:3] == b[:3]  # region, rows, income count: exact
        assert a[3:] == pytest.approx(b[3:], rel=1e-12)  # sums, means, std: floats, added in another order


TRAIN = """\
name: {name}
function: train
compute: {compute}
inputs:
  - {{party: bank,  table: customers, key: customer_id, columns: [age, income, defaulted]}}
  - {{party: telco, table: usage,     key: customer_id, columns: [minutes, late_payments]}}
params:
  layout: vertical
  model: {model}
  label: {{party: bank, column: defaulted}}
  test_fraction: 0.25
  seed: 7
  normalise: {{type: int}}
release:
  - {{kind: model,   to: [analyst]}}
  - {{kind: metrics, to: [analyst]}}
"""


def _train_both(capsys, net, tmp_path, model):
    out = {}
    for compute, where in (("compute-1", "cluster"), ("compute-2", "single")):
        job_id = _run(capsys, net, TRAIN.replace("{model}", model), f"train-{model}-{where}", compute)
        _results(capsys, net, job_id, "analyst", tmp_path / where)
        out[where] = (json.loads((tmp_path / where / "model.json").read_text()),
                      json.loads((tmp_path / where / "metrics.json").read_text()),
                      (tmp_path / where / "model.onnx").read_bytes())
    return out["cluster"], out["single"]


def _numbers(doc, path=""):
    """Every number in a JSON document, by its path (to compare two models' figures)."""
    if isinstance(doc, dict):
        return {k2: v2 for k, v in doc.items() for k2, v2 in _numbers(v, f"{path}.{k}").items()}
    if isinstance(doc, list):
        return {k2: v2 for i, v in enumerate(doc) for k2, v2 in _numbers(v, f"{path}[{i}]").items()}
    return {path: float(doc)} if isinstance(doc, (int, float)) and not isinstance(doc, bool) else {}


def test_logistic_regression_on_the_cluster_is_the_single_nodes_model(net, capsys, tmp_path):
    (model, metrics, _), (model1, metrics1, _) = _train_both(capsys, net, tmp_path, "logistic_regression")
    a, b = _numbers(model), _numbers(model1)
    coefficients = [k for k in a if "coef" in k or "intercept" in k]
    assert coefficients and a.keys() == b.keys()
    for k in coefficients:  # the released coefficients within 1e-6 of the single node's
        assert abs(a[k] - b[k]) <= 1e-6, (k, a[k], b[k])
    m, m1 = _numbers(metrics), _numbers(metrics1)
    assert m.keys() == m1.keys() and "auc" in "".join(m)
    for k in m:
        assert abs(m[k] - m1[k]) <= 1e-6, (k, m[k], m1[k])


def test_xgboost_on_the_cluster_is_within_0002_auc_of_the_single_node(net, capsys, tmp_path):
    """Boosting through the network on the cluster: XGBoost's federated communicator over the
    leader's mutual TLS (only admitted workers' certificates), against xgboost on one node."""
    (_, metrics, onnx), (_, metrics1, onnx1) = _train_both(capsys, net, tmp_path, "xgboost")
    assert metrics["rows"] == metrics1["rows"] and metrics["test_rows"] == metrics1["test_rows"]
    assert abs(metrics["auc"] - metrics1["auc"]) <= 0.002, (metrics["auc"], metrics1["auc"])
    assert onnx[:2] and onnx1[:2]  # both released a model


def _hold(capsys, net, name):
    """Submit a job the bank approves at once and the insurer's operator approves after the
    bank is frozen: the insurer's partitions arrive, the bank's never do (until thawed)."""
    spec = write_job(net, name, HELD.format(name=name))
    job_id = cli_json(capsys, "job", "submit", spec, "--config", net / "analyst.yaml")["job_id"]
    _until(capsys, net, job_id, lambda s: any(d["party"] == "bank" and d["decision"] == "approved"
                                              for d in s["decisions"]), 30)
    deadline = time.monotonic() + 30
    while not any(r["job_id"] == job_id for r in cli_json(capsys, "approvals", "list", "--config",
                                                          net / "insurer.yaml")):
        assert time.monotonic() < deadline, "the insurer never listed the job"
        time.sleep(0.1)
    os.kill(_procs(net)["bank"]["pid"], signal.SIGSTOP)
    cli_json(capsys, "approvals", "approve", job_id, "--config", net / "insurer.yaml")
    st = _until(capsys, net, job_id, lambda s: "insurer/policies" in s["uploaded"] or s["state"] == "failed", 30)
    assert "insurer/policies" in st["uploaded"], st
    return job_id


def test_a_coordinator_that_rewrites_the_workers_is_refused_before_anything_is_sealed(net, capsys):
    from teenet.proto import teenet_pb2 as pb

    job_id = _hold(capsys, net, "tampered-offer")
    try:
        # The coordinator's store is the untrusted relay: swap the two workers' endpoints.
        with sqlite3.connect(net / "state" / "coordinator" / "coordinator.db") as db:
            (blob,) = db.execute("SELECT cluster FROM offers WHERE job_id = ?", (job_id,)).fetchone()
            cluster = pb.ClusterOffer.FromString(blob)
            a, b = cluster.workers[0].endpoint, cluster.workers[1].endpoint
            cluster.workers[0].endpoint, cluster.workers[1].endpoint = b, a
            db.execute("UPDATE offers SET cluster = ? WHERE job_id = ?", (cluster.SerializeToString(), job_id))
    finally:
        os.kill(_procs(net)["bank"]["pid"], signal.SIGCONT)
    st = _until(capsys, net, job_id, lambda s: s["state"] == "failed", 30)
    assert st["state"] == "failed" and st["reason"] == "bank refused the compute enclave: cluster.signature", st
    bank = [e for e in _audit(net, "bank") if e.get("job_id") == job_id]
    assert any(e["event"] == "compute_refused" for e in bank)
    assert not any(e["event"] in ("released_table", "shipped") for e in bank)  # nothing sealed
    leader = [e for e in _audit(net, "compute-1") if e.get("job_id") == job_id]
    assert {e["party"] for e in leader if e["event"] == "partition_received"} == {"insurer"}


def test_an_offer_stripped_of_its_workers_gets_no_whole_table_into_the_leader(net, capsys):
    # The coordinator drops the cluster part: the offer reads as a single node's, so the bank
    # sends its whole table to the leader, which refuses it (it never holds whole tables).
    job_id = _hold(capsys, net, "stripped-offer")
    try:
        with sqlite3.connect(net / "state" / "coordinator" / "coordinator.db") as db:
            db.execute("UPDATE offers SET cluster = x'' WHERE job_id = ?", (job_id,))
    finally:
        os.kill(_procs(net)["bank"]["pid"], signal.SIGCONT)
    st = _until(capsys, net, job_id, lambda s: s["state"] == "failed", 30)
    assert st["reason"] == "compute node refused bank/customers: cluster.whole_table", st
    assert st["results"] == []
    _eventually_audited(net, "compute-1", job_id, "cluster_partitions_dropped")
    leader = [e for e in _audit(net, "compute-1") if e.get("job_id") == job_id]
    assert not any(e["event"] == "table_received" for e in leader)


def test_a_worker_killed_mid_job_fails_it_cleanly_and_restarted_rejoins(net, capsys, tmp_path):
    job_id = _hold(capsys, net, "worker-killed")
    procs = _procs(net)
    try:
        deadline = time.monotonic() + 10  # the leader has heard of the insurer's partitions
        while sum(1 for e in _audit(net, "compute-1") if e.get("job_id") == job_id
                  and e["event"] == "partition_received") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(procs["compute-1-w2"]["pid"], signal.SIGKILL)
        killed = time.monotonic()
        st = _until(capsys, net, job_id, lambda s: s["state"] == "failed", 20)
        took = time.monotonic() - killed
    finally:
        os.kill(procs["bank"]["pid"], signal.SIGCONT)
    assert st["state"] == "failed", st
    assert st["reason"] == "the compute cluster failed: cluster.worker_lost (field 'compute-1-w2')", st
    assert took < 10, took
    assert st["results"] == []  # nothing released
    dropped = _eventually_audited(net, "compute-1", job_id, "cluster_partitions_dropped")
    leader = [e for e in _audit(net, "compute-1") if e.get("job_id") == job_id]
    assert dropped["workers"] == ["compute-1-w1"] and dropped["unreachable"] == ["compute-1-w2"]
    assert any(e["event"] == "job_dropped" for e in leader)
    log = (net / "logs" / "compute-1-w1.log").read_text()
    assert f"job {job_id[:16]}: partitions and keys dropped on this worker" in log
    # Dask logs the dead worker's broken connection itself; no teenet code failed unexpectedly.
    assert "ERROR teenet" not in (net / "logs" / "compute-1.log").read_text()

    # Started again with the same config, the worker is admitted again under its old name
    # (fresh evidence, a new certificate), and the next job on the cluster is the single
    # node's answer; nothing of the failed job comes back.
    from teenet.cli.sandbox import up_sandbox

    started = [p for p in up_sandbox(net) if p["started"]]
    assert [p["name"] for p in started] == ["compute-1-w2"]
    assert "cluster admission: worker 'compute-1-w2' admitted again" in (net / "logs" / "compute-1.log").read_text()
    answers = {}
    for compute in ("compute-1", "compute-2"):
        again = _run(capsys, net, PSI, f"psi-after-restart-{compute}", compute)
        _results(capsys, net, again, "analyst", tmp_path / compute)
        _results(capsys, net, again, "bank", tmp_path / compute / "bank")
        answers[compute] = (json.loads((tmp_path / compute / "size.json").read_text()),
                            (tmp_path / compute / "bank" / "ids.csv").read_text())
        if compute == "compute-1":
            opened = _eventually_audited(net, "compute-1", again, "cluster_job_opened")
            assert opened["workers"] == ["compute-1-w1", "compute-1-w2"]
    assert answers["compute-1"] == answers["compute-2"] and answers["compute-1"][0]["intersection_size"] > 10
    st = _status(capsys, net, job_id)
    assert st["state"] == "failed" and st["results"] == []  # the failed job stays failed
    restarted_log = Path(started[0]["log"]).read_bytes()[started[0]["log_offset"]:].decode()
    assert job_id[:16] not in restarted_log  # the new worker never heard of the failed job
    assert len([e for e in _audit(net, "compute-1") if e.get("job_id") == job_id
                and e["event"] == "partition_received"]) == 2  # no partition of it arrived since


def _state(pid):
    """The process's state letter from /proc (R, S, T, Z...), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def test_a_worker_cut_off_mid_job_fails_it_within_its_ttl_and_exits_when_it_wakes(net, capsys):
    job_id = _hold(capsys, net, "worker-frozen")
    procs = _procs(net)
    frozen = procs["compute-1-w1"]
    try:
        deadline = time.monotonic() + 10
        while sum(1 for e in _audit(net, "compute-1") if e.get("job_id") == job_id
                  and e["event"] == "partition_received") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(frozen["pid"], signal.SIGSTOP)  # alive, connections open, silent
        stopped = time.monotonic()
        st = _until(capsys, net, job_id, lambda s: s["state"] == "failed", 4 * WORKER_TTL + 10)
        took = time.monotonic() - stopped
    finally:
        os.kill(procs["bank"]["pid"], signal.SIGCONT)
    assert st["state"] == "failed", st
    assert st["reason"] == "the compute cluster failed: cluster.worker_lost (field 'compute-1-w1')", st
    assert WORKER_TTL <= took < 3 * WORKER_TTL + 5, took  # not at once (it is alive), not after Dask's 5 minutes
    assert st["results"] == []
    dropped = _eventually_audited(net, "compute-1", job_id, "cluster_partitions_dropped")
    assert dropped["workers"] == ["compute-1-w2"] and dropped["unreachable"] == ["compute-1-w1"]

    # Thawed, the worker learns the scheduler dropped it and ends: its keys end with it.
    thawed_at = Path(frozen["log"]).stat().st_size
    os.kill(frozen["pid"], signal.SIGCONT)
    deadline = time.monotonic() + 30
    while _state(frozen["pid"]) not in (None, "Z"):
        assert time.monotonic() < deadline, "the dropped worker did not exit"
        time.sleep(0.2)
    tail = Path(frozen["log"]).read_bytes()[thawed_at:].decode(errors="replace")
    assert "was closed by the leader's scheduler" in tail
    assert "ERROR teenet" not in tail  # Dask may log its own broken comms; no teenet code failed

    from teenet.cli.sandbox import up_sandbox

    started = [p for p in up_sandbox(net) if p["started"]]
    assert [p["name"] for p in started] == ["compute-1-w1"]
    assert "cluster admission: worker 'compute-1-w1' admitted again" in (net / "logs" / "compute-1.log").read_text()
