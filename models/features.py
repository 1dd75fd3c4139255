"""Turning joined Arrow columns into model features, identically for training and scoring.

Numeric columns (integers, floats, booleans, decimals) become float64 with nulls as NaN
(the pipeline's SimpleImputer fills them). Categorical columns (strings, or any column
named in params.categorical) become strings with nulls as "" so a missing value is its
own category, which an ONNX string tensor can carry. Anything else is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from teenet.errors import InputError

MISSING_CATEGORY = ""


@dataclass(frozen=True)
class FeatureLayout:
    """The model's input columns in order, split by how they are encoded."""

    features: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]


def _is_numeric(kind: pa.DataType) -> bool:
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind))


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def plan_features(table: pa.Table, features: Sequence[str],
                  categorical: Sequence[str] | None) -> FeatureLayout:
    """Decide each feature's encoding: stated categoricals, else inferred from string type."""
    numeric: list[str] = []
    cats: list[str] = []
    for name in features:
        kind = table.column(name).type
        if categorical is not None and name in categorical:
            if not (_is_text(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
                raise InputError(f"feature '{name}' is {kind}; only strings, integers and booleans can be "
                                 "one-hot encoded", field="params.categorical")
            cats.append(name)
        elif _is_numeric(kind):
            numeric.append(name)
        elif _is_text(kind) and categorical is None:
            cats.append(name)
        elif _is_text(kind):
            raise InputError(f"feature '{name}' is non-numeric ({kind}) and has no encoding: add it to "
                             "params.categorical or leave it out of params.features", field="params.categorical")
        else:
            raise InputError(f"feature '{name}' is {kind}, which has no encoding (expected a number or a "
                             "string)", field="params.features")
    return FeatureLayout(tuple(features), tuple(numeric), tuple(cats))


def feature_frame(table: pa.Table, layout: FeatureLayout) -> pd.DataFrame:
    """The features as a DataFrame in layout order: floats with NaN, strings with ''."""
    if not layout.categorical and layout.features:
        # All numeric: fill one float64 block column by column and frame it without the
        # copy pandas makes to consolidate a dict of columns (the same DataFrame).
        block = np.empty((len(layout.features), table.num_rows), dtype=np.float64)
        for j, name in enumerate(layout.features):
            block[j] = pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False)
        return pd.DataFrame(block.T, columns=list(layout.features), copy=False)
    data: dict[str, np.ndarray] = {}
    for name in layout.features:
        column = table.column(name)
        if name in layout.categorical:
            text = pc.fill_null(pc.cast(column, pa.string()) if not _is_text(column.type)
                                else column.cast(pa.string()), MISSING_CATEGORY)
            data[name] = np.asarray(text.to_pylist(), dtype=object)
        else:
            data[name] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return pd.DataFrame(data, columns=list(layout.features))


def onnx_feeds(frame: pd.DataFrame, layout: FeatureLayout,
               double: Collection[str] = ()) -> dict[str, np.ndarray]:
    """One [n, 1] tensor per feature: float32 for numbers (float64 for those in `double`, the
    inputs a float64 model takes), strings for categories."""
    feeds: dict[str, np.ndarray] = {}
    for name in layout.features:
        values = frame[name].to_numpy()
        if name in layout.categorical:
            feeds[name] = values.astype(object).reshape(-1, 1)
        else:
            feeds[name] = values.astype(np.float64 if name in double else np.float32).reshape(-1, 1)
    return feeds
