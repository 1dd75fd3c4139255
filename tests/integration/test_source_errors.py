"""A data owner's table that turns out unreadable part-way through an upload: the bank's
customers are a CSV whose customer_id column stops parsing as a number after the first
block (about 9 MB in). The job fails with the bank's own reason, not a vague transport
error or a blame on the compute node; the bank never records the table as shipped, and
the compute enclave never takes the cut stream as a table."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from integration_helpers import run_cli

pytestmark = pytest.mark.slow

FILLER_ROWS = 320_000  # ids the other parties do not hold, to push the bad row past the CSV reader's first block


def _audit(directory, party):
    from teenet.audit import read_log

    entries, _ = read_log(directory / "state" / party / "audit.db")
    return [dict(e.event) for e in entries]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("source-errors")
    init_sandbox(d, rows=3000)
    customers = pq.read_table(d / "data" / "bank" / "customers.parquet")
    first = customers.slice(0, 1).to_pylist()[0]
    filler = pa.table({name: ([10_000_000 + i for i in range(FILLER_ROWS)] if name == "customer_id"
                              else pa.repeat(first[name], FILLER_ROWS).to_pylist())
                       for name in customers.column_names}).cast(customers.schema)
    path = d / "data" / "bank" / "customers.csv"
    pacsv.write_csv(pa.concat_tables([customers, filler]), path)
    assert path.stat().st_size > 9 << 20
    with path.open("a") as f:  # one row whose id is not a number, far past the first block
        f.write(",".join("C-0001" if name == "customer_id" else str(first[name]) for name in customers.column_names)
                + "\n")
    config = yaml.safe_load((d / "bank.yaml").read_text())
    config["tables"]["customers"] = {"format": "csv", "path": str(path)}
    (d / "bank.yaml").write_text(yaml.safe_dump(config))
    up_sandbox(d)
    try:
        yield d
    finally:
        down_sandbox(d)


def test_an_unreadable_row_mid_upload_fails_the_job_with_the_owners_reason(sandbox, capsys):
    code, text, err = run_cli(capsys, "job", "submit", sandbox / "jobs" / "psi-overlap.yaml", "--config",
                              sandbox / "analyst.yaml", "--wait", "--timeout", "120", "--json")
    assert code == 1, err  # the job failed: submit --wait says so in its exit code
    out = json.loads(text)
    job_id = out["job_id"]
    assert out["state"] == "failed", out
    reason = out["reason"]
    # Outside the bank: the table and the column, never the cell or Arrow's words about it.
    assert reason == "bank could not read customers: input.value (field 'customer_id')", reason
    assert "bank/customers" not in out.get("uploaded", [])
    bank = [e for e in _audit(sandbox, "bank") if e.get("job_id") == job_id]
    failed = [e for e in bank if e["event"] == "upload_failed"]
    assert failed and failed[0]["reason"] == reason, bank
    # The bank's operator reads the detail in the bank's own audit.
    assert "C-0001" in failed[0]["detail"] and "int64" in failed[0]["detail"], failed
    assert not any(e["event"] == "released_table" for e in bank)
    # The enclave refused the cut stream (no final chunk), and drops the job once it failed.
    deadline = time.monotonic() + 20
    compute: list[dict] = []
    while time.monotonic() < deadline:
        compute = [e for e in _audit(sandbox, "compute-1") if e.get("job_id") == job_id]
        if any(e["event"] == "job_dropped" for e in compute):
            break
        time.sleep(0.2)
    assert not any(e["event"] == "table_received" and e["party"] == "bank" for e in compute), compute
    assert any(e["event"] == "job_dropped" for e in compute), compute


def test_the_daemons_stop_without_a_traceback(sandbox):
    """Runs last in this module: SIGTERM to every daemon (as `teenet sandbox down` sends it)
    ends each one cleanly, long polls in flight included."""
    from teenet.cli.sandbox import down_sandbox

    assert len(down_sandbox(sandbox)) == 5
    logs = sorted((sandbox / "logs").glob("*.log"))
    assert len(logs) == 5
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text, f"{log.name}:\n{text[-3000:]}"
        if log.name != "coordinator.log":
            assert "stopped" in text.splitlines()[-1], (log.name, text[-500:])
