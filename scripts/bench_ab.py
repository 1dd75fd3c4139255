#!/usr/bin/env python3
"""One benchmark script, run against two checkouts in turn, interleaved, on the same machine.

Runs `SCRIPT ARGS... --json OUT` --runs times with this checkout's Python (.venv/bin/python
next to the running interpreter) and as many times with --against's Python (another
checkout's .venv/bin/python, e.g. the main branch's), alternating A B A B ..., so a noisy
neighbour hits both sides alike. SCRIPT is this checkout's file in both cases, so both
sides are measured by the same code; each side imports its own `teenet` (its editable
install). The other side runs with PYTHONDONTWRITEBYTECODE=1 so its source tree is not
written. Then, for each numeric field named by --fields, prints both sides' medians (and
every run) and the ratio of the medians, as JSON.

    .venv/bin/python scripts/bench_ab.py --against /work/main/.venv/bin/python --runs 5 \\
        --fields seal_mib_s,seal_fingerprint_mib_s -- scripts/bench_sealing.py --size-mib 256
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, required=True, help="the other checkout's Python")
    parser.add_argument("--runs", type=int, default=5, help="runs per side (default 5)")
    parser.add_argument("--fields", required=True, help="comma-separated numeric fields of the JSON to compare")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- SCRIPT ARGS (the script writes --json OUT)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the script to run after --")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not args.against.exists():
        parser.error(f"--against: no such file: {args.against}")
    script = Path(command[0]).resolve()
    if not script.is_file():
        parser.error(f"no such script: {command[0]}")
    fields = [f for f in args.fields.split(",") if f]
    sides = {"this": Path(sys.executable), "against": args.against}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="teenet-ab-") as tmp:
        for i in range(args.runs):
            for name, python in sides.items():
                out = Path(tmp) / f"{name}-{i}.json"
                env = dict(os.environ)
                if name == "against":
                    env["PYTHONDONTWRITEBYTECODE"] = "1"
                done = subprocess.run([str(python), str(script), *command[1:], "--json", str(out)], env=env,
                                      cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if done.returncode != 0 or not out.exists():
                    print(f"bench_ab: {name} run {i + 1} failed (exit {done.returncode}): "
                          f"{done.stderr.strip()[-2000:]}", file=sys.stderr)
                    return 1
                runs[name].append(json.loads(out.read_text()))
                print(f"bench_ab: {name} run {i + 1}/{args.runs} done", file=sys.stderr, flush=True)
    report: dict = {"runs": args.runs, "this": sys.executable, "against": str(args.against),
                    "command": command, "load_average_at_end": os.getloadavg(), "fields": {}}
    for field in fields:
        values = {name: [r.get(field) for r in rs] for name, rs in runs.items()}
        if any(not isinstance(v, (int, float)) for vs in values.values() for v in vs):
            print(f"bench_ab: field {field!r} is missing or not a number in some run", file=sys.stderr)
            return 1
        medians = {name: statistics.median(vs) for name, vs in values.items()}
        report["fields"][field] = {"this_median": medians["this"], "against_median": medians["against"],
                                   "ratio_this_over_against": (medians["this"] / medians["against"]
                                                               if medians["against"] else None),
                                   "this": values["this"], "against": values["against"]}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
