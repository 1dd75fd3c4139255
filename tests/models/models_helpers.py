"""Helpers for the models tests: datasets split across parties, and release rules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from teenet.models import PartyInput, ReleaseRules
from teenet.models.rules import AnalysisRule


@dataclass(frozen=True)
class VerticalSplit:
    """A dataset whose columns are split across parties, rows shuffled, ids partly overlapping."""

    inputs: list[PartyInput]
    pooled: pd.DataFrame      # the rows every party has, sorted by id: the plaintext reference
    features: list[str]
    label: str


def split_vertically(frame: pd.DataFrame, label: str, parties: list[str], seed: int,
                     keep: float = 0.9) -> VerticalSplit:
    """Columns dealt to parties in order; each party keeps a random `keep` share of ids."""
    rng = np.random.default_rng(seed)
    frame = frame.reset_index(drop=True).copy()
    frame.insert(0, "id", np.arange(len(frame)) * 7 + 3)
    features = [c for c in frame.columns if c not in ("id", label)]
    chunks = [[str(c) for c in chunk] for chunk in np.array_split(np.array(features), len(parties))]
    inputs, held = [], []
    for i, (party, columns) in enumerate(zip(parties, chunks)):
        columns = list(columns) + ([label] if i == 0 else [])
        rows = rng.permutation(len(frame))[: int(len(frame) * keep)]
        held.append(set(frame["id"].to_numpy()[rows]))
        table = pa.Table.from_pandas(frame.iloc[rows][["id"] + columns], preserve_index=False)
        inputs.append(PartyInput(party, f"{party}_table", ("id",), tuple(columns), table))
    common = set.intersection(*held)
    pooled = frame[frame["id"].isin(common)].sort_values("id").reset_index(drop=True)
    ordered = [c for chunk in chunks for c in chunk]
    return VerticalSplit(inputs, pooled, ordered, label)


def split_horizontally(frame: pd.DataFrame, parties: list[str], seed: int) -> tuple[list[PartyInput], pd.DataFrame]:
    """Rows dealt to parties after a shuffle; the pooled reference is their concatenation in party order."""
    rng = np.random.default_rng(seed)
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    frame.insert(0, "id", np.arange(len(frame)))
    parts = np.array_split(np.arange(len(frame)), len(parties))
    columns = tuple(c for c in frame.columns if c != "id")
    inputs = [PartyInput(p, f"{p}_table", ("id",), columns,
                         pa.Table.from_pandas(frame.iloc[idx], preserve_index=False))
              for p, idx in zip(parties, parts)]
    pooled = pd.concat([frame.iloc[idx] for idx in parts]).reset_index(drop=True)
    return inputs, pooled


def rules_for(kinds: dict[str, set[str]], id_owners: set[str], k: int = 5,
              analysis: tuple[AnalysisRule, ...] = ()) -> ReleaseRules:
    return ReleaseRules(min_group_size=k, approved_recipients={kk: frozenset(v) for kk, v in kinds.items()},
                        id_owners=frozenset(id_owners), analysis=analysis)


def rule(party: str, table: str, **fields) -> AnalysisRule:
    """An owner's analysis rule as its node would read it from YAML (`AnalysisRule.from_config`)."""
    return AnalysisRule.from_config(table, fields, f"policy.analysis.{table}", party=party)
