#!/usr/bin/env python3
"""PSI on one compute node vs a leader + N Dask workers, side by side in one run, on loopback.

Both sides run the same job (psi, size and sums of one payload column, k = 10) over the
same rows: party A holds ids 0..n-1, party B ids n/2..3n/2-1 (50% overlap), each with an
int64 payload. The single node is its own process and runs teenet.models.run_function
over whole tables. The cluster is a distributed.LocalCluster of worker processes speaking
only tls:// (a throwaway CA, require_encryption on, no dashboard); each worker builds its
own partition of both tables in place, as partitioned ingress delivers them (rows whose
keyed hash of the id falls in its partition, generated a chunk at a time), so the leader
never holds a table; the leader then runs teenet.models.cluster.run_function_on_cluster.
Both releases are compared (they must be equal) and the job's wall time and every
process's peak resident memory are reported.

    .venv/bin/python scripts/bench_cluster.py --rows 10000000 --workers 2 [--out results.json]

Boosting (1M x 30) is not measured yet: boosting does not run on a cluster yet.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "models"))  # the throwaway-CA helper the cluster tests use

MIB = 1 << 20
CHUNK = 1_000_000
HASH_KEY = 0x9E3779B97F4A7C15


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _job():
    from teenet.models import ReleaseRequest
    from teenet.models.spec import ReleaseRules

    rules = ReleaseRules(min_group_size=10, approved_recipients={"size": frozenset({"a"}), "sums": frozenset({"a"})},
                         id_owners=frozenset({"a", "b"}))
    params = {"payload": [{"party": "b", "column": "amount"}]}
    return params, [ReleaseRequest("size", ("a",)), ReleaseRequest("sums", ("a",))], rules


def _table(party: str, start: int, stop: int, part: int | None = None, parts: int = 1):
    """Ids start..stop-1 with a payload, in a seeded shuffled order; with `part`, only the
    rows whose keyed hash falls in partition `part` of `parts`, built a chunk at a time."""
    import numpy as np
    import pyarrow as pa

    pieces = []
    for lo in range(start, stop, CHUNK):
        ids = np.arange(lo, min(lo + CHUNK, stop), dtype=np.int64)
        if part is not None:
            mixed = (ids.astype(np.uint64) * np.uint64(HASH_KEY)) ^ (ids.astype(np.uint64) >> np.uint64(29))
            ids = ids[(mixed % np.uint64(parts)).astype(np.int64) == part]
        pieces.append(ids)
    ids = np.concatenate(pieces)
    ids = ids[np.random.default_rng(len(party) + start).permutation(ids.size)]
    return pa.table({"id": ids, "amount": (ids % 1000).astype(np.int64)})


def _inputs_spec(rows: int):
    return [("a", "ta", 0, rows), ("b", "tb", rows // 2, rows // 2 + rows)]


def _single(rows: int, queue: Any) -> None:
    from teenet.models import PartyInput, run_function

    inputs = [PartyInput(p, t, ("id",), ("amount",), _table(p, lo, hi)) for p, t, lo, hi in _inputs_spec(rows)]
    params, requests, rules = _job()
    started = time.perf_counter()
    out = run_function("psi", inputs, params, requests, rules)
    seconds = time.perf_counter() - started
    queue.put({"seconds": seconds, "peak_mib": _peak_mib(), "payloads": [r.payload.decode() for r in out]})


def _worker_partition(party: str, lo: int, hi: int, part: int, parts: int):
    return _table(party, lo, hi, part, parts)


def _worker_peak() -> float:
    return _peak_mib()


def _cluster(rows: int, workers: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster, wait

    from cluster_helpers import make_ca_files, tls_security
    from teenet.models.cluster import ClusterPartyInput, run_function_on_cluster

    with tempfile.TemporaryDirectory(prefix="teenet-bench-cluster-") as folder:
        security = tls_security(make_ca_files(Path(folder)))
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, protocol="tls://",
                          security=security, dashboard_address=None, host="127.0.0.1") as cluster, \
                Client(cluster, security=security) as client:
            addresses = sorted(client.scheduler_info()["workers"])
            inputs = []
            for p, t, lo, hi in _inputs_spec(rows):
                futures = tuple(client.submit(_worker_partition, p, lo, hi, i, workers, workers=[a], pure=False)
                                for i, a in enumerate(addresses))
                inputs.append(ClusterPartyInput(p, t, ("id",), ("amount",), futures))
            wait([f for inp in inputs for f in inp.partitions])  # ingress done (on the workers) before the clock
            leader_before = _peak_mib()
            params, requests, rules = _job()
            started = time.perf_counter()
            out = run_function_on_cluster("psi", inputs, params, requests, rules, client)
            seconds = time.perf_counter() - started
            peaks = client.run(_worker_peak)
            return {"seconds": seconds, "leader_peak_mib": _peak_mib(), "leader_peak_before_job_mib": leader_before,
                    "worker_peak_mib": [peaks[a] for a in addresses],
                    "payloads": [r.payload.decode() for r in out]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows per party (default 10,000,000)")
    parser.add_argument("--workers", type=int, default=2, help="cluster workers (default 2)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.rows < 20 or args.workers < 1:
        parser.error("--rows must be at least 20 and --workers at least 1")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_single, args=(args.rows, queue))
    proc.start()
    single = queue.get()
    proc.join()
    if proc.exitcode != 0:
        print(f"bench_cluster: the single-node process failed (exit {proc.exitcode})", file=sys.stderr)
        return 1
    cluster = _cluster(args.rows, args.workers)
    same = single["payloads"] == cluster["payloads"]
    result = {"case": "psi", "rows_per_party": args.rows, "workers": args.workers, "same_release": same,
              "single": {k: v for k, v in single.items() if k != "payloads"},
              "cluster": {k: v for k, v in cluster.items() if k != "payloads"},
              "speedup": single["seconds"] / cluster["seconds"]}
    print(f"psi {args.rows:,} x {args.rows:,}: single node {single['seconds']:.2f} s, peak {single['peak_mib']:.0f} MiB"
          f" | leader + {args.workers} workers {cluster['seconds']:.2f} s (x{result['speedup']:.2f}),"
          f" leader peak {cluster['leader_peak_mib']:.0f} MiB, worker peaks "
          + ", ".join(f"{m:.0f}" for m in cluster["worker_peak_mib"]) + " MiB"
          + f" | same release: {same}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not same:
        print("bench_cluster: the cluster's release differs from the single node's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
