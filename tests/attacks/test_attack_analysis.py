"""An analyst who wants individual rows, with jobs the owners' old policies would have approved.

Each case is one attack from issue 10 run against a live sandbox network (coordinator, three
data nodes, a compute node, as processes) whose owners ship the sandbox's analysis rules
(cli/sandbox_policy.py): count/sum/mean/std only, group by region only, k = 10, DP optional
with at most epsilon 1 per job. The bank's customer table also holds ten customers of a
region of their own ("islands") of whom nine have no recorded income, the bank's budget is
epsilon 2, and the telco shares a three-customer "probe" table. Each case shows the refusal
(or that the release is neutralised), the reason the user sees, and that nothing leaked.
The cases are listed in docs/security.md (A1-A9).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attack_kit import Analyst, AttackNet, edit_yaml, interpose, leaked, plaintext_needles, start_node, wait_until
from teenet.proto import teenet_pb2 as pb

pytestmark = pytest.mark.slow

ISLANDS = np.arange(90_000_001, 90_000_011, dtype=np.int64)  # ten customers only the bank knows
ISLANDS_INCOME = 123456.78  # the one recorded income among them
BANK_BUDGET = 2.0

DP_AGGREGATE = """\
name: dp-income-{name}
function: aggregate
compute: compute-1
inputs:
  - {{party: bank, table: customers, key: customer_id, columns: [region, income]}}
params:
  group_by: [region]
  metrics:
    - {{column: income, stats: [count, mean]}}
  dp: {{epsilon: {epsilon}, delta: 1.0e-8, bounds: {{income: [0, 1000000]}}{extra}}}
release:
  - {{kind: aggregate, to: [analyst]}}
"""

AGGREGATE = """\
name: income-{name}
function: aggregate
compute: compute-1
inputs:
  - {{party: bank, table: customers, key: customer_id, columns: [region, age, income]}}
params:
  group_by: [{group_by}]
  metrics:
    - {{column: income, stats: [{stats}]}}
release:
  - {{kind: aggregate, to: [analyst]}}
"""

INSURER_ONLY = """\
name: claims-{name}
function: aggregate
compute: compute-1
inputs:
  - {{party: insurer, table: policies, key: customer_id, columns: [region, claims, premium]}}
params:
  group_by: [{group_by}]
  metrics:
    - {{column: premium, stats: [mean]}}
release:
  - {{kind: {kind}, to: [analyst]}}
"""

PROBE = """\
name: probe-{name}
function: psi
compute: compute-1
inputs:
  - {{party: bank,  table: customers, key: customer_id, columns: []}}
  - {{party: telco, table: probe,     key: customer_id, columns: []}}
params: {{normalise: {{trim: true, case: none, type: int}}}}
release:
  - {{kind: size, to: [analyst]}}
"""

FOREST = """\
name: forest
function: train
compute: compute-1
inputs:
  - {party: bank,  table: customers, key: customer_id, columns: [age, income, defaulted]}
  - {party: telco, table: usage,     key: customer_id, columns: [minutes, late_payments]}
params: {layout: vertical, model: random_forest, label: {party: bank, column: defaulted},
         test_fraction: 0.2, seed: 5,
         hyperparameters: {n_estimators: 5, max_depth: 10, min_samples_leaf: 1}}
release:
  - {kind: model, to: [analyst]}
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("analysisnet")
    init_sandbox(d, rows=2500)
    customers = d / "data" / "bank" / "customers.parquet"
    table = pq.read_table(customers)
    islands = pa.table({
        "customer_id": pa.array(ISLANDS), "age": pa.array(np.full(10, 40, np.int32)),
        "income": pa.array([ISLANDS_INCOME] + [None] * 9, pa.float64()),
        "region": pa.array(["islands"] * 10), "defaulted": pa.array(np.zeros(10, np.int32))})
    pq.write_table(pa.concat_tables([table, islands.cast(table.schema)]), customers)
    # The telco's probe: three of the bank's customers.
    probe = d / "data" / "telco" / "probe.parquet"
    pq.write_table(pa.table({"customer_id": table["customer_id"].slice(0, 3)}), probe)
    edit_yaml(d / "consortium.yaml",
              lambda c: c["members"]["telco"]["tables"].__setitem__("probe", ["customer_id"]))

    def telco(cfg):
        cfg["tables"]["probe"] = {"format": "parquet", "path": str(probe)}
        cfg["policy"]["tables"]["probe"] = ["customer_id"]

    edit_yaml(d / "telco.yaml", telco)
    edit_yaml(d / "bank.yaml", lambda cfg: cfg["policy"]["budget"]["customers"].__setitem__("epsilon", BANK_BUDGET))
    _, compute_wire = interpose(d, coordinator=False)
    up_sandbox(d)
    try:
        net = AttackNet(d, compute_wire)
        net.extra["analyst"] = Analyst(net)
        yield net
        net.extra["analyst"].close()
    finally:
        down_sandbox(d)
        compute_wire.close()


@pytest.fixture
def analyst(net) -> Analyst:
    return net.extra["analyst"]


def _nothing_left(net: AttackNet, analyst: Analyst, job_id: str, parties=("bank", "telco", "insurer")) -> None:
    """No owner shipped a table, the enclave received none and released nothing."""
    for party in parties:
        assert net.audit_for(party, job_id, "released_table") == []
    assert net.audit_for("compute-1", job_id, "table_received") == []
    assert net.audit_for("compute-1", job_id, "released_results") == []
    assert list(analyst.status(job_id).results) == []


def _cli(capsys, *args):
    from teenet.cli.main import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(analyst: Analyst, job_id: str) -> dict:
    opened, _ = analyst.result(job_id)
    return json.loads(opened[0].payload)


# --- A1. an RNG seed in a spec ------------------------------------------------------------------

def test_a_dp_seed_in_a_spec_is_refused_at_validation_and_by_the_owner(net, analyst, capsys):
    text = DP_AGGREGATE.format(name="seeded", epsilon=0.5, extra=", seed: 7")
    path = net / "jobs" / "seeded.yaml"
    path.write_text(text)
    code, _, err = _cli(capsys, "job", "validate", "--config", net / "analyst.yaml", path)
    assert code != 0 and "params.dp" in err and "seed" in err, err
    job_id = analyst.submit(text, validate=False)  # a hostile analyst signs past the CLI
    st = analyst.wait(job_id)
    assert st.state == "failed" and st.reason.startswith("rejected by bank: ") and "seed" in st.reason, st.reason
    assert net.audit_for("bank", job_id, "rejected")
    _nothing_left(net, analyst, job_id)
    # Nothing was spent on a job that never ran.
    assert net.audit_for("bank", job_id, "budget_spent") == []


# --- A2, A3. DP noise is fresh each time, and the budget runs out ---------------------------------

def test_two_identical_dp_jobs_release_different_values_and_the_job_past_the_budget_is_refused(net, analyst, capsys):
    exact = pq.read_table(net / "data" / "bank" / "customers.parquet").to_pandas().groupby("region")["income"].mean()
    released = []
    for i in range(2):  # the same spec twice (a fresh nonce each time): epsilon 1 + 1 = the bank's budget
        job_id = analyst.submit(DP_AGGREGATE.format(name="twice", epsilon=1.0, extra=""))
        st = analyst.wait(job_id)
        assert st.state == "succeeded", st.reason
        doc = _rows(analyst, job_id)
        assert doc["dp"] is not None
        means = {r[0]: r[doc["columns"].index("income.mean")] for r in doc["rows"]}
        assert means and all(means[g] != pytest.approx(exact[g], abs=1e-6) for g in means)  # noisy, not exact
        released.append(means)
        spent = net.audit_for("bank", job_id, "budget_spent")
        assert [(e["table"], e["epsilon"]) for e in spent] == [("customers", 1.0)]
    common = sorted(set(released[0]) & set(released[1]))
    assert common and all(released[0][g] != released[1][g] for g in common)  # no replayable noise

    # The third would pass the table's budget: refused before anything is signed, naming what remains.
    third = analyst.submit(DP_AGGREGATE.format(name="third", epsilon=0.5, extra=""))
    st = analyst.wait(third)
    assert st.state == "failed" and st.reason.startswith("rejected by bank: budget.customers: "), st.reason
    assert f"remaining epsilon 0 of {BANK_BUDGET:g}" in st.reason, st.reason
    _nothing_left(net, analyst, third)
    code, out, err = _cli(capsys, "budget", "show", "--config", net / "bank.yaml", "--json")
    assert code == 0, err
    shown = {t["table"]: t for t in json.loads(out)["tables"]}["customers"]
    assert shown["spent_epsilon"] == pytest.approx(BANK_BUDGET) and shown["remaining_epsilon"] == 0
    assert shown["jobs"] == 2

    # The operator raises the budget (audited with her name); the same job then runs.
    code, out, err = _cli(capsys, "budget", "raise", "customers", "--epsilon", "0.5", "--operator", "dana",
                          "--reason", "one more quarterly figure", "--config", net / "bank.yaml", "--json")
    assert code == 0, err
    assert json.loads(out)["remaining_epsilon"] == pytest.approx(0.5)
    raised = [e for e in net.audit("bank") if e["event"] == "budget_raised"]
    assert [(e["table"], e["epsilon"], e["operator"]) for e in raised] == [("customers", 0.5, "dana")]
    again = analyst.submit(DP_AGGREGATE.format(name="third", epsilon=0.5, extra=""))
    assert analyst.wait(again).state == "succeeded"
    code, out, _ = _cli(capsys, "budget", "show", "--config", net / "bank.yaml", "--json")
    assert {t["table"]: t for t in json.loads(out)["tables"]}["customers"]["remaining_epsilon"] == 0


# --- A4. a tree model cannot memorise a row -------------------------------------------------------

def _leaf_rows(model_bytes: bytes, x: np.ndarray) -> list[int]:
    """Walk every tree of the ONNX tree ensemble over the rows `x`; how many rows reach each leaf."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    nodes = [n for n in model.graph.node if n.op_type.startswith("TreeEnsemble")]
    assert nodes, "the released model has no tree ensemble"
    counts: list[int] = []
    for node in nodes:
        a = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
        trees = np.asarray(a["nodes_treeids"])
        ids = np.asarray(a["nodes_nodeids"])
        feature = np.asarray(a["nodes_featureids"])
        threshold = np.asarray(a["nodes_values"], dtype=np.float32)
        modes = [m.decode() if isinstance(m, bytes) else m for m in a["nodes_modes"]]
        true_ids, false_ids = np.asarray(a["nodes_truenodeids"]), np.asarray(a["nodes_falsenodeids"])
        for tree in np.unique(trees):
            index = {int(ids[i]): i for i in np.flatnonzero(trees == tree)}
            reached: dict[int, int] = {}
            for row in x.astype(np.float32):
                at = index[0]
                while modes[at] != "LEAF":
                    assert modes[at] == "BRANCH_LEQ", modes[at]
                    go = row[feature[at]] <= threshold[at]
                    at = index[int(true_ids[at] if go else false_ids[at])]
                reached[at] = reached.get(at, 0) + 1
            counts += list(reached.values())
    return counts


def test_a_tree_model_released_under_k_has_no_leaf_fitted_from_fewer_than_k_rows(net, analyst):
    from teenet.jobspec import parse_job_spec
    from teenet.models import PartyInput
    from teenet.models.learning import pooled_rows, split
    from teenet.models.train import parse_params

    job_id = analyst.submit(FOREST)  # asks for leaves of one row (scikit-learn's default)
    st = analyst.wait(job_id, timeout=120)
    assert st.state == "succeeded", st.reason
    opened, _ = analyst.result(job_id)
    model = next(r for r in opened if r.kind == "model")
    # The rows the enclave trained on: the same join and seeded split over the owners' files.
    spec = parse_job_spec(FOREST, source="forest")
    inputs = []
    for i in spec.inputs:
        data = pq.read_table(net / "data" / i.party / f"{ {'bank': 'customers', 'telco': 'usage'}[i.party] }.parquet")
        inputs.append(PartyInput(i.party, i.table, tuple(i.keys), tuple(i.columns),
                                 data.select(list(i.keys) + list(i.columns))))
    params = parse_params(dict(spec.params), [p.spec for p in inputs], frozenset({"model"}))
    x_train, _, _, _ = split(pooled_rows(inputs, params), params, 10)
    features = [f.split("__", 1)[-1] for f in model.summary["features"]]
    assert set(features) == {"age", "income", "minutes", "late_payments"}
    counts = _leaf_rows(model.payload, x_train[features].to_numpy(dtype=np.float64))
    assert len(counts) > 5 and min(counts) >= 10, sorted(counts)[:10]


# --- A5. k counts the people behind each statistic ------------------------------------------------

def test_the_k_group_with_nine_nulls_releases_no_income_statistic(net, analyst):
    job_id = analyst.submit(AGGREGATE.format(name="islands", group_by="region", stats="count, mean"))
    st = analyst.wait(job_id)
    assert st.state == "succeeded", st.reason
    opened, _ = analyst.result(job_id)
    doc = json.loads(opened[0].payload)
    cols = doc["columns"]
    islands = [r for r in doc["rows"] if r[0] == "islands"]
    for row in islands:  # the group of ten may show, but no statistic computed from its one income
        assert row[cols.index("income.count")] is None and row[cols.index("income.mean")] is None, row
    others = [r for r in doc["rows"] if r[0] != "islands"]
    assert others and all(r[cols.index("income.mean")] is not None for r in others)
    assert repr(ISLANDS_INCOME).encode() not in opened[0].payload and b"123456" not in opened[0].payload
    assert leaked(plaintext_needles(net, [("bank", "customers")]), opened[0].payload) == []


# --- A6. max, min, percentiles only when the rule names them --------------------------------------

@pytest.mark.parametrize("stat", ["max", "min", "p50"])
def test_an_order_statistic_is_refused_unless_the_rule_names_it(net, analyst, stat):
    job_id = analyst.submit(AGGREGATE.format(name=stat, group_by="region", stats=f"mean, {stat}"))
    st = analyst.wait(job_id)
    assert st.state == "failed" and st.reason.startswith("rejected by bank: analysis.statistics: "), st.reason
    assert "params.metrics[0].stats[1]" in st.reason and stat in st.reason
    assert "policy.analysis.customers" in st.reason  # names where the owner wrote the rule
    _nothing_left(net, analyst, job_id)


# --- A7. membership through a tiny PSI ------------------------------------------------------------

def test_a_psi_size_over_a_three_id_probe_is_refused_under_k(net, analyst):
    job_id = analyst.submit(PROBE.format(name="three"))
    st = analyst.wait(job_id)
    assert st.state == "failed" and st.reason.startswith("psi refused: "), st.reason
    assert "min_group_size" in st.reason or "k" in st.reason
    assert re.search(r"\b3\b", st.reason) is None, st.reason  # a count below k never leaves the enclave
    assert list(st.results) == []
    assert net.audit_for("compute-1", job_id, "released_results") == []
    log = net.log_text("compute-1")
    assert not re.search(rf"{job_id[:16]}[^\n]*\b3 (row|id|match)", log)


# --- A8, A9. grouping by a column the rule does not list --------------------------------------------

def test_grouping_by_a_column_the_rule_does_not_list_is_refused_by_the_owners_node(net, analyst, capsys):
    job_id = analyst.submit(AGGREGATE.format(name="by-age", group_by="age", stats="count, mean"))
    st = analyst.wait(job_id)
    assert st.state == "failed" and st.reason.startswith("rejected by bank: analysis.group_by: "), st.reason
    assert "params.group_by[0]" in st.reason and "age" in st.reason
    rejected = net.audit_for("bank", job_id, "rejected")
    assert rejected and "analysis.group_by" in rejected[0]["reason"]
    _nothing_left(net, analyst, job_id)
    code, out, _ = _cli(capsys, "approvals", "list", "--all", "--config", net / "bank.yaml", "--json")
    assert code == 0
    shown = {r["job_id"]: r for r in json.loads(out)}[job_id]
    assert shown["status"] == "rejected" and "analysis.group_by" in shown["reason"]


def _kill(net: AttackNet, name: str) -> dict:
    import os
    import signal
    import time

    from teenet.cli.sandbox import PROCESS_FILE, _alive

    procs = json.loads((net / PROCESS_FILE).read_text())
    proc = next(p for p in procs if p["name"] == name)
    os.kill(proc["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _alive(proc["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(proc["pid"]), f"{name} did not stop"
    (net / PROCESS_FILE).write_text(json.dumps([p for p in procs if p is not proc]))
    return proc


def _forged_approval(net: AttackNet, job_id: str, text: str, *, with_terms: bool):
    """What the insurer's host can sign with the insurer's key: an approval of this job that its
    node never made, carrying the insurer's real rule (or, stale, no terms at all)."""
    import dataclasses

    from teenet.approval import sign_decision
    from teenet.config import load_node_config
    from teenet.jobspec import parse_job_spec
    from teenet.node.policy import decision_for

    policy = load_node_config(net / "insurer.yaml").policy
    decision = decision_for(parse_job_spec(text, source="forged"), job_id, "insurer", policy,
                            policy.compute_attestation["measurements"], approve=True,
                            reason="approved by auto-approve rule", decided_by="policy")
    if not with_terms:
        decision = dataclasses.replace(decision, analysis=())
    return sign_decision(decision, net.keys("insurer").signing)


FORGED = {  # case: (group_by, release kind, approval carries terms, the check that refuses)
    "grouped by a column the rule does not list": ("claims", "aggregate", True, "analysis.group_by"),
    "raw rows": ("region", "rows", True, "release.raw_rows"),
    "a stale approval without terms": ("claims", "aggregate", False, "approval.terms"),
}


def test_a_forged_or_stale_approval_of_what_the_rule_refuses_is_refused_by_the_compute_enclave(net, analyst):
    _kill(net, "insurer")  # its node would refuse these jobs itself; its host signs approvals instead
    outcomes = {}
    try:
        for n, (case, (group_by, kind, terms, _)) in enumerate(FORGED.items()):
            text = INSURER_ONLY.format(name=n, group_by=group_by, kind=kind)
            job_id = analyst.submit(text, validate=False)
            forged = _forged_approval(net, job_id, text, with_terms=terms)
            channel, stub = net.coordinator_stub("insurer")
            try:
                stub.SubmitDecision(pb.SignedDecision(job_id=job_id, party="insurer", decision=forged.decision,
                                                      signature=forged.signature), timeout=10)
            finally:
                channel.close()
            outcomes[case] = (job_id, analyst.wait(job_id))
    finally:
        start_node(net.directory, "insurer")
    for case, (job_id, st) in outcomes.items():
        check = FORGED[case][3]
        assert st.state == "failed" and st.reason.startswith(f"compute enclave refused the job: {check}"), st.reason
        failed = net.audit_for("compute-1", job_id, "job_failed")
        assert failed and check in failed[0]["reason"]
        assert net.audit_for("compute-1", job_id, "job_accepted") == []  # no keys, no offer
        _nothing_left(net, analyst, job_id, parties=("insurer",))


def test_the_operator_sees_which_rule_matched_a_job_that_waits_and_the_approval_records_it(net, analyst,
                                                                                             capsys):
    text = """\
name: claims-model
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
    job_id = analyst.submit(text)  # the insurer's auto-approve rules leave train jobs to an operator
    wait_until(lambda: net.audit_for("insurer", job_id, "approval_pending"), 30, "the insurer to wait")
    code, out, err = _cli(capsys, "approvals", "list", "--config", net / "insurer.yaml", "--json")
    assert code == 0, err
    waiting = {r["job_id"]: r for r in json.loads(out)}[job_id]
    assert waiting["status"] == "pending" and waiting["spend"] == {"epsilon": 0.0, "delta": 0.0}  # no DP
    assert re.search(r"analysis rules matched: policies: insurer\.yaml:\d+ policy\.analysis\.policies",
                     waiting["reason"]), waiting["reason"]
    [pending] = net.audit_for("insurer", job_id, "approval_pending")
    assert pending["rules"] and pending["rules"][0].startswith("policies: insurer.yaml:")
    code, _, err = _cli(capsys, "approvals", "approve", job_id, "--operator", "li", "--config",
                        net / "insurer.yaml")
    assert code == 0, err
    st = analyst.wait(job_id, timeout=120)
    assert st.state == "succeeded", st.reason
    [approved] = net.audit_for("insurer", job_id, "approved")
    assert approved["decided_by"] == "operator:li" and approved["rules"] == pending["rules"]
