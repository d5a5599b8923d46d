"""The dashboard's sessions, in central's database: every central process (compose runs
several uvicorn workers behind one address) knows every session.

A logged-in session is a row keyed by the sha256 of its random id (the cookie's value; a
reader of the database cannot take over a session), with its own random CSRF token and the
hash of the API token it was opened with. The token itself is kept nowhere: each request
authenticates the stored hash as the API authenticates a bearer token, so a revoked,
expired or replaced token ends its sessions at once, in every process.

A visitor who has not logged in has no row (a flood of visits writes nothing): the cookie
holds a random id and the CSRF token of the login form is an HMAC of it under a key every
process reads from the database (made once, by whichever process needs it first).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, String, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from central.db import Base, as_utc, utcnow
from trains.websession import Session as WebSession

TOUCH_S = 60.0  # a session's expiry moves forward at most once a minute (one write)
_ANON, _LOGGED = "a", "s"  # the first letter of a cookie's value says which it is
_ID_CHARS = 43  # secrets.token_urlsafe(32)


class DashboardSessionRow(Base):
    """A logged-in dashboard session."""

    __tablename__ = "dashboard_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), index=True)
    user: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(), index=True)


class DashboardKeyRow(Base):
    """The key of the login form's CSRF tokens (one row)."""

    __tablename__ = "dashboard_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    key: Mapped[str] = mapped_column(String(64))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SessionStore:
    """Sessions shared through the database; ``lifetime_s`` after the last use they end."""

    def __init__(self, sessions: sessionmaker[Session], lifetime_s: float) -> None:
        self.sessions = sessions
        self.lifetime = timedelta(seconds=lifetime_s)
        self._key: bytes | None = None

    def get_or_start(self, cookie: str | None) -> WebSession:
        """The live session this cookie names, or an anonymous one (the same for the same
        anonymous cookie, in any process, so the login form's CSRF token holds)."""
        cookie = cookie or ""
        if len(cookie) == 1 + _ID_CHARS and cookie.startswith(_LOGGED):
            found = self._live(cookie)
            if found is not None:
                return found
        if not (len(cookie) == 1 + _ID_CHARS and cookie.startswith(_ANON)):
            cookie = _ANON + secrets.token_urlsafe(32)
        return WebSession(cookie, self._anonymous_csrf(cookie), 0.0)

    def log_in(self, user: str, token_hash: str) -> WebSession:
        """A new session (new id: no fixation) for the token with this hash."""
        sid, csrf = _LOGGED + secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        with self.sessions.begin() as db:
            db.execute(delete(DashboardSessionRow).where(DashboardSessionRow.expires_at <= now))
            db.add(
                DashboardSessionRow(
                    id_hash=_hash(sid),
                    csrf=csrf,
                    token_hash=token_hash,
                    user=user,
                    expires_at=now + self.lifetime,
                )
            )
        return WebSession(sid, csrf, 0.0, user, token_hash)

    def end(self, session: WebSession) -> None:
        """Forget ``session`` (log out, or its token no longer works)."""
        if session.user is None:
            return
        with self.sessions.begin() as db:
            db.execute(
                delete(DashboardSessionRow).where(DashboardSessionRow.id_hash == _hash(session.id))
            )

    def _live(self, sid: str) -> WebSession | None:
        now = utcnow()
        with self.sessions() as db:
            row = db.execute(
                select(
                    DashboardSessionRow.csrf,
                    DashboardSessionRow.user,
                    DashboardSessionRow.token_hash,
                    DashboardSessionRow.expires_at,
                ).where(DashboardSessionRow.id_hash == _hash(sid))
            ).first()
        if row is None or as_utc(row.expires_at) <= now:
            return None
        if as_utc(row.expires_at) - now < self.lifetime - timedelta(seconds=TOUCH_S):
            with self.sessions.begin() as db:
                db.execute(
                    update(DashboardSessionRow)
                    .where(DashboardSessionRow.id_hash == _hash(sid))
                    .values(expires_at=now + self.lifetime)
                )
        return WebSession(sid, row.csrf, 0.0, row.user, row.token_hash)

    def _anonymous_csrf(self, cookie: str) -> str:
        mac = hmac.new(self._csrf_key(), b"login-csrf|" + cookie.encode(), hashlib.sha256)
        return mac.hexdigest()

    def _csrf_key(self) -> bytes:
        if self._key is None:
            with self.sessions() as db:
                found = db.scalar(select(DashboardKeyRow.key).where(DashboardKeyRow.id == 1))
            if found is None:
                try:
                    with self.sessions.begin() as db:
                        db.add(DashboardKeyRow(id=1, key=secrets.token_hex(32)))
                except IntegrityError:  # another process made it first: use that one
                    pass
                with self.sessions() as db:
                    found = db.scalar(select(DashboardKeyRow.key).where(DashboardKeyRow.id == 1))
            assert found is not None
            self._key = bytes.fromhex(found)
        return self._key
