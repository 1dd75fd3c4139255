"""Realistic synthetic tables for a sandbox consortium: a bank, a telco and an insurer.

Each party holds an overlapping subset of one population of customers. Whether a customer
defaults depends on features held by different parties (income at the bank, late payments
at the telco, claims at the insurer), so a joint model beats any one party's model: the
reason agencies model together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REGIONS = np.array(["north", "south", "east", "west", "centre"])


def generate(out: Path, rows: int = 20_000, seed: int = 7) -> dict[str, dict[str, Path]]:
    """Write bank/customers, telco/usage and insurer/policies as Parquet; return their paths."""
    rng = np.random.default_rng(seed)
    population = int(rows * 1.25)
    ids = rng.choice(np.arange(10_000_000, 99_999_999), size=population, replace=False)
    age = rng.integers(18, 85, population)
    income = np.round(rng.lognormal(10.4, 0.5, population), 2)
    region = REGIONS[rng.integers(0, len(REGIONS), population)]
    minutes = np.round(rng.gamma(2.0, 150.0, population), 1)
    data_gb = np.round(rng.gamma(1.5, 4.0, population), 2)
    late = rng.poisson(0.6, population)
    premium = np.round(rng.normal(900, 250, population).clip(100), 2)
    claims = rng.poisson(0.3, population)
    logit = (-1.2 - 0.9 * (np.log(income) - 10.4) / 0.5 + 0.8 * late + 0.5 * claims - 0.01 * (age - 45))
    defaulted = (rng.random(population) < 1 / (1 + np.exp(-logit))).astype(np.int8)

    def subset(fraction: float) -> np.ndarray:
        idx = rng.choice(population, size=int(population * fraction), replace=False)
        return np.sort(idx)

    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, dict[str, Path]] = {}

    def write(party: str, table: str, t: pa.Table) -> None:
        d = out / party
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{table}.parquet"
        pq.write_table(t, p)
        paths.setdefault(party, {})[table] = p

    b = subset(0.8)
    write("bank", "customers", pa.table({
        "customer_id": pa.array(ids[b].astype(np.int64)), "age": pa.array(age[b].astype(np.int32)),
        "income": pa.array(income[b]), "region": pa.array(region[b]),
        "defaulted": pa.array(defaulted[b].astype(np.int32))}))
    t = subset(0.8)
    write("telco", "usage", pa.table({
        "customer_id": pa.array(ids[t].astype(np.int64)), "minutes": pa.array(minutes[t]),
        "data_gb": pa.array(data_gb[t]), "late_payments": pa.array(late[t].astype(np.int32))}))
    i = subset(0.6)
    write("insurer", "policies", pa.table({
        "customer_id": pa.array(ids[i].astype(np.int64)), "premium": pa.array(premium[i]),
        "claims": pa.array(claims[i].astype(np.int32)), "region": pa.array(region[i])}))
    return paths
