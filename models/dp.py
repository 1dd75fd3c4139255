"""Differential privacy for aggregates: diffprivlib's mechanisms on the enclave's secure randomness.

What this module decides:
- Randomness: only diffprivlib's own. Every mechanism is built with `random_state=None`,
  for which diffprivlib draws from `secrets.SystemRandom` (the OS CSPRNG), and its Laplace
  sampler is the one built to resist floating-point attacks. No seed, random state or
  other RNG control is reachable from a job spec: `params.dp.seed` (and the like) is
  refused at validation, so replaying the draws is impossible.
- Contribution: each person (join key) contributes at most `rows_per_key` rows (the
  smaller of the spec's `max_rows_per_key` and every owner's rule; 1 when neither says);
  rows beyond it are dropped before anything is counted, and every sensitivity is scaled
  by it. Rows of inputs without keys count one person each.
- Value bounds: from the spec's `dp.bounds` or else an owner's rule (`bounds`), never from
  the data. Values are clamped to them; the sensitivity of a sum is rows_per_key x the
  largest magnitude of a bound.
- Budget within a job: every noisy answer of one group takes an equal share of epsilon
  (sequential composition): the group's row count, and per metric column its non-null
  count, its clamped sum (for sum, mean, std) and sum of squares (for std). Groups are
  disjoint once each key is clipped to rows_per_key rows in total, so one person changes
  the vector of all groups' answers by at most the stated sensitivity (parallel
  composition over groups).
- Which groups are released: DP partition selection. A group appears only if its noisy
  row count (Laplace) is at least `max(k, L + b ln(L / (2 delta_s)))` (L = rows_per_key,
  b the count's Laplace scale, delta_s the selection's delta): a group that exists only
  because of one person is released with probability at most delta_s. Exact counts never
  decide. Grouping therefore needs a delta (all of `delta` for laplace; half of it for
  gaussian, the other half for the gaussian answers). A statistic whose noisy non-null
  count is below k is suppressed with its count (post-processing of DP answers).
- What a job spends: (epsilon, delta) as stated in the spec (`teenet.models.rules.epsilon_cost`);
  across jobs the owners' ledgers add them up (sequential composition).

Why diffprivlib rather than OpenDP: it is already a dependency for the enclave's models,
its mechanisms take a secure RNG by default, and the owners' ledger composes sequentially,
for which its (epsilon, delta) accounting suffices; OpenDP's tighter (zCDP) accounting would
pay off only for many small queries against one budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from teenet.errors import InputError

from teenet.models.params import ParamReader

DP_STATS = frozenset({"count", "sum", "mean", "std"})
# Spec keys that would control the noise's randomness: refused with a reason, never read.
RNG_CONTROLS = ("seed", "random_state", "random_seed", "rng", "generator")


def refuse_rng_controls(reader: ParamReader) -> None:
    for name in RNG_CONTROLS:
        if name in reader.values:
            raise InputError("the noise comes only from the enclave's secure randomness; a job cannot seed or set "
                             f"it (leave out '{name}')", field=reader.field(name))


@dataclass(frozen=True)
class DpParams:
    """epsilon > 0; mechanism laplace | gaussian; delta in [0, 1) (required > 0 for gaussian,
    and for grouping, where partition selection spends it); bounds {column: [low, high]} for
    metric columns (any column missing takes an owner's rule's bounds); max_rows_per_key."""

    epsilon: float
    mechanism: str
    delta: float
    bounds: Mapping[str, tuple[float, float]]
    max_rows_per_key: int | None

    @classmethod
    def parse(cls, reader: ParamReader, metric_columns: tuple[str, ...], *, grouped: bool) -> "DpParams":
        refuse_rng_controls(reader)
        epsilon = reader.number("epsilon", above=0.0)
        mechanism = reader.text("mechanism", choices=("laplace", "gaussian"), default="laplace")
        if mechanism == "gaussian" or grouped:
            if not reader.has("delta"):
                why = "the gaussian mechanism" if mechanism == "gaussian" else \
                    "grouping (DP partition selection spends it)"
                raise InputError(f"is required for {why}: a number in (0, 1)", field=reader.field("delta"))
            delta = reader.number("delta", above=0.0, below=1.0)
        else:
            delta = reader.number("delta", default=0.0, at_least=0.0, below=1.0)
        bounds: dict[str, tuple[float, float]] = {}
        bounds_reader = reader.section("bounds")
        if bounds_reader is not None:
            for column in list(bounds_reader.values):
                where = bounds_reader.field(str(column))
                if column not in metric_columns:
                    raise InputError(f"'{column}' is not a metric column", field=where)
                bounds[str(column)] = parse_bounds(bounds_reader.raw(column), where)
            bounds_reader.done()
        rows = reader.integer("max_rows_per_key", default=None, at_least=1)
        reader.done()
        return cls(epsilon, mechanism, delta, bounds, rows)


def parse_bounds(raw: object, where: str) -> tuple[float, float]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 2 or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) for v in raw):
        raise InputError("expected [low, high], two finite numbers", field=where)
    if not raw[0] < raw[1]:
        raise InputError(f"expected low < high, found [{raw[0]}, {raw[1]}]", field=where)
    return float(raw[0]), float(raw[1])


def queries_per_group(stats_per_metric: list[tuple[str, ...]]) -> int:
    """The noisy answers one group spends its budget on (the row count, then per metric)."""
    queries = 1
    for stats in stats_per_metric:
        queries += 1 + (1 if set(stats) & {"sum", "mean", "std"} else 0) + (1 if "std" in stats else 0)
    return queries


class NoiseBudget:
    """Spends one group's share of the job's budget, `queries` answers, through diffprivlib.

    Never given a random state: diffprivlib then draws from `secrets.SystemRandom`.
    """

    def __init__(self, params: DpParams, queries: int) -> None:
        # Imported here: diffprivlib pulls in scikit-learn, which only DP jobs need.
        from diffprivlib.mechanisms import GaussianAnalytic, Laplace

        self.mechanism = params.mechanism
        self.epsilon = params.epsilon / queries
        # The gaussian answers share half of delta; partition selection has the other half.
        self.delta = (params.delta / 2.0) / queries if params.mechanism == "gaussian" else 0.0
        self._laplace = Laplace
        self._gaussian = GaussianAnalytic

    def noisy(self, value: float, sensitivity: float, *, laplace: bool = False) -> float:
        if self.mechanism == "gaussian" and not laplace:
            mech = self._gaussian(epsilon=self.epsilon, delta=self.delta, sensitivity=sensitivity)
        else:
            mech = self._laplace(epsilon=self.epsilon, delta=0.0, sensitivity=sensitivity)
        return float(mech.randomise(float(value)))

    def laplace_scale(self, sensitivity: float) -> float:
        return sensitivity / self.epsilon


def selection_delta(params: DpParams) -> float:
    return params.delta / 2.0 if params.mechanism == "gaussian" else params.delta


def selection_threshold(k: int, rows_per_key: int, count_scale: float, delta: float) -> float:
    """The noisy-count threshold of Laplace partition selection, never below k.

    A group that exists only because of one person holds at most L of their rows, in at
    most L groups; each passes `L + b ln(L / (2 delta))` with probability at most
    delta / L, so all of them together with probability at most delta.
    """
    return max(float(k), rows_per_key + count_scale * math.log(rows_per_key / (2.0 * delta)))


def clip_rows_per_key(entities: np.ndarray | None, rows: int, bound: int) -> np.ndarray:
    """A mask keeping at most `bound` rows of each entity (the first in row order)."""
    if entities is None or bound is None:
        return np.ones(rows, dtype=bool)
    import pandas as pd

    rank = pd.Series(entities).groupby(entities, sort=False).cumcount().to_numpy()
    return rank < bound


def clamp(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return np.clip(values, bounds[0], bounds[1])


def sum_sensitivity(bounds: tuple[float, float], rows_per_key: int = 1) -> float:
    return rows_per_key * max(abs(bounds[0]), abs(bounds[1]))


def square_sensitivity(bounds: tuple[float, float], rows_per_key: int = 1) -> float:
    return rows_per_key * max(bounds[0] ** 2, bounds[1] ** 2)


def laplace_mean_error_bound(count: float, bounds: tuple[float, float], epsilon: float, queries: int,
                             rows_per_key: int = 1, beta: float = 0.05) -> float:
    """With probability at least 1 - beta, |DP mean - exact mean| is at most this (Laplace).

    The mean is (S + Ns) / (C + Nc), Ns ~ Lap(L M q / eps), Nc ~ Lap(L q / eps), M the largest
    bound magnitude; each |N| <= scale ln(2 / beta) with probability 1 - beta / 2. Then
    |error| <= (bs t + M bc t) / (C - bc t) with t = ln(2 / beta), before the final clamp to
    the bounds (which only shrinks it).
    """
    magnitude = max(abs(bounds[0]), abs(bounds[1]))
    b_count = rows_per_key * queries / epsilon
    b_sum = rows_per_key * magnitude * queries / epsilon
    t = math.log(2.0 / beta)
    if count - b_count * t <= 0:
        return math.inf
    return (b_sum * t + magnitude * b_count * t) / (count - b_count * t)
