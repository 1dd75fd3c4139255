#!/usr/bin/env python3
"""PSI through the real network path on a cluster (a leader + 2 workers) and on a single
compute node, side by side in one consortium on loopback.

    .venv/bin/python scripts/bench_cluster_network.py --rows 1000000,10000000 [--out results.json]

One sandbox consortium (`teenet sandbox init --computes 2 --workers 2`, simulated
attestation, every daemon its own process): compute-1 leads two compute-worker processes,
compute-2 is a single compute node. The bank holds ids 0..n-1 and the telco n/2..3n/2-1
(int64, 50% overlap), as Parquet. For each n the same PSI (size to the analyst) runs on
compute-1 and on compute-2, as the analyst runs it (scripts/bench_network.py: sign, submit,
long-poll, fetch, verify evidence and signature, decrypt), and the script reports:

- wall time from submit to the verified, decrypted result (a plain process timer);
- time per phase, from every node's own audit timestamps (read-only): per data node from
  its approval to its `shipped` record (read, placement, sealing and shipping of every
  partition), each partition's arrival at the leader (`partition_received`, per worker),
  and from the last arrival to `released_results` (run and release);
- the peak RSS (VmHWM) of every process (coordinator, data nodes, leader, each worker,
  the single node), reset before each job.

Both releases must be equal (the same intersection size) or the script exits 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_network  # noqa: E402

PSI = """\
name: {name}
function: psi
compute: {compute}
inputs:
  - {{party: bank,  table: ids, key: customer_id, columns: []}}
  - {{party: telco, table: ids, key: customer_id, columns: []}}
release:
  - {{kind: size, to: [analyst]}}
"""


class ClusterNetwork(bench_network.BenchNetwork):
    """BenchNetwork whose compute-1 leads `workers` workers and compute-2 is a single node."""

    def __init__(self, directory: Path, own: dict[str, dict[str, Path]], *, workers: int) -> None:
        from teenet.cli.sandbox import init_sandbox

        self.directory = directory.resolve()
        init_sandbox(self.directory, rows=500, own=own, force=True, jobs_from_data=False, computes=2,
                     workers=workers)
        self.up = False
        self.analyst = None


def _write_ids(path: Path, start: int, n: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for lo in range(start, start + n, 1_000_000):
        ids = np.arange(lo, min(start + n, lo + 1_000_000), dtype=np.int64)
        batch = pa.table({"customer_id": ids})
        if writer is None:
            writer = pq.ParquetWriter(path, batch.schema)
        writer.write_table(batch)
    writer.close()


def _epoch(at: str) -> float:
    return datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def audit_events(directory: Path, job_id: str) -> list[tuple[float, str, dict]]:
    """(epoch seconds, node, event) of every node's audit entries for the job, in time order."""
    out = []
    for db in sorted((directory / "state").glob("*/audit.db")):
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("SELECT payload FROM audit_entries").fetchall()
        finally:
            conn.close()
        for (payload,) in rows:
            record = json.loads(payload)
            event = record.get("event") or {}
            if event.get("job_id") == job_id:
                out.append((_epoch(record["at"]), db.parent.name, event))
    return sorted(out, key=lambda e: e[0])


def created_at(directory: Path, job_id: str) -> float:
    db = directory / "state" / "coordinator" / "coordinator.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return float(conn.execute("SELECT created_at FROM jobs WHERE job_id = ?", (job_id,)).fetchone()[0])
    finally:
        conn.close()


def phases(directory: Path, job_id: str, compute: str) -> dict:
    """Seconds per phase from the audit timestamps (relative to the coordinator's created_at)."""
    t0 = created_at(directory, job_id)
    events = audit_events(directory, job_id)
    out: dict = {"timeline": [(round(t - t0, 3), node, e["event"]) for t, node, e in events]}
    for party in ("bank", "telco"):
        mine = [(t, e) for t, node, e in events if node == party]
        approved = next((t for t, e in mine if e["event"] == "approved"), None)
        shipped = next((t for t, e in mine if e["event"] in ("shipped", "released_table")), None)
        if approved is not None and shipped is not None:
            out[f"{party}_read_place_seal_ship_s"] = round(shipped - approved, 3)
    arrivals = [(t, e) for t, node, e in events if node == compute and e["event"] in ("partition_received",
                                                                                     "table_received")]
    for t, e in arrivals:
        label = f"arrived_{e['party']}" + (f"_part{e['partition']}" if "partition" in e else "")
        out[label + "_at_s"] = round(t - t0, 3)
    released = next((t for t, node, e in events if node == compute and e["event"] == "released_results"), None)
    if arrivals and released is not None:
        out["run_release_s"] = round(released - max(t for t, _ in arrivals), 3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000000,10000000", help="comma-separated table sizes")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in args.rows.split(",") if x.strip()]
    except ValueError:
        print(f"error: --rows: expected comma-separated integers, found {args.rows!r}", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 100 or not 1 <= args.workers <= 16:
        print("error: --rows needs sizes >= 100 and --workers 1..16", file=sys.stderr)
        return 2
    report: dict = {"workers": args.workers, "runs": []}
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-cluster-net-") as tmp:
        root = Path(tmp)
        own: dict[str, dict[str, Path]] = {"bank": {}, "telco": {}}
        for n in sizes:
            (root / "data").mkdir(exist_ok=True)
            for party, start in (("bank", 0), ("telco", n // 2)):
                path = root / "data" / f"{party}-{n}.parquet"
                _write_ids(path, start, n)
                own[party][f"ids_{n}"] = path
        net = ClusterNetwork(root / "net", own, workers=args.workers)
        with net:
            for n in sizes:
                sizes_seen = {}
                for compute, label in (("compute-1", "cluster"), ("compute-2", "single")):
                    name = f"psi-{n}-{label}"
                    net.reset_peaks()
                    run = net.run_job(name, PSI.format(name=name, compute=compute).replace("table: ids,",
                                                                                          f"table: ids_{n},"),
                                      timeout=args.timeout)
                    memory = net.memory()
                    entry = {"rows": n, "on": label, "compute": compute, "state": run.state, "reason": run.reason,
                             "wall_s": round(run.seconds, 3), "hops": run.hops,
                             "phases": phases(net.directory, run.job_id, compute),
                             "peak_rss_mib": {k: v["peak_mib"] for k, v in memory.items()}}
                    if run.state == "succeeded":
                        sizes_seen[label] = [(r.kind, r.payload) for r in run.results]
                    else:
                        ok = False
                    report["runs"].append(entry)
                    print(f"{label:8s} n={n:>11,}  {run.state:9s} wall {run.seconds:8.2f} s  "
                          + "  ".join(f"{k}={v}" for k, v in entry["phases"].items() if k != "timeline"))
                    print("          peak RSS MiB: " + ", ".join(f"{k} {v}" for k, v in entry["peak_rss_mib"].items()))
                if len(sizes_seen) == 2 and sizes_seen["cluster"] != sizes_seen["single"]:
                    print(f"error: n={n}: the cluster's release differs from the single node's", file=sys.stderr)
                    ok = False
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
