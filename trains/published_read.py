"""Reading ``published.json`` back: strict, bounded validation of every quantity.

The format is defined in ``trains.published``; this is the one reader of it, used by the
station's child parser at the release point and by the researcher's tools. Standard library
only, like the model.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from trains.published import (
    FORMAT,
    MAX_CELLS,
    MAX_LABEL,
    MAX_QUANTITIES,
    STATISTIC_KINDS,
    FrequencyTable,
    InvalidPublished,
    MagnitudeTable,
    ModelParameters,
    Quantity,
    Regression,
    Statistic,
    SurvivalCurve,
)


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
