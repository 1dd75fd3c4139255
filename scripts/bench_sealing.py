#!/usr/bin/env python3
"""Benchmark sealed Arrow tables against raw AES-256-GCM on the same bytes, same chunk size.

Builds a table of about --size-mib MiB (int64, float64, int32 and string columns), then in
one run measures: raw AESGCM encrypt and decrypt over the table's Arrow buffers in
chunk-size slices, sealing (SealedTableWriter, messages discarded as a transport would
send them), and opening (SealedTableReader.open, batches discarded as a consumer would
use them), and both again with the table's lineage fingerprint computed on the way
(teenet.lineage.Fingerprinter as the `on_chunk` hook: what a data node does when it ships a
table and the compute enclave when it opens one). Reports MiB/s, the seal/raw and open/raw
ratios, the peak RSS of each phase above its starting RSS (a bounded-memory check), and the
machine.

    python scripts/bench_sealing.py --size-mib 1024 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from teenet.lineage import Fingerprinter
from teenet.sealing import (DEFAULT_CHUNK_SIZE, SealedTableReader, SealedTableWriter,
                            StreamBinding, TableKey)

MIB = 1 << 20
ROWS_PER_BATCH = 1 << 17  # ~3.5 MiB per source batch with the columns below


@dataclass(frozen=True)
class Results:
    size_mib: float
    rows: int
    chunk_size: int
    repeat: int
    sealed_messages: int
    sealed_mib: float
    raw_encrypt_mib_s: float
    raw_decrypt_mib_s: float
    seal_mib_s: float
    open_mib_s: float
    seal_over_raw: float
    open_over_raw: float
    seal_fingerprint_mib_s: float
    open_fingerprint_mib_s: float
    seal_fingerprint_over_raw: float
    open_fingerprint_over_raw: float
    seal_over_raw_paired_median: float
    open_over_raw_paired_median: float
    seal_fingerprint_over_raw_paired_median: float
    open_fingerprint_over_raw_paired_median: float
    seal_median_mib_s: float
    open_median_mib_s: float
    raw_encrypt_median_mib_s: float
    raw_decrypt_median_mib_s: float
    peak_rss_mib: float
    seal_peak_rss_above_start_mib: float | None
    open_peak_rss_above_start_mib: float | None
    cores: int
    memory_gib: float
    cpu: str
    python: str
    pyarrow: str


def build_table(size_mib: float, seed: int = 7) -> pa.Table:
    """Random numeric and string columns, about size_mib MiB of Arrow buffers."""
    rng = np.random.default_rng(seed)
    batches, total = [], 0
    target = int(size_mib * MIB)
    while total < target:
        n = ROWS_PER_BATCH
        lengths = rng.integers(4, 24, size=n, dtype=np.int32)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        chars = rng.integers(97, 123, size=int(offsets[-1]), dtype=np.uint8)
        names = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars))
        batch = pa.record_batch({
            "id": pa.array(np.arange(total, total + n, dtype=np.int64)),
            "amount": pa.array(rng.standard_normal(n)),
            "branch": pa.array(rng.integers(0, 1000, size=n, dtype=np.int32)),
            "name": names,
        })
        batches.append(batch)
        total += batch.nbytes
    return pa.Table.from_batches(batches)


def _rss_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM so the next reading is this phase's peak (Linux clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class _Phase:
    """Times a phase and records its peak RSS above the RSS it started with."""

    def __enter__(self) -> "_Phase":
        self.can_reset = _reset_peak_rss()
        self.start_rss = _rss_mib("VmRSS")
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        peak = _rss_mib("VmHWM")
        self.peak_above_start = (peak - self.start_rss) if self.can_reset and peak and self.start_rss else None


def _buffer_slices(table: pa.Table, chunk_size: int) -> list[memoryview]:
    """The table's Arrow buffers cut into chunk-size slices: the bytes sealing encrypts."""
    views = []
    for batch in table.to_batches():
        for column in batch.columns:
            for buf in column.buffers():
                if buf is None:
                    continue
                view = memoryview(buf).cast("B")
                views.extend(view[i:i + chunk_size] for i in range(0, view.nbytes, chunk_size))
    return views


def _best(seconds: list[float]) -> float:
    return min(seconds)


def run(size_mib: float, chunk_size: int, repeat: int = 3) -> Results:
    """Each phase runs `repeat` times; the best time counts (the VM's noise is one-sided).

    The phases are interleaved round by round (raw encrypt, seal, seal with fingerprint,
    raw decrypt, open, open with fingerprint), so a noisy neighbour hits a round's raw
    baseline and its sealing alike; the `*_paired_median` ratios are the medians of each
    round's own ratio."""
    table = build_table(size_mib)
    data_mib = table.nbytes / MIB
    key = TableKey.generate()
    binding = StreamBinding(bytes(range(32)), "bench-bank", "transactions")

    # Raw AES-256-GCM, same chunk size, same 41-byte AAD length as a sealed chunk.
    aead = AESGCM(os.urandom(32))
    slices = _buffer_slices(table, chunk_size)
    nonce, aad = os.urandom(12), os.urandom(41)
    # Decryption reads ciphertext held in memory, as the opening phase does.
    sealed_raw = [aead.encrypt(nonce, piece, aad) for piece in slices]
    writer = SealedTableWriter(key, binding, table.schema, chunk_size)
    messages = [writer.header(), *writer.seal_batches(table.to_batches())]
    count, sealed_bytes = len(messages), sum(len(m) for m in messages)

    encrypt_times, decrypt_times = [], []
    seal_times, seal_peaks, seal_fp_times, fp_roots = [], [], [], set()
    open_times, open_peaks, open_fp_times = [], [], []
    for _ in range(repeat):
        # Ciphertext is dropped as it is made, as the sealing phase drops its messages.
        start = time.perf_counter()
        for piece in slices:
            aead.encrypt(nonce, piece, aad)
        encrypt_times.append(time.perf_counter() - start)
        # Sealing, messages dropped as a gRPC sender would; then again with the fingerprint.
        for fingerprint in (None, Fingerprinter()):
            writer = SealedTableWriter(key, binding, table.schema, chunk_size,
                                       on_chunk=fingerprint.add_chunk if fingerprint else None)
            with _Phase() as phase:
                for message in writer.seal_batches(table.to_batches()):
                    pass
                if fingerprint is not None:
                    fp_roots.add(fingerprint.root())
            (seal_fp_times if fingerprint else seal_times).append(phase.seconds)
            seal_peaks.append(phase.peak_above_start)
        start = time.perf_counter()
        for ct in sealed_raw:
            aead.decrypt(nonce, ct, aad)
        decrypt_times.append(time.perf_counter() - start)
        # Opening the sealing kept in memory, batches dropped as a consumer would.
        for fingerprint in (None, Fingerprinter()):
            reader = SealedTableReader(key, binding, on_chunk=fingerprint.add_chunk if fingerprint else None)
            with _Phase() as phase:
                rows = 0
                for batch in reader.open(messages):
                    rows += batch.num_rows
                if fingerprint is not None:
                    fp_roots.add(fingerprint.root())
            (open_fp_times if fingerprint else open_times).append(phase.seconds)
            open_peaks.append(phase.peak_above_start)
            if rows != table.num_rows:
                raise SystemExit(f"bench: opened {rows} rows, sealed {table.num_rows}")
    del sealed_raw, slices
    if len(fp_roots) != 1:
        raise SystemExit("bench: the sealing and opening fingerprints differ")

    def paired(times: list[float], raw: list[float]) -> float:
        return round(statistics.median(r / t for t, r in zip(times, raw)), 3)

    raw_encrypt = data_mib / _best(encrypt_times)
    raw_decrypt = data_mib / _best(decrypt_times)
    seal = data_mib / _best(seal_times)
    opened = data_mib / _best(open_times)
    seal_fp = data_mib / _best(seal_fp_times)
    opened_fp = data_mib / _best(open_fp_times)
    mem_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return Results(
        size_mib=round(data_mib, 1), rows=table.num_rows, chunk_size=chunk_size, repeat=repeat,
        sealed_messages=count, sealed_mib=round(sealed_bytes / MIB, 1),
        raw_encrypt_mib_s=round(raw_encrypt), raw_decrypt_mib_s=round(raw_decrypt),
        seal_mib_s=round(seal), open_mib_s=round(opened),
        seal_over_raw=round(seal / raw_encrypt, 3), open_over_raw=round(opened / raw_decrypt, 3),
        seal_fingerprint_mib_s=round(seal_fp), open_fingerprint_mib_s=round(opened_fp),
        seal_fingerprint_over_raw=round(seal_fp / raw_encrypt, 3),
        open_fingerprint_over_raw=round(opened_fp / raw_decrypt, 3),
        seal_over_raw_paired_median=paired(seal_times, encrypt_times),
        open_over_raw_paired_median=paired(open_times, decrypt_times),
        seal_fingerprint_over_raw_paired_median=paired(seal_fp_times, encrypt_times),
        open_fingerprint_over_raw_paired_median=paired(open_fp_times, decrypt_times),
        seal_median_mib_s=round(data_mib / statistics.median(seal_times)),
        open_median_mib_s=round(data_mib / statistics.median(open_times)),
        raw_encrypt_median_mib_s=round(data_mib / statistics.median(encrypt_times)),
        raw_decrypt_median_mib_s=round(data_mib / statistics.median(decrypt_times)),
        peak_rss_mib=round(peak, 1),
        seal_peak_rss_above_start_mib=_max_or_none(seal_peaks),
        open_peak_rss_above_start_mib=_max_or_none(open_peaks),
        cores=os.cpu_count() or 0, memory_gib=round(mem_kib / MIB, 1), cpu=_cpu_name(),
        python=platform.python_version(), pyarrow=pa.__version__)


def _max_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(max(known), 1) if known else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=float, default=1024, help="table size in MiB (default 1024)")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="bytes per chunk")
    parser.add_argument("--repeat", type=int, default=3, help="runs per phase; the best counts")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    args = parser.parse_args(argv)
    if args.size_mib <= 0:
        parser.error("--size-mib must be positive")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    results = run(args.size_mib, args.chunk_size, args.repeat)
    for name, value in asdict(results).items():
        print(f"{name:32} {value}")
    for ratio in ("seal_over_raw", "open_over_raw"):
        if getattr(results, ratio) < 0.8:
            print(f"note: {ratio} {getattr(results, ratio)} is below the 0.8 target", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(asdict(results), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
