"""The console's sessions, CSRF tokens and login limit: shared with central's dashboard,
so they live in ``trains.websession`` (central may not import station)."""

from trains.websession import (
    LOCK_S,
    MAX_FAILURES,
    MAX_SESSIONS,
    WINDOW_S,
    Session,
    Sessions,
    csrf_ok,
)

__all__ = ["LOCK_S", "MAX_FAILURES", "MAX_SESSIONS", "WINDOW_S", "Session", "Sessions", "csrf_ok"]
