"""Covariates for the regression-style reference trains, shared through the runtime (every
base image carries it): a column is a numeric column's name or ``"column=level"``, a 0/1
indicator of one level, so every station builds exactly the same columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trains.runtime.core import Context, TrainCodeError
from trains.runtime.refusal import Refusal

Array = npt.NDArray[Any]


def the_dataset(data: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The one dataset a single-dataset train reads, whatever ``datasets`` in train.toml
    names it: renaming the dataset never needs a code edit."""
    if len(data) != 1:
        raise TrainCodeError(
            f"this train reads exactly one dataset, but train.toml lists {len(data)}; "
            'list one, e.g. datasets = ["cohort"]'
        )
    (frame,) = data.values()
    return frame


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
        raise Refusal(
            "missing_column",
            f"the dataset has no column(s) {missing}; fix [parameters] in train.toml",
        )
    return frame.dropna(subset=needed)


def regression_design(
    frame: pd.DataFrame, covariates: list[str], outcome: str, intercept: bool = True
) -> tuple[Array, Array, list[str]]:
    """Complete-case design matrix X (the intercept column first, if asked for), outcome y
    and the coefficient names."""
    rows = complete_cases(frame, [*covariates, outcome])
    names = (["intercept"] if intercept else []) + list(covariates)
    columns = [np.ones(len(rows))] if intercept else []
    columns += [column(rows, item) for item in covariates]
    return np.column_stack(columns), column(rows, outcome), names


def require_binary_outcome(y: Array, outcome: str) -> Array:
    """``y`` itself when it holds only 0 and 1; otherwise an error that says how to fix it."""
    if not np.isin(y, (0.0, 1.0)).all():
        raise Refusal(
            "invalid_values", f"outcome {outcome!r} must be 0/1; use 'column=level' otherwise"
        )
    return y


def require_min_rows(n: int, ctx: Context) -> None:
    """Refuse (``too_few_rows``) to contribute from a station with fewer than ``min_rows``
    (default 10) complete rows: sums over a handful of patients all but reveal them."""
    min_rows = int(ctx.params.get("min_rows", 10))
    if n < min_rows:
        raise Refusal(
            "too_few_rows",
            f"station {ctx.station} has {n} complete rows, fewer than min_rows={min_rows}; "
            "it refuses to contribute",
        )
