"""The performance fixes found by scripts/bench.py keep their behaviour.

- node/catalog.py reads Parquet one row group at a time through a bounded buffer: the
  batches hold the job's columns in the job's order, and memory does not grow with rows.
- models/psi.py intersects single int64 keys by sorting; it must agree with the Arrow hash
  path used for every other key (the same ids as strings).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from teenet.models import ReleaseRequest, ReleaseRules, run_function
from teenet.models.spec import PartyInput
from teenet.node.catalog import Catalog, CatalogTable


def _catalog(path: Path) -> Catalog:
    return Catalog({"t": CatalogTable("t", "parquet", path, None, None)})


def test_parquet_batches_keep_the_requested_columns_and_order(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    n = 200_000
    pq.write_table(pa.table({"a": np.arange(n), "b": np.arange(n) * 2.0, "c": [f"x{i % 7}" for i in range(n)]}),
                   path, row_group_size=50_000)
    batches = list(_catalog(path).batches("t", ["c", "a"]))
    assert all(b.schema.names == ["c", "a"] for b in batches)
    table = pa.Table.from_batches(batches)
    assert table.num_rows == n
    assert table.column("a").to_pylist() == list(range(n))
    assert table.column("c")[12].as_py() == "x5"
    assert pa.Table.from_batches(list(_catalog(path).batches("t", None))).column_names == ["a", "b", "c"]
    with pytest.raises(Exception, match="no column"):
        list(_catalog(path).batches("t", ["a", "zz"]))


_MEASURE = r"""
import sys
from pathlib import Path
from teenet.node.catalog import Catalog, CatalogTable
cat = Catalog({"t": CatalogTable("t", "parquet", Path(sys.argv[1]), None, None)})
def kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
Path("/proc/self/clear_refs").write_text("5")
start = kib("VmRSS")
rows = sum(b.num_rows for b in cat.batches("t", ["id"]))
print(rows, (kib("VmHWM") - start) / 1024)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_streaming_a_parquet_table_takes_memory_independent_of_its_rows(tmp_path: Path) -> None:
    peaks = {}
    for rows in (500_000, 5_000_000):
        path = tmp_path / f"ids-{rows}.parquet"
        pq.write_table(pa.table({"id": np.arange(rows, dtype=np.int64)}), path, row_group_size=1 << 20)
        run = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        counted, peak = run.stdout.split()
        assert int(counted) == rows
        peaks[rows] = float(peak)
    # 5M int64 ids are 38 MiB; a reader that held the table (or read it all ahead) would show it.
    assert peaks[5_000_000] <= peaks[500_000] + 16, peaks


def _psi_size(tables: list[pa.Table], kind: str = "size") -> tuple[int, pa.Table | None]:
    inputs = [PartyInput(p, "t", ("id",), (), t) for p, t in zip("abc", tables)]
    releases = run_function("psi", inputs, {}, [ReleaseRequest(kind, ("a",))],
                            ReleaseRules(min_group_size=1, approved_recipients={kind: frozenset({"a"})},
                                         id_owners=frozenset({"a"})))
    if kind == "ids":
        from teenet.models.payloads import read_arrow

        ids = read_arrow(releases[0].payload)
        return ids.num_rows, ids
    return json.loads(releases[0].payload)["intersection_size"], None


def test_sorted_int64_intersection_agrees_with_the_hash_path() -> None:
    rng = np.random.default_rng(3)
    sets = [rng.integers(-(1 << 62), 1 << 62, 30_000) for _ in range(3)]
    shared = rng.integers(-(1 << 62), 1 << 62, 5_000)
    ints = [pa.table({"id": np.concatenate([s, shared, shared[:100]])}) for s in sets]  # duplicates too
    strings = [pa.table({"id": t.column("id").cast(pa.string())}) for t in ints]        # the hash path
    size_int, _ = _psi_size(ints)
    size_str, _ = _psi_size(strings)
    assert size_int == size_str == len(set(shared.tolist()))
    count, ids = _psi_size(ints, "ids")
    assert count == size_int
    values = ids.column("id").to_numpy()
    assert ids.column_names == ["id"] and ids.column("id").type == pa.int64()
    assert np.all(values[1:] > values[:-1])                          # ascending, each once
    assert set(values.tolist()) == set(shared.tolist())


def test_bench_cluster_refuses_an_unknown_case_before_it_starts_anything(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"
    done = subprocess.run([sys.executable, str(script), "--cluster", "--skip", "psi,forest", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--skip: unknown case(s) forest; expected psi, boosting" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written
