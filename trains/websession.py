"""Sessions, CSRF tokens and the login limit of a web page's users, kept in memory: the
station console and central's dashboard both use them.

Every visitor gets a session (a random id in an HttpOnly, SameSite=Strict cookie) with its
own CSRF token, before logging in too, so the login form is protected like every other;
logging in replaces the session id (no fixation). A session ends ``session_minutes`` after
it was last used. After ``MAX_FAILURES`` wrong passwords within ``WINDOW_S`` for one user
name, or from one client address, logins are refused for ``LOCK_S`` even with the right
password. A restart of the serving process ends every session (nothing to steal from disk).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

MAX_FAILURES = 5
WINDOW_S = 15 * 60.0
LOCK_S = 15 * 60.0
MAX_SESSIONS = 10_000  # a flood of anonymous visits cannot grow memory without bound


@dataclass
class Session:
    id: str
    csrf: str
    expires: float
    user: str | None = None
    # what the user logged in with, when each request must check it again (central's
    # dashboard re-authenticates the API token, so a revoked token ends its sessions)
    secret: str | None = None


@dataclass
class Sessions:
    """Sessions by id, and the failed logins the limit counts."""

    lifetime_s: float
    # least recently used first: a use moves a session to the end, so expired sessions and
    # the oldest anonymous one are found at the front (a full table costs O(1) per visit)
    _by_id: OrderedDict[str, Session] = field(default_factory=OrderedDict)
    _failures: OrderedDict[str, list[float]] = field(default_factory=OrderedDict)  # oldest first
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get_or_start(self, sid: str | None) -> Session:
        """The live session with this id, or a new anonymous one."""
        now = time.monotonic()
        with self._lock:
            session = self._by_id.get(sid or "")
            if session is not None and session.expires > now:
                session.expires = now + self.lifetime_s
                self._by_id.move_to_end(session.id)
                return session
            self._by_id.pop(sid or "", None)
            self._drop_expired(now)
            if len(self._by_id) >= MAX_SESSIONS:  # still full: forget the oldest anonymous
                oldest = next((s for s in self._by_id.values() if s.user is None), None)
                if oldest is not None:
                    del self._by_id[oldest.id]
            session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), 0.0)
            session.expires = now + self.lifetime_s
            self._by_id[session.id] = session
            return session

    def log_in(self, old: Session, user: str, secret: str | None = None) -> Session:
        """A new session for ``user`` in place of ``old``."""
        with self._lock:
            self._by_id.pop(old.id, None)
            session = Session(
                secrets.token_urlsafe(32),
                secrets.token_urlsafe(32),
                time.monotonic() + self.lifetime_s,
                user,
                secret,
            )
            self._by_id[session.id] = session
            return session

    def end(self, session: Session) -> None:
        """Forget ``session`` (log out)."""
        with self._lock:
            self._by_id.pop(session.id, None)

    def locked(self, *keys: str) -> bool:
        """Too many recent failures for any of ``keys`` (a user name, a client address)."""
        now = time.monotonic()
        with self._lock:
            for key in keys:
                recent = [t for t in self._failures.get(key, []) if now - t < WINDOW_S]
                if len(recent) >= MAX_FAILURES and now - recent[-1] < LOCK_S:
                    return True
            return False

    def failed(self, *keys: str) -> None:
        """Count one failed login against each of ``keys``."""
        now = time.monotonic()
        with self._lock:
            # the stale go first (the least recent are at the front); a table still full
            # forgets its oldest count: the memory stays bounded under a flood of names
            while self._failures:
                key, times = next(iter(self._failures.items()))
                if now - times[-1] < LOCK_S and len(self._failures) < MAX_SESSIONS:
                    break
                del self._failures[key]
            for key in keys:
                self._failures.setdefault(key, []).append(now)
                self._failures.move_to_end(key)
                del self._failures[key][:-MAX_FAILURES]

    def succeeded(self, *keys: str) -> None:
        """Forget the failures of ``keys`` after a successful login."""
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

    def _drop_expired(self, now: float) -> None:
        """Expired sessions, from the front (every session lives ``lifetime_s`` past its
        last use, so the least recently used expire first)."""
        while self._by_id:
            first = next(iter(self._by_id.values()))
            if first.expires > now:
                return
            del self._by_id[first.id]


def csrf_ok(session: Session, given: str | None) -> bool:
    """``given`` is this session's CSRF token (compared in constant time)."""
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())
