"""Covariates for the regression-style reference trains, shared through the runtime (every
base image carries it): a column is a numeric column's name or ``"column=level"``, a 0/1
indicator of one level, so every station builds exactly the same columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

Array = npt.NDArray[Any]


def column(rows: pd.DataFrame, item: str) -> Array:
    """The values of ``item`` as floats: a numeric column, or 1.0 where column == level."""
    name, _, level = item.partition("=")
    values = rows[name].astype(str) == level if level else rows[name]
    return np.asarray(values, dtype=np.float64)


def complete_cases(frame: pd.DataFrame, items: list[str]) -> pd.DataFrame:
    """The rows with a value in every column ``items`` use (as the pooled fits do); a
    column the dataset lacks is an error that says where to fix it."""
    needed = [item.partition("=")[0] for item in items]
    missing = sorted(set(needed) - set(frame.columns))
    if missing:
        raise ValueError(f"the dataset has no column(s) {missing}; fix [parameters] in train.toml")
    return frame.dropna(subset=needed)
