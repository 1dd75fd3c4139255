#!/usr/bin/env python3
"""Where a `train` job's time goes, step by step, in one process, against the plain script.

Generates the benchmark's vertically split training set (scripts/bench_data.py), then
times, with plain process timers, each step the network performs, in the network's order
and with the network's own code:

  data nodes   read the Parquet table (node/catalog.py), seal it with its lineage
               fingerprint (teenet.sealing + teenet.lineage), per party;
  compute      open each sealed table (decrypt, fingerprint), then the steps of
               teenet.models.learning.train_and_release: join, features, split, fit
               (imputer, scaler, model), metrics, model summary, ONNX export;
  plain script read, join and fit as the benchmark's user script does
               (scripts/bench_baselines.user_script_training), each step timed.

It does not cover the control plane or the CLI (see scripts/bench.py's hops and
scripts/bench_startup.py); the parts it times are the ones whose cost grows with the
data. --profile writes a cProfile of the compute steps. Prints JSON.

    .venv/bin/python scripts/bench_train_parts.py --rows 1000000 --model logistic_regression
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_data  # noqa: E402


class Timer:
    def __init__(self) -> None:
        self.parts: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Part:
            def __enter__(self) -> None:
                self.t0 = time.perf_counter()

            def __exit__(self, *exc: object) -> None:
                timer.parts[name] = round(timer.parts.get(name, 0.0) + time.perf_counter() - self.t0, 4)

        return _Part()


def data_nodes(ts: bench_data.TrainingSet, timer: Timer) -> dict[str, tuple[list[bytes], Any]]:
    """Each party's table read and sealed with its fingerprint, as a data node ships it."""
    from teenet.lineage import Fingerprinter
    from teenet.node.catalog import Catalog, CatalogTable
    from teenet.sealing import StreamBinding, TableKey, seal_table

    sealed = {}
    catalog = Catalog({p: CatalogTable(p, "parquet", path, None, None) for p, path in ts.paths.items()})
    for party in ts.paths:
        columns = [ts.key, *ts.columns[party]]
        with timer(f"data node: read {party}"):
            rows = sum(b.num_rows for b in catalog.batches(party, columns))
        key = TableKey.generate()
        binding = StreamBinding(hashlib.sha256(b"bench").digest(), party, "train")
        fingerprint = Fingerprinter()
        with timer(f"data node: read + seal + fingerprint {party}"):
            messages = list(seal_table(catalog.batches(party, columns), key, binding,
                                       on_chunk=fingerprint.add_chunk))
            fingerprint.root()
        assert rows > 0
        sealed[party] = (messages, key, binding, columns)
    return sealed


def compute(ts: bench_data.TrainingSet, sealed: dict, model: str, timer: Timer, profile: Path | None) -> dict:
    from teenet.lineage import Fingerprinter
    from teenet.models.spec import InputSpec, PartyInput, ReleaseRules
    from teenet.models.train import parse_params
    from teenet.sealing import SealedTableReader

    from teenet.models import learning  # scikit-learn and skl2onnx: loaded when a compute node starts
    from teenet.models.imputer import as_simple_imputers
    from teenet.models.onnx_models import export_pipeline
    import skl2onnx  # noqa: F401  (imported before the clock, as a warm compute node has it)

    inputs = []
    for party, (messages, key, binding, columns) in sealed.items():
        with timer("compute: open (decrypt + fingerprint)"):
            fingerprint = Fingerprinter()
            table = SealedTableReader(key, binding, on_chunk=fingerprint.add_chunk).read_table(messages)
            fingerprint.root()
        inputs.append(PartyInput(party, "train", (ts.key,), tuple(columns[1:]), table))
    specs = [InputSpec(i.party, i.table, i.keys, i.columns) for i in inputs]
    params = parse_params({"layout": "vertical", "model": model, "label": {"party": "bank", "column": ts.label},
                           "test_fraction": 0.2, "seed": 7}, specs, frozenset({"model", "metrics"}))
    rules = ReleaseRules(min_group_size=10, approved_recipients={"model": {"analyst"}, "metrics": {"analyst"}},
                         id_owners=frozenset())
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    with timer("compute: join + features"):
        rows = learning.pooled_rows(inputs, params)
    with timer("compute: split"):
        x_train, x_test, y_train, y_test = learning.split(rows, params, rules.k)
    pipeline = learning.build_pipeline(params.model, "classification", rows.layout, {}, params.seed)
    with timer("compute: fit (imputer, scaler, model)"):
        pipeline.fit(x_train, y_train)
    as_simple_imputers(pipeline)
    with timer("compute: metrics"):
        scores = learning.classifier_metrics(pipeline, x_test, y_test, k=rules.k)
    with timer("compute: model summary"):
        learning.model_summary(pipeline, params, "classification", rows.layout, x_test, y_test)
    with timer("compute: ONNX export"):
        metadata = {"task": "classification", "model": model, "features": list(rows.layout.features)}
        onnx = export_pipeline(pipeline, rows.layout, metadata)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    return {"auc": scores.get("auc"), "onnx_bytes": len(onnx)}


def plain_script(ts: bench_data.TrainingSet, model: str, timer: Timer) -> None:
    """scripts/bench_baselines.user_script_training, step by step."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    features = [c for p in ts.paths for c in ts.columns[p] if c != ts.label]
    with timer("plain: read"):
        frames = [pd.read_parquet(path) for path in ts.paths.values()]
    with timer("plain: join"):
        joined = frames[0]
        for frame in frames[1:]:
            joined = joined.merge(frame, on=ts.key, how="inner")
        x, y = joined[features], joined[ts.label]
    with timer("plain: fit"):
        if model == "logistic_regression":
            make_pipeline(SimpleImputer(), LogisticRegression()).fit(x, y)
        else:
            HistGradientBoostingClassifier().fit(x, y)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--model", default="logistic_regression",
                        choices=("logistic_regression", "hist_gradient_boosting"))
    parser.add_argument("--data", type=Path, help="folder for the generated tables (default: a temporary one)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the compute steps here")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.rows < 100:
        parser.error("--rows must be at least 100")
    with tempfile.TemporaryDirectory(prefix="teenet-train-parts-") as tmp:
        folder = args.data or Path(tmp)
        ts = bench_data.write_training_set(folder, args.rows)
        timer = Timer()
        plain_script(ts, args.model, timer)
        sealed = data_nodes(ts, timer)
        out = compute(ts, sealed, args.model, timer, args.profile)
    parts = timer.parts
    report = {"rows": args.rows, "model": args.model, "parts_s": parts,
              "plain_total_s": round(sum(v for k, v in parts.items() if k.startswith("plain:")), 3),
              "compute_total_s": round(sum(v for k, v in parts.items() if k.startswith("compute:")), 3),
              "data_node_slowest_s": max(v for k, v in parts.items() if k.startswith("data node: read + seal")),
              "load_average": os.getloadavg(), **out}
    # flat copies, for scripts/bench_ab.py --fields (e.g. compute_fit_imputer_scaler_model_s)
    for name, seconds in parts.items():
        report["_".join(re.findall(r"[a-z0-9]+", name.lower())) + "_s"] = seconds
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
