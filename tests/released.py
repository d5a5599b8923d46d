"""Reading what a release point released (``published.json``) in tests that run real
routes, and checking the cohort train's release against pandas on the pooled rows."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from station.config import DisclosurePolicy
from train_builder.pooled import pooled_cohort_stats

K = DisclosurePolicy().k  # the stations' default threshold (the test stations keep it)


def read_published(out: Path) -> dict[str, Any]:
    """The ``published.json`` of an opened result; its state is the empty ``{}``."""
    assert json.loads((out / "state.json").read_text()) == {}  # the state stayed
    published = json.loads((out / "published.json").read_text())
    assert isinstance(published, dict)
    return published


def by_name(published: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["name"]: q for q in published["quantities"]}


def one_way(quantity: dict[str, Any]) -> dict[str, int | None]:
    """A one-way frequency table as {row: count} (``None``: suppressed)."""
    return {row: cells[0] for row, cells in zip(quantity["rows"], quantity["counts"], strict=True)}


def assert_cohort_released_matches_pooled(
    published: dict[str, Any], frames: list[pd.DataFrame]
) -> int:
    """Every number the cohort train released equals pandas on the pooled rows (exactly for
    counts, to 1e-9 for means and sds); every count below k was suppressed, and every
    suppressed cell is in the release report. Returns how many cells were suppressed."""
    pooled = pooled_cohort_stats(frames, min_cell=0)
    q = by_name(published)
    assert one_way(q["rows"]) == {"all": pooled["rows"]}
    for col, p in pooled["numeric"].items():
        for stat, key in (("mean", "mean"), ("sd", "std")):
            got = q[f"{col}/{stat}"]
            assert got["n"] == p["count"], (col, stat)
            assert math.isclose(got["value"], p[key], rel_tol=1e-9), (col, stat)
    hidden = 0
    for col, counts in pooled["categorical"].items():
        got = one_way(q[col])
        assert set(got) == set(counts), col
        for key, count in counts.items():
            assert count is not None
            if count < K:
                assert got[key] is None, (col, key)  # primary suppression
            else:
                assert got[key] in (count, None), (col, key)  # released exactly, or secondary
            hidden += got[key] is None
    notes = [
        n for n in published["release"]["suppressed"] if n["quantity"] in pooled["categorical"]
    ]
    assert len(notes) == hidden
    return hidden
