"""Pooled-analysis yardsticks: what the federated result must equal (demo, tests, benchmarks)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def pooled_cohort_stats(frames: list[pd.DataFrame], min_cell: int = 5) -> dict[str, Any]:
    pooled = pd.concat(frames, ignore_index=True)
    numeric = pooled.select_dtypes(include="number")

    def cell(count: int) -> int | None:
        return int(count) if count >= min_cell else None

    return {
        "rows": cell(len(pooled)),
        "numeric": {
            col: {
                "count": int(numeric[col].count()),
                "mean": float(numeric[col].mean()),
                "std": float(numeric[col].std()),
                "min": float(numeric[col].min()),
                "max": float(numeric[col].max()),
            }
            for col in numeric.columns
        },
        "categorical": {
            col: {str(k): cell(int(v)) for k, v in sorted(pooled[col].value_counts().items())}
            for col in pooled.columns.drop(numeric.columns)
        },
    }


def assert_matches_pooled(result: dict[str, Any], pooled: dict[str, Any]) -> None:
    assert result["rows"] == pooled["rows"]
    assert result["categorical"] == pooled["categorical"]
    assert set(result["numeric"]) == set(pooled["numeric"])
    for col, expected in pooled["numeric"].items():
        got = result["numeric"][col]
        assert got["count"] == expected["count"], col
        for stat in ("mean", "std", "min", "max"):
            assert math.isclose(got[stat], expected[stat], rel_tol=1e-9), (col, stat)
