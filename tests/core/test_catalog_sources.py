"""SQL sources of a node's catalog (SQLite, and PostgreSQL on a real server this test starts):
one fixed schema across batches whatever NULLs lead a column, values that do not fit
refused by column and rows rather than truncated, and errors that never show a DSN."""

from __future__ import annotations

import datetime as dt
import glob
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from teenet.errors import InputError
from teenet.node.catalog import BATCH_ROWS, Catalog, CatalogTable


def _sqlite(tmp_path: Path, rows: list[tuple], schema: str = "id INTEGER, score REAL, label TEXT") -> Path:
    path = tmp_path / "bank.db"
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE t ({schema})")
    marks = ", ".join("?" * len(rows[0])) if rows else ""
    if rows:
        conn.executemany(f"INSERT INTO t VALUES ({marks})", rows)
    conn.commit()
    conn.close()
    return path


def _catalog(fmt: str, query: str, *, path: Path | None = None, dsn_env: str | None = None) -> Catalog:
    return Catalog({"t": CatalogTable("t", fmt, path, query, dsn_env)})


def test_a_column_null_for_a_whole_batch_keeps_one_schema(tmp_path):
    n = 2 * BATCH_ROWS + 10
    # score is NULL for the first batch and a bit more; label is NULL in every other row.
    path = _sqlite(tmp_path, [(i, None if i <= BATCH_ROWS + 2 else i / 4, None if i % 2 else "x") for i in range(n)])
    batches = list(_catalog("sqlite", "SELECT * FROM t", path=path).batches("t", ["label", "score", "id"]))
    assert len(batches) == 3
    assert all(b.schema == batches[0].schema for b in batches)
    assert batches[0].schema.types == [pa.string(), pa.float64(), pa.int64()]
    table = pa.Table.from_batches(batches)
    assert table.num_rows == n
    assert table.column("score").null_count == BATCH_ROWS + 3
    assert table.column("score")[n - 1].as_py() == (n - 1) / 4


def test_a_value_that_does_not_fit_is_refused_by_column_and_rows_never_truncated(tmp_path):
    # SQLite's NUMERIC affinity keeps 1, 2, ... as integers and 2.5 as a real.
    rows = [(i, float(i), "x") for i in range(BATCH_ROWS + 5)] + [(2.5, 1.0, "y")]
    path = _sqlite(tmp_path, rows, schema="id NUMERIC, score REAL, label TEXT")
    with pytest.raises(InputError) as info:
        list(_catalog("sqlite", "SELECT id FROM t", path=path).batches("t", None))
    message = str(info.value)
    assert "column 'id'" in message and f"rows {BATCH_ROWS + 1}..{BATCH_ROWS + 6}" in message
    assert "int64" in message and "CAST" in message
    # The CAST it suggests works.
    table = _catalog("sqlite", "SELECT CAST(id AS REAL) AS id FROM t", path=path).read("t")
    assert table.column("id").type == pa.float64() and table.column("id")[-1].as_py() == 2.5


def test_mixed_types_in_one_batch_are_refused(tmp_path):
    path = _sqlite(tmp_path, [(1, 1.0, "a"), ("two", 2.0, "b")], schema="id, score REAL, label TEXT")
    with pytest.raises(InputError) as info:
        list(_catalog("sqlite", "SELECT * FROM t", path=path).batches("t", None))
    assert "column 'id'" in str(info.value) and "different types" in str(info.value)


def test_an_empty_result_still_has_its_columns(tmp_path):
    path = _sqlite(tmp_path, [(1, 1.0, "a")])
    catalog = _catalog("sqlite", "SELECT id, label FROM t WHERE id < 0", path=path)
    assert catalog.columns("t") == ["id", "label"]
    assert catalog.read("t").num_rows == 0
    with pytest.raises(InputError) as info:
        catalog.columns("t") and list(catalog.batches("t", ["id", "ssn"]))
    assert "ssn" in str(info.value)


def test_a_csv_value_that_stops_parsing_part_way_is_an_input_error_naming_the_table(tmp_path):
    path = tmp_path / "customers.csv"
    with path.open("w") as f:  # the reader types columns from its first 8 MiB block
        f.write("customer_id,score\n")
        f.writelines(f"{i},{i / 2}\n" for i in range(700_000))
        f.write("C-0001,1.0\n")
    assert path.stat().st_size > 9 << 20
    with pytest.raises(InputError) as info:
        for _ in _catalog("csv", "", path=path).batches("t", ["customer_id"]):
            pass
    message = str(info.value)
    assert "table 't' cannot be read" in message and "C-0001" in message and str(path) in message


# ------------------------------------------------------------------ PostgreSQL, a real server

def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on a Unix socket, with password authentication."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (`pip install -e '.[dev]'` has it)")
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not on this machine")
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="teenet-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no 'postgres' user to run the server as")
        if not runuser:
            pytest.skip("running as root, and runuser is missing")
        os.chown(base, account.pw_uid, account.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    password = "s3cret-" + os.urandom(4).hex()
    (base / "pw").write_text(password + "\n")
    os.chmod(base / "pw", 0o644)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    run = dict(check=True, capture_output=True, timeout=120)
    subprocess.run(prefix + [initdb, "-D", str(data), "-U", "teenet", "--auth=scram-sha-256",
                             f"--pwfile={base / 'pw'}"], **run)
    subprocess.run(prefix + [pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                             f"-k {base} -p {port} -c listen_addresses=''", "start"], **run)
    dsn = f"host={base} port={port} dbname=postgres user=teenet password={password}"
    try:
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE TABLE loans (id bigint, amount numeric(12,2), rate real, region text, "
                         "opened date, updated timestamptz, active boolean, score integer)")
            n = BATCH_ROWS + 50
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO loans VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", [
                    (i, Decimal(i) / 4, 0.5, "north" if i % 3 else None, dt.date(2026, 1, 1) + dt.timedelta(days=i % 300),
                     dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), i % 2 == 0,
                     None if i < BATCH_ROWS + 10 else i) for i in range(n)])
        yield dsn, password
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_postgres_rows_stream_with_the_declared_types(postgres, monkeypatch):
    dsn, _ = postgres
    monkeypatch.setenv("BANK_PG_DSN", dsn)
    catalog = _catalog("postgres", "SELECT * FROM loans ORDER BY id", dsn_env="BANK_PG_DSN")
    assert catalog.columns("t") == ["id", "amount", "rate", "region", "opened", "updated", "active", "score"]
    batches = list(catalog.batches("t", ["score", "amount", "region", "opened", "updated", "active"]))
    assert len(batches) == 2 and batches[0].schema == batches[1].schema
    # score is NULL in the whole first batch, yet typed from the database; numeric -> float64.
    assert batches[0].schema.types == [pa.int64(), pa.float64(), pa.string(), pa.date32(),
                                       pa.timestamp("us", tz="UTC"), pa.bool_()]
    table = pa.Table.from_batches(batches)
    assert table.num_rows == BATCH_ROWS + 50
    assert table.column("amount")[7].as_py() == 1.75
    assert table.column("score").null_count == BATCH_ROWS + 10
    assert table.column("score")[-1].as_py() == BATCH_ROWS + 49


@pytest.mark.slow
def test_postgres_errors_name_the_table_and_never_the_dsn(postgres, monkeypatch):
    dsn, password = postgres
    monkeypatch.setenv("BANK_PG_DSN", dsn)
    with pytest.raises(InputError) as info:
        list(_catalog("postgres", "SELECT * FROM no_such_table", dsn_env="BANK_PG_DSN").batches("t", None))
    assert "table 't'" in str(info.value) and password not in str(info.value)
    monkeypatch.setenv("BANK_PG_DSN", dsn.replace(password, "wrong-" + password))
    with pytest.raises(InputError) as info:
        list(_catalog("postgres", "SELECT 1 AS one", dsn_env="BANK_PG_DSN").batches("t", None))
    assert password not in str(info.value) and "wrong-" not in str(info.value)
    monkeypatch.delenv("BANK_PG_DSN")
    with pytest.raises(InputError) as info:
        list(_catalog("postgres", "SELECT 1 AS one", dsn_env="BANK_PG_DSN").batches("t", None))
    assert "BANK_PG_DSN" in str(info.value) and "not set" in str(info.value)
