"""scripts/bench.py runs end to end at a tiny size through a real network, so it never rots.

Also checks the two performance fixes it led to: the data node's Parquet reader streams in
bounded memory and keeps the job's column order; the PSI's sorted int64 path agrees with
the hash path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "scripts" / "bench.py"


@pytest.mark.slow
def test_bench_runs_every_case_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(BENCH), "--sizes", "tiny", "--out", str(out),
                          "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["machine"]["cores"] >= 1 and results["machine"]["memory_gib"] > 0
    cases = {c["case"]: c for c in results["cases"]}
    assert set(cases) == {"sealing", "psi", "train", "control", "memory"}

    psi = cases["psi"]
    assert psi["intersection_size"] == psi["overlap"] == 1_000     # 2k x 2k, 50% overlap, verified result
    assert 0 < psi["best_s"] < 60
    assert psi["hops_of_best"]["approved"] <= psi["hops_of_best"]["results_posted"] <= psi["best_s"]
    for process in ("coordinator", "compute-1", "bank", "telco", "insurer"):
        assert psi["peak_memory_mib"][process]["peak_mib"] > 10, process
    shell = psi["shell"]                                 # the same job as one `teenet job submit --wait --out`
    assert shell["processes"] == 1 and 0 < shell["hops_of_best"]["terminal"] <= shell["best_s"]
    assert shell["best_s"] > psi["best_s"] * 0.5
    baseline = psi["baseline"]
    if "missing" not in baseline:                                     # openmined.psi installed
        assert baseline["intersection_size"] == 1_000 and baseline["seconds"] > 0

    train = cases["train"]
    assert train["same_model"], train["comparison"]                 # released ONNX == plaintext pipeline
    assert train["comparison"]["rows_teenet"] == train["comparison"]["rows_plaintext"] == 2_000
    assert train["seconds"] > 0 and train["baseline"]["seconds"] > 0 and train["shell"]["seconds"] > 0
    # Two plaintext baselines in the same run: the user's plain script, the enclave's exact pipeline.
    assert "user writes" in train["baseline"]["name"]
    assert train["baseline_exact_pipeline"]["seconds"] > 0 and train["baseline_exact_pipeline"]["ratio"] > 0
    assert train["ratio_to_baseline"] == train["shell"]["seconds"] / train["baseline"]["seconds"]

    assert cases["control"]["median_s"] > 0 and len(cases["control"]["seconds"]) == 1
    assert set(cases["memory"]["peaks"]) == {"2000", "20000"}
    assert cases["sealing"]["seal_mib_s"] > 0 and cases["sealing"]["open_over_raw"] > 0

    for name in ("psi.png", "train.png", "sealing.png", "hops.png"):
        png = (out / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5_000, name
    table = (out / "table.md").read_text()
    assert "| case | teenet | baseline in the same run | ratio | target | verdict |" in table
    assert table.count("\n| ") >= 9 and "from the shell" in table
    assert not (tmp_path / "work" / "net" / "run" / "processes.json").exists()  # the network was stopped


def test_bench_refuses_an_unknown_case(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--cases", "psi,warp", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "unknown case(s) warp" in run.stderr
