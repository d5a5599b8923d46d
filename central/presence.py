"""When each station last asked for work, and the software version it says it runs.

A station long-polls ``/hops/next`` whether or not there is work, so the poll is its sign
of life; an idle station is "seen" as often as a busy one. The version is the station's own
word (its ``X-PHT-Version`` header): stored only when it looks like a version, so a page
never shows a string a caller chose. Writes are throttled per station and process: one
row update per ``WRITE_EVERY_S`` at most, however often a station polls.
"""

from __future__ import annotations

import re
import threading
import time

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from central.db import Party, utcnow
from central.identities import Caller

HEADER = "X-PHT-Version"
WRITE_EVERY_S = 5.0
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+-]{0,31}")


def reported_version(header: str | None) -> str | None:
    """The header's version if it is one (PEP 440-like characters, <= 32), else None."""
    if header is None or _VERSION.fullmatch(header) is None:
        return None
    return header


class Presence:
    """Records a station's polls in its ``parties`` row (``last_seen_at``, ``version``)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._written: dict[int, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def due(self, caller: Caller, header: str | None) -> bool:
        """Whether :meth:`seen` would write now (no database): a poll whose write is not
        due skips the thread pool, where it would queue behind busy requests."""
        version = reported_version(header)
        with self._lock:
            last = self._written.get(caller.id)
        return last is None or time.monotonic() - last[0] >= WRITE_EVERY_S or last[1] != version

    def seen(self, caller: Caller, header: str | None) -> None:
        """``caller`` (a station) polled now, sending ``header`` as its version."""
        version = reported_version(header)
        now = time.monotonic()
        with self._lock:
            last = self._written.get(caller.id)
            if last is not None and now - last[0] < WRITE_EVERY_S and last[1] == version:
                return
            self._written[caller.id] = (now, version)
        with self.sessions.begin() as db:
            db.execute(
                update(Party)
                .where(Party.id == caller.id)
                .values(last_seen_at=utcnow(), version=version)
            )

    def forget(self) -> None:
        """Write on the next poll of every station (after a restore, or in tests)."""
        with self._lock:
            self._written.clear()
