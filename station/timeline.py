"""Where a hop's time goes at the station: one lap per step, in the order they run.

The steps are a fixed vocabulary (``trains.receipt.TimelineStep``) and the station signs
their durations in the hop's receipt, so the researcher sees them next to central's own
times (queued, claimed, delivered) in ``pht-train status --timeline`` and the route
benchmark prints them. Durations only, to 10 ms: how long a hop ran is already visible to central
(docs/threat-model.md), and no name here is the train's choice. A train steers some of
them (its run, its output's size, so copy-out and disclosure): that is the timing channel
the threat model counts, and the 10 ms grain keeps it coarse.
"""

from __future__ import annotations

import time

from trains.receipt import Phase, TimelineStep


class Stopwatch:
    """Laps of a hop: ``lap("verify")`` records the time since the previous lap."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.phases: list[Phase] = []

    def lap(self, step: TimelineStep) -> None:
        now = time.monotonic()
        self.phases.append(Phase(step=step, seconds=round(now - self._last, 2)))
        self._last = now

    def add(self, step: TimelineStep, seconds: float) -> None:
        """A step timed elsewhere (inside the runner); ``restart`` after adding them."""
        self.phases.append(Phase(step=step, seconds=round(max(seconds, 0.0), 2)))

    def restart(self) -> None:
        """The next lap starts now (the time since was recorded with ``add``)."""
        self._last = time.monotonic()

    def last(self, step: TimelineStep) -> list[Phase]:
        """Every phase, the last one, ``step``, ending now."""
        self.lap(step)
        return list(self.phases)
