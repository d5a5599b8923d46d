"""Instant wake-up for long-polling stations in one central process.

A station's long poll waits on an event for its name; queuing a hop for that station rings
it. Other central processes sharing PostgreSQL ring it through ``central.wakeup``
(LISTEN/NOTIFY, with a slow database check behind it: one query for all waiting stations,
so 500 long polls cost the same as one).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class Doorbell:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, asyncio.Event] = {}
        self._lock = threading.Lock()
        self.polls_waiting = 0  # long polls inside wait() now (a gauge in /metrics)

    def event(self, station: str) -> asyncio.Event:
        """The event the next ring for ``station`` sets. Take it *before* checking the
        database, so a hop queued in between still wakes the waiter."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop is not self._loop:  # a new event loop (e.g. a restarted test client)
                self._loop, self._events = loop, {}
            return self._events.setdefault(station, asyncio.Event())

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        """True if rung, False on timeout."""
        self.polls_waiting += 1  # only ever changed on the event loop's thread
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return False
        finally:
            self.polls_waiting -= 1
        return True

    def waiting(self) -> set[str]:
        """Stations with a long poll waiting (or that waited since the last ring)."""
        with self._lock:
            return set(self._events)

    def ring(self, stations: set[str]) -> None:
        """Wake every waiter of ``stations``; safe to call from any thread."""
        if not stations:
            return
        with self._lock:
            loop = self._loop
            events = [e for s in stations if (e := self._events.pop(s, None)) is not None]
        if loop is None or not events:
            return
        with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits on it
            for event in events:
                loop.call_soon_threadsafe(event.set)
