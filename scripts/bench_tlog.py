"""Benchmark the verifiable log (teenet/tlog.py): append N entries, then time proofs.

Reports the append rate (entries hashed as leaves and folded into the tree), and the
median time to make and to verify an inclusion proof and a consistency proof at random
positions, with SHA-256 of one entry as the baseline a log cannot go below.

    .venv/bin/python scripts/bench_tlog.py --entries 1000000 [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from teenet.tlog import MerkleTree, leaf_hash, verify_consistency, verify_inclusion  # noqa: E402


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--proofs", type=int, default=2000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    # Entries about the size of an audit event (canonical JSON of ~200 bytes).
    payloads = [(b'{"at":"2026-12-01T00:00:00.000000Z","event":{"event":"released_table","job_id":"%064d",'
                 b'"rows":1000000,"table":"customers","to":"compute-1"}}' % i) for i in range(args.entries)]
    t0 = time.perf_counter()
    for p in payloads:
        hashlib.sha256(b"\x00" + p).digest()
    hash_only = time.perf_counter() - t0

    tree = MerkleTree()
    t0 = time.perf_counter()
    for p in payloads:
        tree.append(p)
    append = time.perf_counter() - t0
    root = tree.root()
    n = tree.size
    rng = random.Random(7)

    make_inc, check_inc, make_con, check_con, lengths = [], [], [], [], []
    for _ in range(args.proofs):
        i = rng.randrange(n)
        t = time.perf_counter()
        proof = tree.inclusion_proof(i)
        make_inc.append(time.perf_counter() - t)
        t = time.perf_counter()
        verify_inclusion(leaf_hash(payloads[i]), i, n, proof, root)
        check_inc.append(time.perf_counter() - t)
        lengths.append(len(proof))
        old = rng.randrange(1, n)
        t = time.perf_counter()
        cproof = tree.consistency_proof(old)
        make_con.append(time.perf_counter() - t)
        old_root = tree.root(old)
        t = time.perf_counter()
        verify_consistency(old, n, old_root, root, cproof)
        check_con.append(time.perf_counter() - t)

    result = {
        "entries": n,
        "append_seconds": round(append, 3),
        "append_per_second": round(n / append),
        "leaf_hash_only_seconds": round(hash_only, 3),
        "append_vs_hash_only": round(append / hash_only, 2),
        "inclusion_proof_make_us_median": round(_median_us(make_inc), 1),
        "inclusion_proof_verify_us_median": round(_median_us(check_inc), 1),
        "inclusion_proof_hashes": max(lengths),
        "consistency_proof_make_us_median": round(_median_us(make_con), 1),
        "consistency_proof_verify_us_median": round(_median_us(check_con), 1),
    }
    for k, v in result.items():
        print(f"{k:40s} {v}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
