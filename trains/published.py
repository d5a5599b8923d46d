"""Typed outputs: what a train releases, each quantity with its type (issue 12 item 1).

A train publishes quantities through ``ctx.publish`` (``trains.runtime.publish``); at the
release hop the runtime writes them to ``published.json``::

    {"format": 1, "quantities": [{"type": "frequency_table", "name": ..., ...}, ...]}

The station that releases reads that file (bounded, in its child parser) and applies the
rules of ``station.disclosure_rules`` per type; everything else in the output folder is an
*untyped* file for the station's policy. This module is the one definition of the format:
plain dataclasses (validated by ``trains.published_read``), because pydantic is not in the
train base image and the format must stay readable without it. It imports the standard library only.

Validation is strict where a wrong type would hide a small cell: a count is a JSON integer
``>= 0`` (``2.0``, ``"2"``, ``true`` or ``-2`` are refused, not coerced); every other number
is a finite JSON number; ``null`` appears only where a value was suppressed. A quantity that
does not validate refuses the whole release, naming the quantity and the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FORMAT = 1
PUBLISHED_FILE = "published.json"
MAX_QUANTITIES = 1000
MAX_CELLS = 100_000  # per quantity: a table, a curve or a parameter vector
MAX_LABEL = 200  # characters in a name or label
STATISTIC_KINDS = ("mean", "sum", "proportion", "median", "quantile", "sd", "variance", "other")


class InvalidPublished(ValueError):
    """``published.json`` (or one quantity in it) does not follow the format."""


# --- the quantities ---------------------------------------------------------------------------


@dataclass
class FrequencyTable:
    """Counts of records per cell: ``counts[i][j]`` for ``rows[i]`` x ``columns[j]``.

    A one-way table has one column. ``None`` marks a suppressed cell."""

    name: str
    rows: list[str]
    columns: list[str]
    counts: list[list[int | None]]
    type: Literal["frequency_table"] = "frequency_table"


@dataclass
class MagnitudeTable:
    """Sums or means per cell, each with its count of records and its two largest absolute
    contributions (for the dominance rules); ``bounds`` is the declared value range [lo, hi]
    of one record's contribution (the sensitivity for DP)."""

    name: str
    rows: list[str]
    columns: list[str]
    statistic: Literal["sum", "mean"]
    values: list[list[float | None]]
    counts: list[list[int | None]]
    top: list[list[list[float]]]  # per cell the largest two |contributions|, descending
    bounds: tuple[float, float]
    type: Literal["magnitude_table"] = "magnitude_table"


@dataclass
class Statistic:
    """One number computed over ``n`` records (a mean, a median, a proportion ...)."""

    name: str
    kind: str
    value: float | None
    n: int
    bounds: tuple[float, float] | None = None
    type: Literal["statistic"] = "statistic"


@dataclass
class SurvivalCurve:
    """A Kaplan-Meier curve: at each event time the number at risk and the events.

    ``survival`` is computed from these counts; ``median`` and ``quantiles`` are filled by
    the releasing station from the *released* curve only (a train's own are ignored)."""

    name: str
    times: list[float]
    at_risk: list[int]
    events: list[int]
    survival: list[float] = field(default_factory=list)
    median: float | None = None
    quantiles: dict[str, float | None] = field(default_factory=dict)
    type: Literal["survival_curve"] = "survival_curve"


@dataclass
class Regression:
    """A fitted regression: coefficients with standard errors, ``n`` records and the residual
    degrees of freedom."""

    name: str
    terms: list[str]
    coefficients: list[float | None]
    standard_errors: list[float | None]
    n: int
    residual_df: int
    type: Literal["regression"] = "regression"


@dataclass
class ModelParameters:
    """The weights of an iterative model, fitted on ``n`` records; ``site_min_n`` is the
    smallest number of records any one site contributed (a site below k is refused)."""

    name: str
    weights: list[float | None]
    n: int
    site_min_n: int
    type: Literal["model_parameters"] = "model_parameters"


Quantity = (
    FrequencyTable | MagnitudeTable | Statistic | SurvivalCurve | Regression | ModelParameters
)


# --- writing (reading: trains.published_read) ----------------------------------------------------


def to_document(quantities: list[Quantity]) -> dict[str, Any]:
    """The JSON document of ``published.json``."""
    return {"format": FORMAT, "quantities": [to_dict(q) for q in quantities]}


def to_dict(quantity: Quantity) -> dict[str, Any]:
    raw = asdict(quantity)
    for key in ("bounds",):
        if isinstance(raw.get(key), tuple):
            raw[key] = list(raw[key])
    return raw
