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
    .venv/bin/python scripts/bench_cluster.py --case boosting --rows 1000000 --features 30
    .venv/bin/python scripts/bench_cluster.py --case train_lr --rows 1000000 --features 30

Training cases (`--case boosting` for xgboost, `--case train_lr` for logistic regression):
two parties hold half of the features each (float64, 1% missing) for the same ids, the
first also a binary label; every row's values are drawn from a generator seeded by its
chunk of ids, so a worker building its partition in place holds exactly the single node's
rows of that partition. Boosting on the cluster runs XGBoost's federated communicator over
mutual TLS (the throwaway CA's leaf certificate serves the leader's federated server). The
releases are compared: logistic regression's coefficients must agree to 1e-6, boosting's
AUC to 0.002.
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


TRAIN_K = 10


def _train_job(case: str, features: int):
    from teenet.models import ReleaseRequest
    from teenet.models.spec import ReleaseRules

    rules = ReleaseRules(min_group_size=TRAIN_K, approved_recipients={"model": frozenset({"a"}),
                                                                      "metrics": frozenset({"a"})},
                         id_owners=frozenset({"a", "b"}))
    params = {"label": {"party": "a", "column": "label"}, "seed": 1}
    if case == "boosting":
        params.update(model="xgboost", hyperparameters={"n_estimators": 100, "max_depth": 6})
    else:
        params.update(model="logistic_regression")
    return params, [ReleaseRequest("model", ("a",)), ReleaseRequest("metrics", ("a",))], rules


def _train_columns(party: str, features: int) -> list[str]:
    half = features // 2
    names = [f"f{i}" for i in (range(half) if party == "a" else range(half, features))]
    return names + (["label"] if party == "a" else [])


def _train_table(party: str, rows: int, features: int, part: int | None = None, parts: int = 1):
    """Party a: ids, features f0..f(h-1) and a label; party b: ids and the other features.
    Each chunk's values come from a generator seeded by the chunk, so a partition is an
    exact subset of the whole table."""
    import numpy as np
    import pyarrow as pa

    columns: dict[str, list] = {}
    weights = np.random.default_rng(99).normal(size=features)
    for lo in range(0, rows, CHUNK):
        ids = np.arange(lo, min(lo + CHUNK, rows), dtype=np.int64)
        rng = np.random.default_rng([7, lo])
        x = rng.normal(size=(ids.size, features))
        label = (x @ weights + rng.normal(size=ids.size) > 0).astype(np.int64)
        x[rng.random(x.shape) < 0.01] = np.nan
        keep = slice(None)
        if part is not None:
            mixed = (ids.astype(np.uint64) * np.uint64(HASH_KEY)) ^ (ids.astype(np.uint64) >> np.uint64(29))
            keep = (mixed % np.uint64(parts)).astype(np.int64) == part
        columns.setdefault("id", []).append(ids[keep])
        for name in _train_columns(party, features):
            values = label if name == "label" else x[:, int(name[1:])]
            columns.setdefault(name, []).append(values[keep])
    return pa.table({name: np.concatenate(chunks) for name, chunks in columns.items()})


def _train_single(case: str, rows: int, features: int, queue: Any) -> None:
    from teenet.models import PartyInput, run_function

    inputs = [PartyInput(p, f"t{p}", ("id",), tuple(_train_columns(p, features)), _train_table(p, rows, features))
              for p in ("a", "b")]
    params, requests, rules = _train_job(case, features)
    started = time.perf_counter()
    out = run_function("train", inputs, params, requests, rules)
    seconds = time.perf_counter() - started
    queue.put({"seconds": seconds, "peak_mib": _peak_mib(), "summary": out[0].summary,
               "metrics": json.loads(out[1].payload)})


def _train_cluster(case: str, rows: int, workers: int, features: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster, wait

    from cluster_helpers import make_ca_files, tls_security
    from teenet.models.cluster import ClusterPartyInput, FederatedTLS, run_function_on_cluster

    with tempfile.TemporaryDirectory(prefix="teenet-bench-cluster-") as folder:
        files = make_ca_files(Path(folder))
        security = tls_security(files)
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, protocol="tls://",
                          security=security, dashboard_address=None, host="127.0.0.1") as cluster, \
                Client(cluster, security=security) as client:
            addresses = sorted(client.scheduler_info()["workers"])
            inputs = []
            for p in ("a", "b"):
                futures = tuple(client.submit(_train_table, p, rows, features, i, workers, workers=[a], pure=False)
                                for i, a in enumerate(addresses))
                inputs.append(ClusterPartyInput(p, f"t{p}", ("id",), tuple(_train_columns(p, features)), futures))
            wait([f for inp in inputs for f in inp.partitions])
            leader_before = _peak_mib()
            params, requests, rules = _train_job(case, features)
            federated = FederatedTLS("127.0.0.1", files["ca"], files["cert"], files["key"])
            started = time.perf_counter()
            out = run_function_on_cluster("train", inputs, params, requests, rules, client, federated_tls=federated)
            seconds = time.perf_counter() - started
            peaks = client.run(_worker_peak)
            return {"seconds": seconds, "leader_peak_mib": _peak_mib(), "leader_peak_before_job_mib": leader_before,
                    "worker_peak_mib": [peaks[a] for a in addresses], "summary": out[0].summary,
                    "metrics": json.loads(out[1].payload)}


def _same_training(case: str, single: dict[str, Any], cluster: dict[str, Any]) -> tuple[bool, str]:
    a, b = single["metrics"], cluster["metrics"]
    if case == "boosting":
        gap = abs(a["auc"] - b["auc"])
        return gap <= 0.002, f"AUC {a['auc']:.5f} vs {b['auc']:.5f} (gap {gap:.2g})"
    import numpy as np

    ca = np.array([e["value"] for e in single["summary"]["coefficients"]])
    cb = np.array([e["value"] for e in cluster["summary"]["coefficients"]])
    gap = float(np.max(np.abs(ca - cb)))
    return gap <= 1e-6, f"largest coefficient difference {gap:.2g}, AUC {a['auc']:.5f} vs {b['auc']:.5f}"


def _train_main(args: Any) -> int:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_train_single, args=(args.case, args.rows, args.features, queue))
    proc.start()
    single = queue.get()
    proc.join()
    if proc.exitcode != 0:
        print(f"bench_cluster: the single-node process failed (exit {proc.exitcode})", file=sys.stderr)
        return 1
    cluster = _train_cluster(args.case, args.rows, args.workers, args.features)
    same, detail = _same_training(args.case, single, cluster)
    result = {"case": args.case, "rows": args.rows, "features": args.features, "workers": args.workers,
              "same_model": same, "comparison": detail,
              "single": {k: v for k, v in single.items() if k not in ("summary", "metrics")},
              "cluster": {k: v for k, v in cluster.items() if k not in ("summary", "metrics")},
              "speedup": single["seconds"] / cluster["seconds"]}
    print(f"{args.case} {args.rows:,} x {args.features}: single node {single['seconds']:.2f} s, peak "
          f"{single['peak_mib']:.0f} MiB | leader + {args.workers} workers {cluster['seconds']:.2f} s "
          f"(x{result['speedup']:.2f}), leader peak {cluster['leader_peak_mib']:.0f} MiB, worker peaks "
          + ", ".join(f"{m:.0f}" for m in cluster["worker_peak_mib"]) + f" MiB | {detail}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not same:
        print("bench_cluster: the cluster's model differs from the single node's beyond the bound", file=sys.stderr)
        return 1
    return 0


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
    parser.add_argument("--case", choices=("psi", "boosting", "train_lr"), default="psi",
                        help="psi (default), boosting (xgboost) or train_lr (logistic regression)")
    parser.add_argument("--features", type=int, default=30, help="training cases: feature columns (default 30)")
    args = parser.parse_args(argv)
    if args.rows < 20 or args.workers < 1:
        parser.error("--rows must be at least 20 and --workers at least 1")
    if args.case != "psi":
        if args.features < 2 or args.rows < 100:
            parser.error("training cases need --features >= 2 and --rows >= 100")
        return _train_main(args)
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
