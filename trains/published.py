"""Typed outputs: what a train releases, each quantity with its type (issue 12 item 1).

A train publishes quantities through ``ctx.publish`` (``trains.runtime.publish``); at the
release hop the runtime writes them to ``published.json``::

    {"format": 1, "quantities": [{"type": "frequency_table", "name": ..., ...}, ...]}

The station that releases reads that file (bounded, in its child parser) and applies the
rules of ``station.disclosure_rules`` per type; everything else in the output folder is an
*untyped* file for the station's policy. This module is the one definition of the format:
plain dataclasses with explicit validation, because pydantic is not in the train base image
and the format must stay readable without it. It imports the standard library only.

Validation is strict where a wrong type would hide a small cell: a count is a JSON integer
``>= 0`` (``2.0``, ``"2"``, ``true`` or ``-2`` are refused, not coerced); every other number
is a finite JSON number; ``null`` appears only where a value was suppressed. A quantity that
does not validate refuses the whole release, naming the quantity and the field.
"""

from __future__ import annotations

import itertools
import math
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


# --- reading and writing ------------------------------------------------------------------------


def to_document(quantities: list[Quantity]) -> dict[str, Any]:
    """The JSON document of ``published.json``."""
    return {"format": FORMAT, "quantities": [to_dict(q) for q in quantities]}


def to_dict(quantity: Quantity) -> dict[str, Any]:
    raw = asdict(quantity)
    for key in ("bounds",):
        if isinstance(raw.get(key), tuple):
            raw[key] = list(raw[key])
    return raw


def from_document(document: Any) -> list[Quantity]:
    """Validate a parsed ``published.json``; raises InvalidPublished naming what is wrong."""
    if not isinstance(document, dict) or set(document) != {"format", "quantities"}:
        raise InvalidPublished('published.json must be {"format": 1, "quantities": [...]}')
    if document["format"] != FORMAT or isinstance(document["format"], bool):
        raise InvalidPublished(f"published.json format {document['format']!r} is not {FORMAT}")
    items = document["quantities"]
    if not isinstance(items, list):
        raise InvalidPublished("published.json quantities must be a list")
    if len(items) > MAX_QUANTITIES:
        raise InvalidPublished(f"published.json holds more than {MAX_QUANTITIES} quantities")
    quantities = [from_dict(item, i) for i, item in enumerate(items)]
    names = [q.name for q in quantities]
    if len(set(names)) != len(names):
        raise InvalidPublished("two published quantities have the same name")
    return quantities


def from_dict(raw: Any, index: int = 0) -> Quantity:
    """One quantity from its JSON object (strict, see the module docstring)."""
    if not isinstance(raw, dict):
        raise InvalidPublished(f"quantity {index} is not a JSON object")
    kind = raw.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise InvalidPublished(f"quantity {index} has unknown type {str(kind)[:40]!r}")
    name = _label(raw.get("name"), f"quantity {index} name")
    r = _Reader(raw, name)
    quantity: Quantity = parser(r)
    r.finish()
    return quantity


class _Reader:
    """Reads the fields of one quantity, each at most once; unknown fields are refused."""

    def __init__(self, raw: dict[str, Any], name: str) -> None:
        self.raw, self.name, self.seen = raw, name, {"type", "name"}

    def get(self, key: str, default: Any = ...) -> Any:
        self.seen.add(key)
        if key not in self.raw:
            if default is ...:
                raise self.error(key, "is missing")
            return default
        return self.raw[key]

    def error(self, key: str, what: str) -> InvalidPublished:
        return InvalidPublished(f"published quantity {self.name!r}: {key} {what}")

    def finish(self) -> None:
        extra = sorted(set(self.raw) - self.seen)
        if extra:
            raise self.error(str(extra[0])[:40], "is not a field of this type")

    # typed getters
    def count(self, key: str, value: Any = ..., nullable: bool = False) -> int | None:
        value = self.get(key) if value is ... else value
        if value is None and nullable:
            return None
        if type(value) is not int or value < 0:
            raise self.error(
                key, "must be a non-negative integer count (not a float, string or negative number)"
            )
        return value

    def number(self, key: str, value: Any = ..., nullable: bool = False) -> float | None:
        value = self.get(key) if value is ... else value
        if value is None and nullable:
            return None
        if type(value) not in (int, float) or not math.isfinite(value):
            raise self.error(key, "must be a finite number")
        return float(value)

    def labels(self, key: str) -> list[str]:
        value = self.get(key)
        if not isinstance(value, list) or not value or len(value) > MAX_CELLS:
            raise self.error(key, f"must be a list of 1 to {MAX_CELLS} labels")
        out = [_label(v, f"{self.name!r} {key}") for v in value]
        if len(set(out)) != len(out):
            raise self.error(key, "holds a label twice")
        return out

    def vector(self, key: str, length: int | None, cell: Any) -> list[Any]:
        value = self.get(key)
        if not isinstance(value, list) or len(value) > MAX_CELLS:
            raise self.error(key, f"must be a list of at most {MAX_CELLS} items")
        if length is not None and len(value) != length:
            raise self.error(key, f"must have {length} items")
        return [cell(v) for v in value]

    def grid(self, key: str, rows: int, columns: int, cell: Any) -> list[list[Any]]:
        value = self.get(key)
        if rows * columns > MAX_CELLS:
            raise self.error(key, f"has more than {MAX_CELLS} cells")
        if not isinstance(value, list) or len(value) != rows:
            raise self.error(key, f"must be {rows} rows")
        out = []
        for row in value:
            if not isinstance(row, list) or len(row) != columns:
                raise self.error(key, f"must be {rows} rows of {columns} cells")
            out.append([cell(v) for v in row])
        return out

    def bounds(self, key: str, required: bool) -> tuple[float, float] | None:
        value = self.get(key, ... if required else None)
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != 2:
            raise self.error(key, "must be [lo, hi]")
        lo, hi = (self.number(key, v) for v in value)
        assert lo is not None and hi is not None
        if lo > hi:
            raise self.error(key, "must have lo <= hi")
        return (lo, hi)


def _label(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_LABEL:
        raise InvalidPublished(f"{what} must be a string of 1 to {MAX_LABEL} characters")
    return value


def _frequency(r: _Reader) -> FrequencyTable:
    rows, columns = r.labels("rows"), r.labels("columns")
    counts = r.grid("counts", len(rows), len(columns), lambda v: r.count("counts", v, True))
    return FrequencyTable(r.name, rows, columns, counts)


def _magnitude(r: _Reader) -> MagnitudeTable:
    rows, columns = r.labels("rows"), r.labels("columns")
    statistic = r.get("statistic")
    if statistic not in ("sum", "mean"):
        raise r.error("statistic", 'must be "sum" or "mean"')
    shape = (len(rows), len(columns))
    values = r.grid("values", *shape, lambda v: r.number("values", v, True))
    counts = r.grid("counts", *shape, lambda v: r.count("counts", v, True))

    def top(v: Any) -> list[float]:
        if not isinstance(v, list) or len(v) > 2:
            raise r.error("top", "must hold per cell a list of the largest two contributions")
        out = [r.number("top", x) for x in v]
        if any(x is None or x < 0 for x in out):
            raise r.error("top", "contributions must be absolute values (>= 0)")
        return sorted((float(x) for x in out if x is not None), reverse=True)

    tops = r.grid("top", *shape, top)
    bounds = r.bounds("bounds", required=True)
    assert bounds is not None
    return MagnitudeTable(r.name, rows, columns, statistic, values, counts, tops, bounds)


def _statistic(r: _Reader) -> Statistic:
    kind = r.get("kind")
    if kind not in STATISTIC_KINDS:
        raise r.error("kind", f"must be one of {', '.join(STATISTIC_KINDS)}")
    value = r.number("value", nullable=True)
    n = r.count("n")
    assert n is not None
    return Statistic(r.name, kind, value, n, r.bounds("bounds", required=False))


def _survival(r: _Reader) -> SurvivalCurve:
    times = r.vector("times", None, lambda v: r.number("times", v))
    at_risk = r.vector("at_risk", len(times), lambda v: r.count("at_risk", v))
    events = r.vector("events", len(times), lambda v: r.count("events", v))
    if any(b <= a for a, b in itertools.pairwise(times)):
        raise r.error("times", "must be strictly increasing")
    if any(e > n for e, n in zip(events, at_risk, strict=True)):
        raise r.error("events", "cannot exceed the number at risk")
    if any(b > a for a, b in itertools.pairwise(at_risk)):
        raise r.error("at_risk", "cannot grow over time")
    # a train's own survival/median/quantiles are not trusted: recomputed by the station
    for key in ("survival", "median", "quantiles"):
        r.get(key, None)
    return SurvivalCurve(r.name, times, at_risk, events)


def _regression(r: _Reader) -> Regression:
    terms = r.labels("terms")
    coefficients = r.vector("coefficients", len(terms), lambda v: r.number("coefficients", v, True))
    ses = r.vector("standard_errors", len(terms), lambda v: r.number("standard_errors", v, True))
    n, df = r.count("n"), r.count("residual_df")
    assert n is not None and df is not None
    return Regression(r.name, terms, coefficients, ses, n, df)


def _parameters(r: _Reader) -> ModelParameters:
    weights = r.vector("weights", None, lambda v: r.number("weights", v, True))
    n, site_min_n = r.count("n"), r.count("site_min_n")
    assert n is not None and site_min_n is not None
    if site_min_n > n:
        raise r.error("site_min_n", "cannot exceed n")
    return ModelParameters(r.name, weights, n, site_min_n)


_PARSERS: dict[str, Any] = {
    "frequency_table": _frequency,
    "magnitude_table": _magnitude,
    "statistic": _statistic,
    "survival_curve": _survival,
    "regression": _regression,
    "model_parameters": _parameters,
}
