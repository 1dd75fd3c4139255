"""Differential-privacy noise for aggregates, through diffprivlib's mechanisms (never hand-rolled).

Each group is a disjoint set of rows, so every group may spend the whole budget
(parallel composition); within a group the budget is split evenly over the noisy
queries (sequential composition): the group's row count, and per metric column its
non-null count, its clamped sum (for sum, mean, std) and its clamped sum of squares (for
std). Values are clamped to the stated bounds first, which is what bounds a row's
contribution (the sensitivity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from teenet.errors import InputError

from teenet.models.params import ParamReader

DP_STATS = frozenset({"count", "sum", "mean", "std"})


@dataclass(frozen=True)
class DpParams:
    """epsilon > 0; mechanism laplace | gaussian; delta in (0, 1) for gaussian (0 for laplace);
    bounds {column: [low, high]} for every metric column; seed only for reproducible tests."""

    epsilon: float
    mechanism: str
    delta: float
    bounds: Mapping[str, tuple[float, float]]
    seed: int | None

    @classmethod
    def parse(cls, reader: ParamReader, metric_columns: tuple[str, ...]) -> "DpParams":
        epsilon = reader.number("epsilon", above=0.0)
        mechanism = reader.text("mechanism", choices=("laplace", "gaussian"), default="laplace")
        if mechanism == "gaussian":
            delta = reader.number("delta", above=0.0, below=1.0)
        else:
            delta = reader.number("delta", default=0.0, at_least=0.0, below=1.0)
            if delta != 0.0:
                raise InputError("the laplace mechanism takes no delta (expected 0)", field=reader.field("delta"))
        bounds_reader = ParamReader(reader.raw("bounds"), reader.field("bounds"))
        bounds: dict[str, tuple[float, float]] = {}
        for column in metric_columns:
            raw = bounds_reader.raw(column)
            where = bounds_reader.field(column)
            if not isinstance(raw, (list, tuple)) or len(raw) != 2 or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) for v in raw):
                raise InputError("expected [low, high], two finite numbers", field=where)
            if not raw[0] < raw[1]:
                raise InputError(f"expected low < high, found [{raw[0]}, {raw[1]}]", field=where)
            bounds[column] = (float(raw[0]), float(raw[1]))
        bounds_reader.done()
        seed = reader.integer("seed", default=None, at_least=0)
        reader.done()
        return cls(epsilon, mechanism, delta, bounds, seed)


class NoiseBudget:
    """Spends one group's budget over `queries` noisy answers via diffprivlib."""

    def __init__(self, params: DpParams, queries: int, random_state: np.random.RandomState | None) -> None:
        # Imported here: diffprivlib pulls in scikit-learn, which only DP jobs need.
        from diffprivlib.mechanisms import GaussianAnalytic, Laplace

        self._params = params
        self._epsilon = params.epsilon / queries
        self._delta = params.delta / queries
        self._laplace = Laplace
        self._gaussian = GaussianAnalytic
        self._rng = random_state

    def noisy(self, value: float, sensitivity: float) -> float:
        if sensitivity == 0.0:
            return float(value)
        # A fresh mechanism per answer; the job's one random state is shared by all of
        # them, so every answer (in every group) gets its own draw.
        if self._params.mechanism == "gaussian":
            mech = self._gaussian(epsilon=self._epsilon, delta=self._delta, sensitivity=sensitivity,
                                  random_state=self._rng)
        else:
            mech = self._laplace(epsilon=self._epsilon, delta=0.0, sensitivity=sensitivity,
                                 random_state=self._rng)
        return float(mech.randomise(float(value)))


def job_random_state(params: DpParams) -> np.random.RandomState | None:
    """One random state for a whole job: seeded for tests, else diffprivlib's default.

    Never one per group: equal draws in two groups would cancel in their difference.
    """
    return np.random.RandomState(params.seed) if params.seed is not None else None


def clamp(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return np.clip(values, bounds[0], bounds[1])


def sum_sensitivity(bounds: tuple[float, float]) -> float:
    return max(abs(bounds[0]), abs(bounds[1]))


def square_sensitivity(bounds: tuple[float, float]) -> float:
    return max(bounds[0] ** 2, bounds[1] ** 2)
