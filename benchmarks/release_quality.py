"""The release rules in the quality benchmark (issue 12 item 5): for every reference train
run by ``benchmarks/quality.py``, what its release point publishes under the stations'
default rules (``[policy.disclosure]``), how much of it the rules suppressed, and the
largest relative difference of every released number to its exact counterpart (the
pooled fit for km, the unsuppressed federated result otherwise, which the quality table
shows equal to pooled)."""

from __future__ import annotations

from typing import Any

import numpy as np

from station.config import DisclosurePolicy

Row = dict[str, Any]


def _numbers(values: list[Any]) -> tuple[list[float], int]:
    released = [float(v) for v in values if v is not None]
    return released, len(values) - len(released)


def _rel(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-300)))


def compare(train: str, published: dict[str, Any], full: dict[str, Any], fitted: Any) -> Row:
    """One row: quantities, released and suppressed numbers, worst relative difference."""
    quantities = published["quantities"]
    released = suppressed = 0
    worst = 0.0
    for q in quantities:
        kind = q["type"]
        if kind == "regression":
            coef = full["coefficients"]
            got, hidden = _numbers(q["coefficients"] + q["standard_errors"])
            if not hidden:
                want = [coef[t]["estimate"] for t in q["terms"]] + [
                    coef[t]["se"] for t in q["terms"]
                ]
                worst = max(worst, _rel(got, want))
        elif kind == "survival_curve":
            label = q["name"].split("/", 1)[1]
            got, hidden = list(q["survival"]), len(full["curves"][label]["time"]) - len(q["times"])
            if fitted is not None and got:
                want = fitted[label].survival_function_.loc[q["times"]].iloc[:, 0].to_numpy()
                worst = max(worst, _rel(got, list(want)))
            hidden = max(hidden, 0)
        elif kind == "model_parameters":
            got, hidden = _numbers(q["weights"])
            if q["name"] == "model/weights" and not hidden:
                model = full["model"]
                want = [*np.ravel(model["intercept"]), *np.ravel(model["coef"])]
                worst = max(worst, _rel(got, want))
        elif kind in ("frequency_table", "magnitude_table"):
            got, hidden = _numbers([c for row in q["counts"] for c in row])
        else:
            got, hidden = _numbers([q["value"]])
        released += len(got)
        suppressed += hidden
    notes = len(published["release"]["suppressed"])
    return {
        "train": train,
        "quantities": len(quantities),
        "released": released,
        "suppressed": suppressed,
        "notes": notes,
        "worst": worst,
    }


def release_rows(
    published: dict[str, dict[str, Any]], full: dict[str, dict[str, Any]], km_fitted: Any
) -> list[Row]:
    return [
        compare(train, published[train], full[train], km_fitted if train == "km" else None)
        for train in sorted(published)
    ]


def release_markdown(rows: list[Row]) -> str:
    policy = DisclosurePolicy()
    lines = [
        "",
        "## What the release point publishes (issue 12)",
        "",
        f"Under the stations' default rules (k = {policy.k}, min residual df = "
        f"{policy.min_df}): numbers released and suppressed (a suppressed survival step "
        "counts once), suppression notes in the release report, and the largest relative "
        "difference of a released number to the exact one (km: lifelines on the pooled "
        "data; others: the unsuppressed federated result, equal to pooled above).",
        "",
        "| train | quantities | numbers released | suppressed | notes | released vs exact |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['train']} | {r['quantities']} | {r['released']} | {r['suppressed']} | "
            f"{r['notes']} | {r['worst']:.1e} |"
        )
    return "\n".join(lines) + "\n"
