"""The typed output format: what the runtime writes, the station reads, strictly."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from trains.published import InvalidPublished, to_document
from trains.published_read import from_document
from trains.runtime.publish import Publisher, PublishError


def every_type() -> Publisher:
    p = Publisher()
    p.frequency_table("sex", ["f", "m"], np.array([40, 60]))
    p.frequency_table("x", ["a", "b"], [[1.0, 2], [3, 4]], columns=["u", "v"])
    p.magnitude_table("cost", ["a"], "sum", [100.0], [12], [[30.0, 20.0]], (0.0, 50.0))
    p.statistic("age/mean", "mean", np.float64(51.5), np.int64(100))
    p.survival_curve("km", np.array([1.0, 2.0]), np.array([50.0, 40.0]), [1, 2])
    p.regression("ols", ["intercept", "age"], [1.0, np.nan], [0.1, 0.2], 100, 98)
    p.model_parameters("w", np.zeros((2, 2)), 100, 20)
    return p


def test_everything_the_runtime_writes_parses_at_the_station():
    document = json.loads(json.dumps(every_type().document(), allow_nan=False))
    quantities = from_document(document)
    assert [q.type for q in quantities] == [
        "frequency_table",
        "frequency_table",
        "magnitude_table",
        "statistic",
        "survival_curve",
        "regression",
        "model_parameters",
    ]
    assert to_document(quantities)["quantities"][0]["counts"] == [[40], [60]]
    assert quantities[5].coefficients == [1.0, None]  # type: ignore[union-attr]  # NaN: null


@pytest.mark.parametrize("count", [2.5, -1, "2"])
def test_the_runtime_refuses_a_count_that_is_not_one(count):
    with pytest.raises(PublishError):
        Publisher().frequency_table("t", ["a"], [count])


def test_a_name_is_published_once():
    p = Publisher()
    p.statistic("s", "mean", 1.0, 10)
    with pytest.raises(PublishError, match="twice"):
        p.statistic("s", "mean", 2.0, 10)


def base() -> dict[str, Any]:
    return every_type().document()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format=2), "format"),
        (lambda d: d.update(extra=1), "must be"),
        (lambda d: d["quantities"][0].update(type="histogram"), "unknown type"),
        (lambda d: d["quantities"][0].update(colour="red"), "not a field"),
        (lambda d: d["quantities"][0].update(counts=[[40]]), "2 rows"),
        (lambda d: d["quantities"][3].update(n=100.0), "non-negative integer"),
        (lambda d: d["quantities"][3].update(n=True), "non-negative integer"),
        (lambda d: d["quantities"][3].update(kind="max"), "kind"),
        (lambda d: d["quantities"][4].update(events=[51, 2]), "exceed"),
        (lambda d: d["quantities"][4].update(at_risk=[40, 50]), "grow"),
        (lambda d: d["quantities"][5].update(coefficients=[1e999, 1.0]), "finite"),
        (lambda d: d["quantities"][6].update(site_min_n=101), "exceed"),
        (lambda d: d["quantities"].append(d["quantities"][0]), "same name"),
        (lambda d: d["quantities"][0].update(rows=["f", "f"]), "twice"),
        (lambda d: d["quantities"][0].update(name="x" * 201), "characters"),
    ],
)
def test_the_station_refuses_what_does_not_fit(change, message):
    document = json.loads(json.dumps(base()))
    change(document)
    with pytest.raises(InvalidPublished, match=message):
        from_document(document)


def test_a_huge_table_is_refused_by_its_size_not_walked():
    document = {
        "format": 1,
        "quantities": [
            {
                "type": "frequency_table",
                "name": "t",
                "rows": [str(i) for i in range(400)],
                "columns": [str(i) for i in range(400)],
                "counts": [],
            }
        ],
    }
    with pytest.raises(InvalidPublished, match="more than 100000 cells"):
        from_document(document)
