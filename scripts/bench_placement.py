"""Rows per second of the cluster row placement (teenet/cluster/partition.py).

    .venv/bin/python scripts/bench_placement.py [--rows 5000000] [--runs 5] [--parts 4]

Places an int64 key column, a string key column ("user-<i>", 10-16 bytes) and a composite
(int64, string) key, each `--runs` times, and prints the median rows/s of each with a
plain process timer. Side by side, as the baseline, it times the v1 definition (one
HMAC-SHA256 per row in Python after to_pylist) on a smaller slice and prints the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import statistics
import struct
import sys
import time

import numpy as np
import pyarrow as pa

from teenet.cluster.partition import partition_rows
from teenet.models.tables import KeyNormalisation


def _v1(table: pa.Table, keys, key: bytes, parts: int) -> np.ndarray:
    """The retired v1 placement, as it ran: the baseline."""
    cols = [table.column(k).to_pylist() for k in keys]
    out = np.zeros(table.num_rows, dtype=np.int64)
    mac = hmac.new(key, b"teenet/partition/v1\x00", "sha256")
    for i, row in enumerate(zip(*cols)):
        h = mac.copy()
        for v in row:
            if isinstance(v, int):
                h.update(b"i" + v.to_bytes(8, "big", signed=True))
            else:
                data = v.encode()
                h.update(b"s" + struct.pack(">I", len(data)) + data)
        out[i] = int.from_bytes(h.digest()[:8], "big") % parts
    return out


def _median_rate(fn, rows: int, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return rows / statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--baseline-rows", type=int, default=200_000)
    args = ap.parse_args(argv)
    if args.rows < 1 or args.runs < 1 or args.parts < 2 or args.baseline_rows < 1:
        print("error: --rows, --runs, --baseline-rows must be >= 1 and --parts >= 2", file=sys.stderr)
        return 2
    key = bytes(range(32))
    norm = KeyNormalisation()
    ids = np.random.default_rng(1).permutation(args.rows).astype(np.int64)
    strings = pa.compute.binary_join_element_wise("user-", pa.array(ids).cast(pa.string()), "")
    cases = {
        "int64": pa.table({"k": ids}),
        "string": pa.table({"k": strings}),
        "int64+string": pa.table({"a": ids, "b": strings}),
    }
    print(f"placement, {args.rows:,} rows, N={args.parts}, median of {args.runs} runs")
    for name, table in cases.items():
        keys = table.column_names
        rate = _median_rate(lambda: partition_rows(table, keys, norm, key, args.parts), args.rows, args.runs)
        small = table.slice(0, args.baseline_rows)
        base = _median_rate(lambda: _v1(small, keys, key, args.parts), small.num_rows, max(1, args.runs // 2))
        print(f"  {name:13s} v2 {rate / 1e6:7.2f} M rows/s   v1 baseline {base / 1e6:6.3f} M rows/s   "
              f"ratio {rate / base:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
