"""How fast the analyst's CLI starts: `teenet job submit` from process start to the coordinator.

Starts a sandbox network on loopback (teenet.cli.sandbox), validates one small PSI spec
(outside the clock, as `teenet job validate` does once), then runs `teenet job submit SPEC`
as a new process --runs times, one after another. For each run it reports

  reach_s  the coordinator's own created_at of the job minus the wall time just before the
           process was started: process start -> the submission is durable at the coordinator;
  exit_s   the whole process, start to exit (a plain process timer).

and, the same way, `teenet --help` (exit only). With --against OTHER_TEENET (another
checkout's installed `teenet`, e.g. the main branch's .venv/bin/teenet) each run times both
commands one after the other against the same network, so the two share the machine's
load, and the report gives each one's medians and the ratio. The processes run as in an ordinary shell,
with Python's bytecode cache on (PYTHONDONTWRITEBYTECODE is removed from their environment,
the cache goes under the work folder via PYTHONPYCACHEPREFIX so no source tree is written,
and one untimed run of each command writes the cache first); --no-bytecode-cache measures
them compiling every module from source instead (what an environment with
PYTHONDONTWRITEBYTECODE=1 and no cache gets). Each job is waited for (in this process)
before the next run, so no run shares the machine with the previous job's work. Prints
the medians and each run as JSON; exits 1 if a submission fails.

    .venv/bin/python scripts/bench_startup.py --runs 15
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_network  # noqa: E402

TARGET_REACH_S = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="submissions to time (default 15, at least 10 advised)")
    parser.add_argument("--against", type=Path, help="another installed teenet to time, paired run by run")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run the commands with PYTHONDONTWRITEBYTECODE=1 and no cache")
    parser.add_argument("--work", type=Path, help="folder for the sandbox (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    work = args.work or Path(tempfile.mkdtemp(prefix="teenet-startup-"))
    teenet = Path(sys.executable).with_name("teenet")
    net = bench_network.BenchNetwork(work / "net", {})
    env = dict(os.environ, TEENET_CACHE_DIR=str(net.directory / "cli-cache"))
    env.pop("TEENET_CONFIG", None)
    if args.no_bytecode_cache:
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(work / "no-such-cache"))
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    config = net.directory / "analyst.yaml"
    spec = net.write_job("startup", "name: startup\nfunction: psi\ncompute: compute-1\ninputs:\n"
                         "  - {party: bank, table: customers, key: customer_id, columns: []}\n"
                         "  - {party: telco, table: usage, key: customer_id, columns: []}\n"
                         "release:\n  - {kind: size, to: [analyst]}\n")
    commands = {"this": teenet, **({"against": args.against.resolve()} if args.against else {})}
    runs: dict[str, list[dict]] = {k: [] for k in commands}
    helps: dict[str, list[float]] = {k: [] for k in commands}
    with net:
        for command in commands.values():  # each records its own pass, as a user's `job validate` does
            checked = subprocess.run([str(command), "job", "validate", str(spec), "--config", str(config)],
                                     capture_output=True, text=True, env=env)
            if checked.returncode != 0:
                print(f"bench_startup: the spec does not validate: {checked.stderr.strip()}", file=sys.stderr)
                return 1
        for label, command in commands.items():  # untimed: writes the bytecode cache (when on)
            _submit(net, command, spec, config, env)
            subprocess.run([str(command), "--help"], capture_output=True, env=env, check=True)
        for _ in range(args.runs):
            for label, command in commands.items():
                runs[label].append(_submit(net, command, spec, config, env))
        for _ in range(args.runs):
            for label, command in commands.items():
                t0 = time.perf_counter()
                subprocess.run([str(command), "--help"], capture_output=True, env=env, check=True)
                helps[label].append(round(time.perf_counter() - t0, 4))
    report = {"runs": args.runs, "load_average": os.getloadavg(), "bytecode_cache": not args.no_bytecode_cache,
              "target": f"submit reaches the coordinator < {TARGET_REACH_S} s from process start"}
    for label, command in commands.items():
        report[label] = {"teenet": str(command),
                         "submit_reach_median_s": round(statistics.median(r["reach_s"] for r in runs[label]), 4),
                         "submit_exit_median_s": round(statistics.median(r["exit_s"] for r in runs[label]), 4),
                         "help_exit_median_s": round(statistics.median(helps[label]), 4),
                         "each_submit": runs[label], "each_help": helps[label]}
    report["target_met"] = report["this"]["submit_reach_median_s"] < TARGET_REACH_S
    if args.against:
        report["ratio_this_over_against"] = {
            k: round(report["this"][k] / report["against"][k], 3)
            for k in ("submit_reach_median_s", "submit_exit_median_s", "help_exit_median_s")}
    print(json.dumps(report, indent=2))
    return 0


def _submit(net: bench_network.BenchNetwork, teenet: Path, spec: Path, config: Path, env: dict) -> dict:
    """One `teenet job submit SPEC` process, timed; waits for the job to end before returning."""
    started_wall, t0 = time.time(), time.perf_counter()
    done = subprocess.run([str(teenet), "job", "submit", str(spec), "--config", str(config), "--json"],
                          capture_output=True, text=True, env=env)
    exit_s = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"bench_startup: {teenet} job submit failed: {done.stderr.strip()}")
    job_id = json.loads(done.stdout)["job_id"]
    run = {"reach_s": round(_created_at(net, job_id) - started_wall, 4), "exit_s": round(exit_s, 4)}
    _wait_ended(net, job_id)
    return run


def _created_at(net: bench_network.BenchNetwork, job_id: str) -> float:
    db = net.directory / "state" / "coordinator" / "coordinator.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return float(conn.execute("SELECT created_at FROM jobs WHERE job_id = ?", (job_id,)).fetchone()[0])
    finally:
        conn.close()


def _wait_ended(net: bench_network.BenchNetwork, job_id: str, timeout: float = 60.0) -> None:
    from teenet.proto import teenet_pb2 as pb

    deadline = time.monotonic() + timeout
    seen = 0.0
    while time.monotonic() < deadline:
        st = net.analyst.stub.GetJob(pb.JobRef(job_id=job_id, wait_ms=2000, updated_after=seen), timeout=10)
        if st.state in bench_network.TERMINAL:
            return
        seen = st.updated_at
    raise SystemExit(f"bench_startup: job {job_id[:12]} did not end within {timeout:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
