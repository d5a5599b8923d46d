"""DP for a Kaplan-Meier curve: noise on who leaves at each step, not on the at-risk column.

One patient is at risk at every step up to the one where they leave, so noising the at-risk
numbers directly would need noise as large as the curve is long. Instead the curve is
written as its *exits* (how many leave the risk set after each step; the last step's exits
are all still at risk there) and its events: one patient adds one to one exit cell and at
most one to one event cell, so each vector has sensitivity 1. The at-risk numbers are then
the noisy exits summed from the end, made never negative and never growing (a running
maximum from the end: post-processing), and each step's events clipped to those at risk.
Survival, the median and quantiles are recomputed from the noisy curve, so nothing exact
reaches them. The noise on at-risk grows with the number of steps summed: a coarse time
grid (fewer steps) is far more accurate under DP (benchmarks/quality.py, bench_dp).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from station.privacy_noise import Share, noisy_counts
from trains.published import SurvivalCurve


def exits(at_risk: list[int]) -> list[int]:
    """How many leave the risk set after each step (the last step: all still at risk)."""
    return [a - b for a, b in itertools.pairwise(at_risk)] + at_risk[-1:]


def noisy_curve(curve: SurvivalCurve, share: Share) -> SurvivalCurve:
    """The curve with noise on its exits and events (two parts of the release's budget)."""
    # summed before any clipping: clipping each small exit count at 0 first would add a
    # bias per step that the sum piles up (measured: +130 at risk at ε = 1 on lung)
    raw = list(itertools.accumulate(reversed(noisy_counts(exits(curve.at_risk), share))))
    # never negative, never growing over time: the running maximum from the end
    at_risk = list(itertools.accumulate((max(0, n) for n in raw), max))[::-1]
    events = [
        min(max(0, e), n) for e, n in zip(noisy_counts(curve.events, share), at_risk, strict=True)
    ]
    survival = survival_of(at_risk, events)
    quantiles = {key: _quantile(curve.times, survival, key) for key in curve.quantiles}
    return replace(
        curve,
        at_risk=at_risk,
        events=events,
        survival=survival,
        median=survival_time(curve.times, survival, 0.5),
        quantiles=quantiles,
    )


def survival_of(at_risk: list[int], events: list[int]) -> list[float]:
    """Kaplan-Meier's product over the steps (a step with nobody at risk changes nothing)."""
    out, level = [], 1.0
    for n, d in zip(at_risk, events, strict=True):
        level *= 1 - d / n if n > 0 else 1.0
        out.append(level)
    return out


def survival_time(times: list[float], survival: list[float], level: float) -> float | None:
    """The first time the curve is at or below ``level``, or None when the released curve
    never gets there."""
    for t, s in zip(times, survival, strict=True):
        if s <= level:
            return t
    return None


def _quantile(times: list[float], survival: list[float], key: str) -> float | None:
    """The quantile ``key`` of survival time: when a fraction ``key`` has had the event
    (the curve at or below 1 - key), as station.disclosure_rules labels them."""
    try:
        q = float(key)
    except ValueError:
        return None  # a key that is no level cannot be recomputed, so nothing is released
    return survival_time(times, survival, 1 - q) if 0 < q < 1 else None
