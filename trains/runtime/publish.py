"""The train's API for what it releases: ``ctx.publish.<type>(name, ...)`` (issue 12 item 1).

Each call records one typed quantity; at the release hop (the last hop, or the aggregator's
last output) the runtime writes them all to ``published.json`` in the format of
``trains.published`` (not imported here: the base image carries only ``trains.runtime``;
tests/test_published.py checks that everything written here parses there). The station
that releases applies its disclosure rules per type and reports what it suppressed.

Numbers may be numpy scalars or arrays. A count given as a whole float (``3.0`` from a
``bincount`` with weights) is written as the integer it is; any other non-integer count is
an error here, in the train, before it ever reaches a station (which refuses it too).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PUBLISHED_FILE = "published.json"
FORMAT = 1


class PublishError(ValueError):
    """A quantity the train tried to publish does not fit its type."""


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def _number(value: Any) -> float | None:
    value = _plain(value)
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _count(value: Any) -> int | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PublishError(f"a count must be a number, not {type(value).__name__}")
    if value < 0 or value != math.floor(value):
        raise PublishError(f"a count must be a non-negative whole number, not {value}")
    return int(value)


def _grid(values: Any, cell: Any) -> list[list[Any]]:
    rows = _plain(values)
    if rows and not isinstance(rows[0], list):  # a one-way table: one column
        rows = [[v] for v in rows]
    return [[cell(v) for v in row] for row in rows]


class Publisher:
    """Collects the quantities a train publishes during one hop."""

    def __init__(self) -> None:
        self.quantities: list[dict[str, Any]] = []

    def _add(self, quantity: dict[str, Any]) -> None:
        if any(q["name"] == quantity["name"] for q in self.quantities):
            raise PublishError(f"a quantity named {quantity['name']!r} is published twice")
        self.quantities.append(quantity)

    def frequency_table(
        self, name: str, rows: list[str], counts: Any, columns: list[str] | None = None
    ) -> None:
        """Counts of records: ``counts[i][j]`` for ``rows[i]`` x ``columns[j]`` (a one-way
        table: a list of counts and no columns)."""
        self._add(
            {
                "type": "frequency_table",
                "name": name,
                "rows": [str(r) for r in rows],
                "columns": [str(c) for c in (columns or ["n"])],
                "counts": _grid(counts, _count),
            }
        )

    def magnitude_table(
        self,
        name: str,
        rows: list[str],
        statistic: str,
        values: Any,
        counts: Any,
        top: Any,
        bounds: tuple[float, float],
        columns: list[str] | None = None,
    ) -> None:
        """Sums or means per cell with their counts and each cell's two largest absolute
        contributions (``top[i][j] = [largest, second]``, for the dominance rules)."""
        tops = _plain(top)
        if tops and tops[0] and not isinstance(tops[0][0], list):
            tops = [[t] for t in tops]
        self._add(
            {
                "type": "magnitude_table",
                "name": name,
                "rows": [str(r) for r in rows],
                "columns": [str(c) for c in (columns or [statistic])],
                "statistic": statistic,
                "values": _grid(values, _number),
                "counts": _grid(counts, _count),
                "top": [[[abs(float(x)) for x in cell][:2] for cell in row] for row in tops],
                "bounds": [float(bounds[0]), float(bounds[1])],
            }
        )

    def statistic(
        self,
        name: str,
        kind: str,
        value: Any,
        n: Any,
        bounds: tuple[float, float] | None = None,
    ) -> None:
        """One number computed over ``n`` records (``kind``: mean, sum, proportion, median,
        quantile, sd, variance or other)."""
        quantity: dict[str, Any] = {
            "type": "statistic",
            "name": name,
            "kind": kind,
            "value": _number(value),
            "n": _count(n),
        }
        if bounds is not None:
            quantity["bounds"] = [float(bounds[0]), float(bounds[1])]
        self._add(quantity)

    def survival_curve(self, name: str, times: Any, at_risk: Any, events: Any) -> None:
        """A Kaplan-Meier curve's counts at each distinct time; the survival, its median and
        quartiles are computed by the releasing station from the part of the curve it
        releases."""
        self._add(
            {
                "type": "survival_curve",
                "name": name,
                "times": [float(t) for t in _plain(times)],
                "at_risk": [_count(v) for v in _plain(at_risk)],
                "events": [_count(v) for v in _plain(events)],
            }
        )

    def regression(
        self,
        name: str,
        terms: list[str],
        coefficients: Any,
        standard_errors: Any,
        n: Any,
        residual_df: Any,
    ) -> None:
        """A fitted regression with its residual degrees of freedom."""
        self._add(
            {
                "type": "regression",
                "name": name,
                "terms": [str(t) for t in terms],
                "coefficients": [_number(v) for v in _plain(coefficients)],
                "standard_errors": [_number(v) for v in _plain(standard_errors)],
                "n": _count(n),
                "residual_df": _count(residual_df),
            }
        )

    def model_parameters(self, name: str, weights: Any, n: Any, site_min_n: Any) -> None:
        """An iterative model's weights, fitted on ``n`` records, the smallest site having
        contributed ``site_min_n``."""
        self._add(
            {
                "type": "model_parameters",
                "name": name,
                "weights": [_number(v) for v in np.ravel(np.asarray(weights, dtype=float))],
                "n": _count(n),
                "site_min_n": _count(site_min_n),
            }
        )

    def document(self) -> dict[str, Any]:
        """The JSON document of ``published.json``."""
        return {"format": FORMAT, "quantities": self.quantities}
