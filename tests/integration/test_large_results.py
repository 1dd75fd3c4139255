"""A result bigger than gRPC's 64 MiB message limit: the ids of a 9M x 9M PSI (72 MB of int64
ids, padded to a 128 MiB bucket) reach the bank through the coordinator as a chunked
stream, and open to exactly the intersection. Before streamed results this failed with
"RESOURCE_EXHAUSTED: Sent message larger than max"."""

from __future__ import annotations

import sqlite3

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from integration_helpers import cli_json, write_job

pytestmark = pytest.mark.slow

COMMON = 9_000_000


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("large-results")
    files = {}
    # the bank holds ids 0 .. 9.5M, the telco 500k .. 9.5M: 9M in common
    for party, first in (("bank", 0), ("telco", 500_000)):
        ids = np.arange(first, COMMON + 500_000, dtype=np.int64)
        path = d / f"{party}-ids.parquet"
        pq.write_table(pa.table({"customer_id": ids}), path)
        files[party] = {"ids": path}
    init_sandbox(d / "net", rows=200, own=files)
    net = d / "net"
    for party in ("bank", "telco"):
        config = yaml.safe_load((net / f"{party}.yaml").read_text())
        config["policy"]["id_recipients"] = ["bank"]
        config["policy"]["auto_approve"][0]["release_kinds"].append("ids")
        (net / f"{party}.yaml").write_text(yaml.safe_dump(config))
    up_sandbox(net)
    try:
        yield net
    finally:
        down_sandbox(net)


def test_an_ids_release_over_64_mib_streams_through(big, capsys, tmp_path):
    spec = write_job(big, "big-ids", (
        "name: big-ids\nfunction: psi\ncompute: compute-1\ninputs:\n"
        "  - {party: bank,  table: ids, key: customer_id, columns: []}\n"
        "  - {party: telco, table: ids, key: customer_id, columns: []}\n"
        "release:\n  - {kind: ids, to: [bank]}\n"))
    out = cli_json(capsys, "job", "submit", spec, "--config", big / "analyst.yaml", "--wait", "--timeout", "240")
    assert out["state"] == "succeeded", out
    with sqlite3.connect(big / "state" / "coordinator" / "coordinator.db") as db:
        stored, largest = db.execute("SELECT sum(length(data)), max(length(data)) FROM result_chunks "
                                     "WHERE job_id = ?", (out["job_id"],)).fetchone()
    assert stored > 64 << 20 and largest < 4 << 20, (stored, largest)
    # the bank, as a recipient, fetches and verifies with its node's config
    got = cli_json(capsys, "job", "result", out["job_id"], "--config", big / "bank.yaml", "--out", tmp_path)
    assert got["verified"] and got["results"][0]["summary"]["rows"] == COMMON
    ids = pacsv.read_csv(tmp_path / "ids.csv").column("customer_id").to_numpy()
    assert len(ids) == COMMON and ids[0] == 500_000 and ids[-1] == 500_000 + COMMON - 1
    assert np.all(np.diff(ids) == 1)
