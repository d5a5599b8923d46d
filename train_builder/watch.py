"""``pht-train watch``: a train's progress per stop, live, until it finishes.

On a terminal a rich table redraws in place; otherwise (a pipe, a log, CI) one plain line
is printed per change, so the output stays readable as text.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from train_builder.researcher import Researcher
from trains.text import printable

STYLE = {
    "waiting": "dim",
    "queued": "yellow",
    "running": "bold cyan",
    "done": "green",
    "skipped": "yellow",
    "failed": "bold red",
    "cancelled": "magenta",
    "not_needed": "dim",
}
SYMBOL = {
    "waiting": " ",
    "queued": "…",
    "running": "▶",
    "done": "✓",
    "skipped": "↷",
    "failed": "✗",
    "not_needed": "·",
}


def hop_line(hop: dict[str, Any]) -> str:
    error = f"  {printable(hop['error'])}" if hop.get("error") else ""
    kind = hop.get("kind", "local")
    return (
        f"  hop {hop['index']} round {hop['round']} {printable(hop['station']):<20} {kind:<9} "
        f"{hop['status']}{error}"
    )


def headline(status: dict[str, Any]) -> str:
    return f"train {status['train_id']} ({status['name']}): {status['status']}"


def table(status: dict[str, Any], elapsed: float) -> Table:
    done = sum(1 for h in status["hops"] if h["status"] in ("done", "skipped"))
    title = f"{headline(status)}  {done}/{len(status['hops'])} hops  {elapsed:.0f}s"
    grid = Table(title=title, title_justify="left", expand=False)
    for column in ("hop", "round", "station", "kind", "status", "reason"):
        grid.add_column(column)
    for hop in status["hops"]:
        state = hop["status"]
        grid.add_row(
            str(hop["index"]),
            str(hop["round"]),
            escape(printable(hop["station"])),
            hop.get("kind", "local"),
            f"[{STYLE.get(state, '')}]{SYMBOL.get(state, '')} {state}[/]",
            escape(printable(hop.get("error") or "")),  # words from central and stations
        )
    return grid


def watch_train(
    researcher: Researcher,
    train_id: str,
    console: Console | None = None,
    timeout_s: float = 3600,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Show progress until the train is done, failed or cancelled; return its last status."""
    console = console or Console()
    started = time.monotonic()
    if not console.is_terminal:
        return _plain(researcher, train_id, console, timeout_s, poll_s)
    final: dict[str, Any] = {}
    with Live(console=console, auto_refresh=False, transient=False) as live:
        for status in researcher.follow(train_id, timeout_s, poll_s):
            live.update(table(status, time.monotonic() - started), refresh=True)
            final = status
    _summary(console, final)
    return final


def _plain(
    researcher: Researcher, train_id: str, console: Console, timeout_s: float, poll_s: float
) -> dict[str, Any]:
    seen: dict[int, tuple[str, str | None]] = {}
    final: dict[str, Any] = {}
    for status in researcher.follow(train_id, timeout_s, poll_s):
        if not final:
            _say(console, headline(status))
        for hop in status["hops"]:
            key = (hop["status"], hop.get("error"))
            if seen.get(hop["index"]) != key:
                seen[hop["index"]] = key
                _say(console, hop_line(hop))
        final = status
    _summary(console, final)
    return final


def _summary(console: Console, status: dict[str, Any]) -> None:
    _say(console, f"train {status['train_id']}: {status['status']}")
    if status.get("error"):
        _say(console, f"  {printable(status['error'])}")
    if status["status"] == "done":
        _say(console, f"fetch and verify it: pht-train result {status['train_id']} --out DIR")


def _say(console: Console, text: str) -> None:
    """Plain text: no markup, no highlighting, and long reasons are not wrapped."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)
