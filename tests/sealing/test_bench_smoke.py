"""scripts/bench_sealing.py still runs end to end (at 4 MiB) and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench_sealing.py"


def test_bench_runs_at_4_mib_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(BENCH), "--size-mib", "4", "--repeat", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())
    assert 3.5 <= results["size_mib"] <= 8
    assert results["sealed_messages"] >= 5
    for name in ("raw_encrypt_mib_s", "raw_decrypt_mib_s", "seal_mib_s", "open_mib_s",
                 "seal_over_raw", "open_over_raw", "peak_rss_mib"):
        assert results[name] > 0, name
    assert results["cores"] >= 1 and results["memory_gib"] > 0
    assert "seal_over_raw" in run.stdout


def test_bench_refuses_a_bad_size() -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--size-mib", "0"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--size-mib must be positive" in run.stderr
