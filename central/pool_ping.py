"""Ping a pooled PostgreSQL connection before use only when it sat idle a while.

``pool_pre_ping`` pings on every checkout: one more round trip for every transaction, about
one in six of a submit's and a claim's round trips (issue 15 item 5). A connection that was
in use a moment ago is almost surely alive, and one that died since (the server restarted
within that moment) fails its statement, which SQLAlchemy sees as a disconnect: it
invalidates every pooled connection, so that request fails (one hop, retried by its
station) and the next ones connect afresh. A connection idle for ``IDLE_S`` or longer (a
quiet night, a server restarted meanwhile) is pinged first, as ``pool_pre_ping`` would,
and replaced, with every older one, if the ping fails.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

IDLE_S = 5.0
_IDLE_SINCE = "pht_idle_since"


def ping_when_idle(engine: Engine) -> None:
    """Install the checkin/checkout listeners on ``engine``'s pool."""
    dialect = engine.dialect

    @event.listens_for(engine.pool, "checkin")
    def _idle_from(dbapi_conn: Any, record: Any) -> None:
        if dbapi_conn is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < IDLE_S:
            return  # a new connection, or one in use a moment ago
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_conn, None):
                # as pool_pre_ping: this and every older connection is replaced
                raise exc.InvalidatePoolError() from None
            raise
