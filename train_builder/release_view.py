"""The release report a researcher reads: ``published.json``'s quantities and what the
releasing station's rules suppressed (``pht-train result``; ``pht-train test`` shows the
same for the stations' default rules, before anything is submitted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trains.published import PUBLISHED_FILE
from trains.text import printable

QUANTITY_CHARS = 160  # one line per quantity; --out DIR keeps the whole file


def read_published(folder: Path) -> dict[str, Any] | None:
    path = folder / PUBLISHED_FILE
    loaded = json.loads(path.read_text()) if path.is_file() else None
    return loaded if isinstance(loaded, dict) else None


def show_release(document: dict[str, Any] | None) -> None:
    """Print the released quantities and the release report of a ``published.json``."""
    if document is None:
        return
    quantities = document.get("quantities", [])
    report = document.get("release", {})
    print(f"released {len(quantities)} typed quantities ({PUBLISHED_FILE}):")
    for q in quantities:
        body = {k: v for k, v in q.items() if k not in ("name", "type")}
        if q["type"] == "survival_curve":  # the summary first; the steps are in the file
            body = {"median": q["median"], "quantiles": q["quantiles"], "steps": len(q["times"])}
        text = json.dumps(body)
        if len(text) > QUANTITY_CHARS:
            text = text[: QUANTITY_CHARS - 3] + "..."
        print(f"  {printable(q['name']):<28} {q['type']:<17} {printable(text)}")
    rules = ", ".join(f"{k}={v}" for k, v in sorted(report.get("rules", {}).items()))
    suppressed = report.get("suppressed", [])
    print(f"suppressed by the release rules ({rules}): {len(suppressed) or 'nothing'}")
    for note in suppressed:
        what, why = printable(note["what"]), printable(note["rule"])
        print(f"  {printable(note['quantity']):<28} {what}: {note['action']} ({why})")
    untyped = report.get("untyped", [])
    if untyped:
        names = ", ".join(printable(n) for n in untyped)
        held = (
            "held for the station admin's manual release"
            if report.get("held_for_manual_release")
            else 'refused under untyped = "refuse"'
        )
        print(f"untyped files (not checked by type; {held}): {names}")
