"""ExactMedianImputer fits the same statistics as scikit-learn's SimpleImputer(median), bit
for bit, and leaves a plain SimpleImputer in the fitted pipeline."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from teenet.models.imputer import ExactMedianImputer, as_simple_imputers


def _matrix(rng: np.random.Generator, trial: int) -> np.ndarray:
    rows, cols = int(rng.integers(1, 80)), int(rng.integers(1, 6))
    x = rng.normal(size=(rows, cols)) * 10.0 ** int(rng.integers(-6, 7))
    if trial % 3 == 0:
        x = np.round(x)  # ties
    x[rng.random((rows, cols)) < rng.random()] = np.nan
    return x.astype(np.float32 if trial % 2 else np.float64)


@pytest.mark.parametrize("seed", range(4))
def test_statistics_equal_simple_imputer_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    for trial in range(100):
        x = _matrix(rng, trial)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-missing columns
            expected = SimpleImputer(strategy="median").fit(x)
            got = ExactMedianImputer(strategy="median").fit(x)
        assert got.statistics_.dtype == expected.statistics_.dtype
        assert np.array_equal(got.statistics_, expected.statistics_, equal_nan=True), (seed, trial)
        if np.isfinite(expected.statistics_).all():
            assert np.array_equal(got.transform(x), expected.transform(x))


def test_even_count_averages_the_two_middle_values_and_empty_columns_follow_keep_empty_features():
    x = np.array([[1.0, np.nan], [4.0, np.nan], [2.0, np.nan], [10.0, np.nan]])
    assert ExactMedianImputer(strategy="median", keep_empty_features=True).fit(x).statistics_.tolist() == [3.0, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = ExactMedianImputer(strategy="median").fit(x).statistics_
    assert stats[0] == 3.0 and np.isnan(stats[1])


def test_the_missing_indicator_is_fitted_as_the_parent_fits_it():
    x = np.array([[1.0, np.nan], [np.nan, 2.0], [3.0, 5.0]])
    got = ExactMedianImputer(strategy="median", add_indicator=True).fit(x)
    expected = SimpleImputer(strategy="median", add_indicator=True).fit(x)
    assert np.array_equal(got.transform(x), expected.transform(x))


@pytest.mark.parametrize("kwargs", [
    {"strategy": "mean"},
    {"strategy": "most_frequent"},
    {"strategy": "median", "missing_values": -1.0},
])
def test_other_cases_are_the_parents(kwargs):
    x = np.array([[1.0, -1.0], [-1.0, 2.0], [3.0, 2.0], [3.0, 7.0]])
    assert np.array_equal(ExactMedianImputer(**kwargs).fit(x).statistics_,
                          SimpleImputer(**kwargs).fit(x).statistics_, equal_nan=True)


def test_a_fitted_pipeline_is_left_with_plain_simple_imputers():
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    frame.iloc[::7, 1] = np.nan
    label = (frame["a"].fillna(0) + rng.normal(size=200) > 0).astype(int)

    def pipeline(imputer):
        numeric = Pipeline([("impute", imputer), ("scale", StandardScaler())])
        return Pipeline([("prepare", ColumnTransformer([("numeric", numeric, ["a", "b", "c"])])),
                         ("model", LogisticRegression())])

    ours = as_simple_imputers(pipeline(ExactMedianImputer(strategy="median")).fit(frame, label))
    reference = pipeline(SimpleImputer(strategy="median")).fit(frame, label)
    imputer = ours.named_steps["prepare"].named_transformers_["numeric"].named_steps["impute"]
    assert type(imputer) is SimpleImputer
    assert np.array_equal(imputer.statistics_,
                          reference.named_steps["prepare"].named_transformers_["numeric"]
                          .named_steps["impute"].statistics_)
    assert np.array_equal(ours.named_steps["model"].coef_, reference.named_steps["model"].coef_)
    assert np.array_equal(ours.predict_proba(frame), reference.predict_proba(frame))
