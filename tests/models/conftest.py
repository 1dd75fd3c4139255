"""Fixtures for the in-enclave functions: scikit-learn's bundled datasets (no downloads)."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    return frame


@pytest.fixture(scope="session")
def diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True).frame
