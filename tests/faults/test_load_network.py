"""Load: 20 jobs submitted at once from 20 threads to a network of three data nodes and two
compute nodes (PSI over every pair and the triple, grouped aggregates, training; half on
compute-1, half on compute-2). Every job succeeds, every result verifies and opens, and
each PSI size and each aggregate count equals the same computation on the pooled plaintext."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq
import pytest

from faults_helpers import FaultNet, key_sets, psi_size

pytestmark = pytest.mark.slow

PSI = """\
name: load-psi-{n}
function: psi
compute: {compute}
inputs:
{inputs}
params: {{normalise: {{trim: true, case: none, type: int}}}}
release:
  - {{kind: size, to: [analyst]}}
"""
AGGREGATE = """\
name: load-aggregate-{n}
function: aggregate
compute: {compute}
inputs:
  - {{party: bank,    table: customers, key: customer_id, columns: [region, income]}}
  - {{party: insurer, table: policies,  key: customer_id, columns: [premium]}}
params:
  combine: join
  group_by: [region]
  metrics:
    - {{column: income, stats: [count, mean]}}
release:
  - {{kind: aggregate, to: [analyst]}}
"""
TRAIN = """\
name: load-train-{n}
function: train
compute: {compute}
inputs:
  - {{party: bank,  table: customers, key: customer_id, columns: [age, income, defaulted]}}
  - {{party: telco, table: usage,     key: customer_id, columns: [minutes, late_payments]}}
params: {{layout: vertical, model: logistic_regression,
         label: {{party: bank, column: defaulted}}, test_fraction: 0.2, seed: {n}}}
release:
  - {{kind: metrics, to: [analyst]}}
"""
TABLE = {"bank": "customers", "telco": "usage", "insurer": "policies"}
PSI_GROUPS = [("bank", "telco"), ("bank", "insurer"), ("telco", "insurer"), ("bank", "telco", "insurer")]
JOBS = 20
BUDGET = 120.0  # seconds for all 20 to end


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("load")
    init_sandbox(d, rows=20_000, computes=2)
    up_sandbox(d)
    n = FaultNet(d, None, None)
    try:
        n.connect()
        yield n
    finally:
        n.close()
        down_sandbox(d)


def plan() -> list[tuple[str, str, object]]:
    """(kind, spec text, expected) for 20 jobs: 10 PSI, 5 aggregates, 5 trainings."""
    jobs = []
    for n in range(JOBS):
        compute = f"compute-{n % 2 + 1}"
        if n % 4 in (0, 1):
            parties = PSI_GROUPS[(n // 2) % len(PSI_GROUPS)]
            inputs = "\n".join(f"  - {{party: {p}, table: {TABLE[p]}, key: customer_id}}" for p in parties)
            jobs.append(("psi", PSI.format(n=n, compute=compute, inputs=inputs), parties))
        elif n % 4 == 2:
            jobs.append(("aggregate", AGGREGATE.format(n=n, compute=compute), None))
        else:
            jobs.append(("train", TRAIN.format(n=n, compute=compute), None))
    return jobs


def expected_region_counts(directory) -> dict[str, int]:
    bank = pq.read_table(directory / "data" / "bank" / "customers.parquet").to_pandas()
    insurer = pq.read_table(directory / "data" / "insurer" / "policies.parquet").to_pandas()
    joined = bank.merge(insurer[["customer_id"]], on="customer_id")
    return {r: int(c) for r, c in joined.groupby("region")["customer_id"].nunique().items() if c >= 10}


def test_twenty_concurrent_jobs_on_two_compute_nodes_all_finish_correctly(net):
    jobs = plan()
    assert {j[1].split("compute: ")[1].split()[0] for j in jobs} == {"compute-1", "compute-2"}
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        ids = list(pool.map(lambda j: net.submit(j[1]), jobs))
    assert len(set(ids)) == JOBS
    deadline = start + BUDGET
    states = {}
    for job_id in ids:
        st = net.wait_state(job_id, {"succeeded", "failed", "cancelled"}, timeout=max(1.0, deadline - time.monotonic()))
        states[job_id] = (st.state, st.reason, st.compute)
    elapsed = time.monotonic() - start
    failed = {k[:12]: v for k, v in states.items() if v[0] != "succeeded"}
    assert not failed, failed
    assert {v[2] for v in states.values()} == {"compute-1", "compute-2"}

    keys = key_sets(net.directory)
    regions = expected_region_counts(net.directory)
    for (kind, _, parties), job_id in zip(jobs, ids):
        results = net.results(job_id)
        if kind == "psi":
            expected = set.intersection(*(keys[p] for p in parties))
            assert psi_size(results["size"]) == len(expected), (parties, job_id[:12])
        elif kind == "aggregate":
            body = json.loads(results["aggregate"].payload)
            region_at = body["columns"].index("region")
            count_at = next(i for i, c in enumerate(body["columns"]) if "count" in c and "income" in c)
            got = {row[region_at]: row[count_at] for row in body["rows"]}
            assert got.keys() == regions.keys() and all(got[r] == regions[r] for r in regions), (got, regions)
        else:
            assert "metrics" in results and results["metrics"].payload
    assert net.listed() >= set(ids)
    print(f"\n20 concurrent jobs on 2 compute nodes: all succeeded in {elapsed:.1f}s")
