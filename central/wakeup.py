"""Waking long polls across central processes that share one PostgreSQL (LISTEN/NOTIFY).

The transaction that queues a hop also sends one ``NOTIFY`` on :data:`CHANNEL` naming the
stations (``Hooks.notify``); PostgreSQL delivers it only when that transaction commits, so
a listener never hears of a hop it cannot see yet, and a hop is never committed without
its notification. After the commit the queuing process rings its own doorbell at once
(``Hooks.queued``). Every process holds one connection that ``LISTEN``\\ s there and rings
its own doorbell for the stations named, and only for them.

A notification can still be lost: the listener's connection drops (it reconnects with
backoff). So a database check still runs, slowly: every ``poll_fallback_s`` while the
listener is connected, every ``poll_recheck_s`` while it is not, at once after it
(re)connects, and always every ``poll_recheck_s`` on SQLite, which has no notifications.
A lost notification costs latency, never a hop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from central.doorbell import Doorbell
from trains.keys import valid_name

log = logging.getLogger("pht.central")

CHANNEL = "pht_hops_queued"
LISTENER_NAME = "pht-central-listener"  # its application_name in pg_stat_activity
PAYLOAD_MAX = 7000  # PostgreSQL refuses a payload of 8000 bytes or more


class Wakeups:
    """This process's side of waking long polls: ring here, tell the others, hear them."""

    def __init__(
        self,
        engine: Engine,
        doorbell: Doorbell,
        queued_stations: Callable[[set[str]], set[str]],
        recheck_s: float,
        fallback_s: float,
    ) -> None:
        self.engine = engine
        self.doorbell = doorbell
        self.queued_stations = queued_stations
        self.recheck_s = recheck_s
        self.fallback_s = max(fallback_s, recheck_s)
        self.postgres = engine.dialect.name == "postgresql"
        # our own notifications come back to our listener too: the doorbell here was rung
        # already, so the listener skips what this tag sent
        self.sender = secrets.token_hex(8)
        self.listening = False
        self._checked_at = 0.0

    def queued(self, stations: set[str]) -> None:
        """``Hooks.queued``, called after the commit that queued hops for ``stations``."""
        self.doorbell.ring(stations)

    def notify(self, db: Session, stations: set[str]) -> None:
        """``Hooks.notify``, called inside the transaction that queues hops for
        ``stations``: one more statement on its connection instead of a connection and a
        round trip of its own after the commit (issue 15 item 5)."""
        if not (self.postgres and stations):
            return
        for payload in payloads(self.sender, stations):
            db.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})

    def add_gauges(self, registry: CollectorRegistry) -> None:
        """Long polls waiting in this process, and whether its listener is connected."""
        Gauge(
            "pht_long_polls_waiting", "Long polls waiting in this process", registry=registry
        ).set_function(lambda: self.doorbell.polls_waiting)
        Gauge(
            "pht_notify_listening",
            "1 while this process hears hops queued by other central processes",
            registry=registry,
        ).set_function(lambda: float(self.listening))

    def check(self) -> None:
        """Ring every station waiting here that has a hop queued (one query for them all)."""
        self._checked_at = time.monotonic()
        self.doorbell.ring(self.queued_stations(self.doorbell.waiting()))

    async def run_checks(self) -> None:
        """The database check, forever: slow while the listener hears, fast while not."""
        while True:
            await asyncio.sleep(self.recheck_s)
            since = time.monotonic() - self._checked_at
            if self.listening and since < self.fallback_s:
                continue
            try:
                await run_in_threadpool(self.check)
            except Exception:  # a failed check must not stop the next one
                log.exception("long-poll database check failed")

    async def listen(self) -> None:
        """Hold one ``LISTEN`` connection for this process; reconnect when it is lost."""
        if not self.postgres:
            return
        args, params = self.engine.dialect.create_connect_args(self.engine.url)
        params = {"connect_timeout": 10, **params, "autocommit": True}
        params["application_name"] = LISTENER_NAME
        backoff = 0.5
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(*args, **params)
                async with connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self.listening, backoff = True, 0.5
                    log.info("listening for hops queued by other central processes")
                    await run_in_threadpool(self.check)  # queued while nobody listened
                    await self._hear(connection)
            except (psycopg.Error, OSError, TimeoutError, SQLAlchemyError) as exc:
                log.warning(
                    "lost the connection that hears other central processes (%s); "
                    "checking the database every %.1f s until it is back",
                    type(exc).__name__,
                    self.recheck_s,
                )
            finally:
                self.listening = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _hear(self, connection: psycopg.AsyncConnection[Any]) -> None:
        while True:
            # notifies() ends after `timeout`: then ask the server something, so a
            # connection that died silently is noticed (and replaced) within that time
            async for note in connection.notifies(timeout=self.fallback_s):
                self.doorbell.ring(stations_in(note.payload, self.sender))
            await asyncio.wait_for(connection.execute("SELECT 1"), timeout=10)


def payloads(sender: str, stations: set[str]) -> Iterator[str]:
    """``"<sender> <station> <station>..."`` in pieces under PostgreSQL's payload limit."""
    names = sorted(stations)
    while names:
        payload = sender
        while names and len(payload) + 1 + len(names[0].encode()) <= PAYLOAD_MAX:
            payload += " " + names.pop(0)
        yield payload


def stations_in(payload: str, own_sender: str) -> set[str]:
    """The stations a notification names; none if this process sent it. The channel is
    open to anyone who can log in to the database, so only a bounded name list is read:
    anything else is a station no long poll waits for, so it rings nothing."""
    sender, _, rest = payload[:PAYLOAD_MAX].partition(" ")
    if sender == own_sender:
        return set()
    return {name for name in rest.split(" ") if valid_name(name)}
