"""Several central processes on one PostgreSQL wake each other's long polls with
LISTEN/NOTIFY (``central.wakeup``). Every central here runs its database check only every
120 s (while its listener is connected), so a long poll of 20 s answered long before its
wait ran out was woken by a notification (seen failing with the NOTIFY taken out: every
poll answered only after its 20 s). A listener whose connection PostgreSQL kills
reconnects; a hop queued by a process that never notified is still found by the slow
check."""

from __future__ import annotations

import threading
import time

import httpx
import psycopg
from sqlalchemy.engine import make_url

from central.db import make_engine, make_sessions
from central.service import Service
from central.testing_pg import postgres_or_skip
from central.testing_server import CentralServer
from central.wakeup import LISTENER_NAME, PAYLOAD_MAX, payloads, stations_in
from tests.factories import make_manifest
from tests.test_central_processes import auth, register, submit
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE
from trains.signing import sign

SLOW_CHECK = ("--poll-recheck-s", "120", "--poll-fallback-s", "120")
POLL_S = 20.0  # well under the check: only a notification can wake the poll in time


class LongPoll(threading.Thread):
    """A station long-polling ``base``, started and waiting (found nothing) on return."""

    def __init__(self, base: str, token: str) -> None:
        super().__init__()
        self.base, self.token = base, token
        self.answer: httpx.Response | None = None
        self.took_s = 0.0
        self.start()
        deadline = time.monotonic() + POLL_S / 2
        while gauge(base, "pht_long_polls_waiting") < 1:  # it found nothing and waits now
            assert time.monotonic() < deadline, "the long poll did not start waiting"
            time.sleep(0.05)

    def run(self) -> None:
        began = time.monotonic()
        self.answer = httpx.post(
            f"{self.base}/api/v1/hops/next?wait={POLL_S}", headers=auth(self.token), timeout=60
        )
        self.took_s = time.monotonic() - began

    def answered_with(self, train_id: str) -> None:
        self.join(POLL_S + 30)
        assert self.answer is not None, "the long poll did not return"
        # the route checks once more when the wait runs out, so a poll nobody woke still
        # gets the hop, but only after POLL_S: a woken one answers long before
        assert self.took_s < POLL_S - 5, f"not woken: answered after {self.took_s:.1f} s"
        assert self.answer.status_code == 200, self.answer.text
        assert self.answer.json()["train_id"] == train_id


def gauge(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def answered_with(thread: threading.Thread, answers: list[httpx.Response], train_id: str) -> None:
    thread.join(POLL_S + 10)
    assert answers, "the long poll did not return"
    assert answers[0].status_code == 200, "the poll was not woken by the hop queued elsewhere"
    assert answers[0].json()["train_id"] == train_id


def listeners(url: str) -> list[int]:
    """Backend pids of the centrals' LISTEN connections on this database."""
    parts = make_url(url)
    with psycopg.connect(
        host=parts.host, port=parts.port, user=parts.username, dbname=parts.database
    ) as db:
        rows = db.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
            (LISTENER_NAME, parts.database),
        ).fetchall()
    return [int(r[0]) for r in rows]


def kill_listeners(url: str) -> int:
    parts = make_url(url)
    pids = listeners(url)
    with psycopg.connect(
        host=parts.host, port=parts.port, user=parts.username, dbname=parts.database
    ) as db:
        for pid in pids:
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return len(pids)


def wait_for_listeners(url: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(listeners(url)) < count:
        assert time.monotonic() < deadline, "the listeners did not (re)connect"
        time.sleep(0.1)


def hop_reaches_b(a: CentralServer, b: CentralServer, tokens, researcher, station) -> None:
    poll = LongPoll(b.url, tokens["hospital-a"])
    manifest, _ = submit(a.url, researcher, [station], tokens["alice"])
    poll.answered_with(manifest.train_id)


def test_a_hop_queued_on_one_process_wakes_a_long_poll_on_another(tmp_path):
    """Then PostgreSQL itself ends the listeners' connections (pg_terminate_backend): each
    central connects again and hears the next hops."""
    url = postgres_or_skip()
    researcher, station = Identity.generate("alice"), Identity.generate("hospital-a")
    tokens = register(url, researcher, [station])
    a = CentralServer(tmp_path / "a", url, 0, *SLOW_CHECK)
    b = CentralServer(tmp_path / "b", url, 0, *SLOW_CHECK)
    try:
        a.start(180)
        b.start(180)
        wait_for_listeners(url, 2)
        for _ in range(2):
            hop_reaches_b(a, b, tokens, researcher, station)

        old = set(listeners(url))
        assert kill_listeners(url) == 2
        deadline = time.monotonic() + 20
        while len(set(listeners(url)) - old) < 2:  # two new connections, not the killed ones
            assert time.monotonic() < deadline, "the listeners did not reconnect"
            time.sleep(0.1)
        for _ in range(2):
            hop_reaches_b(a, b, tokens, researcher, station)
        assert "lost the connection that hears other central processes" in b.log.read_text()
    finally:
        a.stop()
        b.stop()


def test_a_hop_queued_without_a_notification_is_found_by_the_slow_check(tmp_path):
    """A hop queued by something that does not notify (the NOTIFY now goes in the queuing
    transaction itself, so a crash can no longer split them; a tool writing the database,
    or a lost listener connection, still can): here the test queues it straight through
    the service, with no hooks."""
    url = postgres_or_skip()
    researcher, station = Identity.generate("alice"), Identity.generate("hospital-a")
    tokens = register(url, researcher, [station])
    service = Service(make_sessions(make_engine(url)))  # Hooks() that tell nobody
    caller = service.authenticate(tokens["alice"])
    assert caller is not None
    b = CentralServer(tmp_path / "b", url, 0, "--poll-fallback-s", "2")
    with b.start(180):
        wait_for_listeners(url, 1)
        poll = LongPoll(b.url, tokens["hospital-a"])
        manifest = make_manifest(researcher, [station])
        service.submit(caller, sign(manifest, MANIFEST_TYPE, researcher.signing), False)
        poll.answered_with(manifest.train_id)


def test_notifications_stay_under_postgres_payload_limit_and_junk_rings_nobody():
    names = {f"station-{i:03d}-" + "x" * 50 for i in range(400)}
    pieces = list(payloads("tag", names))
    assert len(pieces) > 1 and all(len(p.encode()) <= PAYLOAD_MAX for p in pieces)
    heard = set().union(*(stations_in(p, "other") for p in pieces))
    assert heard == names
    assert stations_in(pieces[0], "tag") == set()  # our own: the doorbell rang already
    assert stations_in("x " + "A" * 900 + " ../etc /x  ok-name", "tag") == {"ok-name"}
