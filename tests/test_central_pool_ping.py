"""Central's PostgreSQL pool pings a connection only after it sat idle (central.pool_ping):
a busy connection costs no extra round trip, and one the server ended while it was idle
is replaced before a request uses it. Real PostgreSQL; the idle time is shortened."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from central import pool_ping
from central.db import make_engine
from central.testing_pg import postgres_or_skip


def count_pings(engine, monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """Count the dialect's pings (the real ping still runs)."""
    calls: list[int] = []
    real = engine.dialect.do_ping

    def counted(dbapi_conn):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return calls


def end_other_backends(url: str) -> int:
    parts = make_url(url)
    with psycopg.connect(
        host=parts.host, port=parts.port, user=parts.username, dbname=parts.database
    ) as db:
        rows = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (parts.database,),
        ).fetchall()
    return len(rows)


def test_a_busy_connection_is_not_pinged(monkeypatch):
    """Seen failing with pool_pre_ping=True: 20 pings for 20 transactions."""
    engine = make_engine(postgres_or_skip())
    pings = count_pings(engine, monkeypatch)
    for _ in range(20):
        with engine.connect() as db:
            assert db.execute(text("SELECT 1")).scalar() == 1
    assert pings == []


def test_a_connection_the_server_ended_while_idle_is_replaced(monkeypatch):
    """Seen failing with the checkout ping taken out (OperationalError on the query)."""
    url = postgres_or_skip()
    engine = make_engine(url)
    monkeypatch.setattr(pool_ping, "IDLE_S", 0.2)
    pings = count_pings(engine, monkeypatch)
    with engine.connect() as db:
        db.execute(text("SELECT 1"))
    assert end_other_backends(url) >= 1  # the pooled connection, among others
    time.sleep(0.3)
    with engine.connect() as db:
        assert db.execute(text("SELECT 1")).scalar() == 1
    assert pings == [1]


def test_within_the_idle_time_a_dead_connection_fails_once_then_the_pool_is_fresh():
    """The price of not pinging a busy connection, as documented: the first statement on a
    connection the server ended a moment ago fails; the pool then connects afresh."""
    url = postgres_or_skip()
    engine = make_engine(url)
    with engine.connect() as db:
        db.execute(text("SELECT 1"))
    end_other_backends(url)
    with pytest.raises(OperationalError), engine.connect() as db:
        db.execute(text("SELECT 1"))
    with engine.connect() as db:
        assert db.execute(text("SELECT 1")).scalar() == 1
