"""Median imputation with scikit-learn's exact result, computed a column at a time.

`SimpleImputer(strategy="median")` fits dense input through `numpy.ma.median` over the
whole matrix: it allocates and sorts masked copies of the full array, which took 3 to 4 s
of a 1M-row x 30-feature training job on the compute node (see docs/performance.md).
`ExactMedianImputer` fits the same statistics (bit for bit: the middle value, or the sum
of the two middle values divided by two, in the input's dtype, as `numpy.ma` computes
them) with `numpy.partition` on each column's present values.

It changes how the statistics are computed, not what the pipeline is: once the pipeline is
fitted, `as_simple_imputers` turns every instance back into a plain fitted
`SimpleImputer`, so the released ONNX model, the summary and anything that inspects the
pipeline see scikit-learn's own class with the same fitted state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.impute import SimpleImputer


class ExactMedianImputer(SimpleImputer):
    """`SimpleImputer` whose dense median fit is column-wise; every other case is the parent's."""

    def _dense_fit(self, X: Any, strategy: str, missing_values: Any, fill_value: Any) -> Any:
        if not (strategy == "median" and isinstance(X, np.ndarray) and X.dtype.kind == "f"
                and _is_nan(missing_values)):
            return super()._dense_fit(X, strategy, missing_values, fill_value)
        missing = np.isnan(X)
        self._fit_indicator(missing)
        medians = np.empty(X.shape[1], dtype=X.dtype)
        incomplete = missing.any(axis=0)
        for j in range(X.shape[1]):
            # A complete column is partitioned as it is (np.partition copies it); only a
            # column with missing values pays the masked gather of its present values.
            present = X[~missing[:, j], j] if incomplete[j] else X[:, j]
            medians[j] = _median(present) if present.size else (0 if self.keep_empty_features else np.nan)
        return medians


def _is_nan(value: Any) -> bool:
    try:
        return bool(np.isnan(value))
    except TypeError:
        return False


def _median(values: np.ndarray) -> Any:
    half, odd = divmod(values.size, 2)
    if odd:
        return np.partition(values, half)[half]
    part = np.partition(values, (half - 1, half))
    # numpy.ma: sum of the low and high middle values, then true division by 2.
    return np.true_divide(part[half - 1] + part[half], values.dtype.type(2))


def as_simple_imputers(estimator: Any) -> Any:
    """Turn every fitted `ExactMedianImputer` inside `estimator` (a Pipeline, a
    ColumnTransformer, or nested ones) into a plain `SimpleImputer` in place. The subclass
    adds no state, so the object keeps its fitted attributes unchanged."""
    if type(estimator) is ExactMedianImputer:
        estimator.__class__ = SimpleImputer
        return estimator
    for _, step in getattr(estimator, "steps", ()):
        as_simple_imputers(step)
    for _, transformer, _ in getattr(estimator, "transformers_", ()):
        as_simple_imputers(transformer)
    return estimator
