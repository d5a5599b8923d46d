"""Where a train's time went, hop by hop: central's times (queued, claimed, finished) and
the steps each station signed in its receipt (``trains.receipt.TimelineStep``)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, get_args

from trains.receipt import HopPredicate, TimelineStep
from trains.text import printable

STEPS: tuple[str, ...] = get_args(TimelineStep)
# outside the station's steps: waiting in central's queue, and claim -> start plus
# delivery (upload, central's checks) -> central marks the hop finished
OUTSIDE = ("queued", "claim_and_delivery")


def _seconds(later: str | None, earlier: str | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def hop_breakdown(hop: dict[str, Any], predicate: HopPredicate | None) -> dict[str, float]:
    """Seconds per step of one hop: central's queue wait, the station's signed steps, and
    what remains between claim and central's finish (claim, upload, central's checks)."""
    parts: dict[str, float] = {}
    queued = _seconds(hop.get("claimed_at"), hop.get("queued_at"))
    if queued is not None:
        parts["queued"] = max(queued, 0.0)
    for phase in predicate.timeline if predicate else []:
        parts[phase.step] = parts.get(phase.step, 0.0) + phase.seconds
    held = _seconds(hop.get("finished_at"), hop.get("claimed_at"))
    if held is not None and predicate is not None and predicate.timeline:
        at_station = sum(p.seconds for p in predicate.timeline)
        parts["claim_and_delivery"] = max(held - at_station, 0.0)
    return parts


def timeline_lines(status: dict[str, Any], predicates: dict[int, HopPredicate]) -> list[str]:
    """One line per hop, then the total of each step over the route and its share."""
    lines: list[str] = []
    totals: defaultdict[str, float] = defaultdict(float)
    for hop in status["hops"]:
        parts = hop_breakdown(hop, predicates.get(hop["index"]))
        for step, seconds in parts.items():
            totals[step] += seconds
        shown = " ".join(
            f"{step} {parts[step]:.3f}" for step in (*STEPS, *OUTSIDE) if step in parts
        )
        station = printable(hop["station"])
        lines.append(f"  hop {hop['index']} {station:<16} {hop['status']:<10} {shown}")
    whole = sum(totals.values())
    if whole > 0:
        lines.append("  where the time went (all hops):")
        for step in (*OUTSIDE[:1], *STEPS, *OUTSIDE[1:]):
            if step in totals:
                share = 100 * totals[step] / whole
                lines.append(f"    {step:<19} {totals[step]:8.3f}s {share:5.1f}%")
    return lines
