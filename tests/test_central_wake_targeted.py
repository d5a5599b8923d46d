"""A hop queued for one station wakes only that station's long polls, in the process that
queued it and in every other central process on the same PostgreSQL (issue 15 item 5).

Two real central processes share one PostgreSQL; their slow database check runs only
every 120 s, so every wake here comes from the doorbell or a notification. Station B waits
in a long poll on each process while twenty trains are queued for station A (which is not
polling): no process may wake a poll (``pht_long_poll_wakes_total`` stays flat), because a
woken poll runs one claim query, and waking every station per submit made 100 idle
stations cost 100 queries per train. B's polls end at their timeout with 204; A's next poll
on the other process is woken at once and gets the first train.
"""

from __future__ import annotations

import threading
import time

import httpx

from central.testing_pg import postgres_or_skip
from central.testing_server import CentralServer
from tests.test_central_notify import SLOW_CHECK, gauge, wait_for_listeners
from tests.test_central_processes import auth, register, submit
from trains.keys import Identity

WAIT_S = 12.0


def wakes(base: str) -> float:
    return gauge(base, "pht_long_poll_wakes_total")


def waiting(base: str) -> float:
    return gauge(base, "pht_long_polls_waiting")


class Poll(threading.Thread):
    def __init__(self, base: str, token: str) -> None:
        super().__init__()
        self.base, self.token = base, token
        self.status = 0
        self.train_id = ""
        self.took_s = 0.0

    def run(self) -> None:
        began = time.monotonic()
        answer = httpx.post(
            f"{self.base}/api/v1/hops/next?wait={WAIT_S}", headers=auth(self.token), timeout=60
        )
        self.took_s = time.monotonic() - began
        self.status = answer.status_code
        if answer.status_code == 200:
            self.train_id = answer.json()["train_id"]


def until(condition, what: str, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_hop_for_one_station_wakes_no_other_stations_long_poll(tmp_path):
    url = postgres_or_skip()
    researcher = Identity.generate("alice")
    a, b = Identity.generate("hospital-a"), Identity.generate("hospital-b")
    tokens = register(url, researcher, [a, b])
    one = CentralServer(tmp_path / "one", url, 0, *SLOW_CHECK)
    two = CentralServer(tmp_path / "two", url, 0, *SLOW_CHECK)
    try:
        one.start(180)
        two.start(180)
        wait_for_listeners(url, 2)
        b_polls = [Poll(one.url, tokens["hospital-b"]), Poll(two.url, tokens["hospital-b"])]
        for poll in b_polls:
            poll.start()
        until(lambda: waiting(one.url) == 1 and waiting(two.url) == 1, "B's polls did not wait")
        before = (wakes(one.url), wakes(two.url))

        trains = [submit(one.url, researcher, [a], tokens["alice"])[0] for _ in range(20)]
        time.sleep(1.0)  # a notification sent by the last submit has arrived by now
        assert (wakes(one.url), wakes(two.url)) == before, "a hop for A woke B's long poll"

        a_poll = Poll(two.url, tokens["hospital-a"])  # A polls now: its hop is there at once
        a_poll.start()
        a_poll.join(WAIT_S + 10)
        assert a_poll.status == 200 and a_poll.train_id == trains[0].train_id
        assert a_poll.took_s < WAIT_S / 2

        for poll in b_polls:
            poll.join(WAIT_S + 10)
            assert poll.status == 204, "B has no hop"
            assert poll.took_s >= WAIT_S - 0.5, f"B's poll ended early ({poll.took_s:.1f} s)"
        assert (wakes(one.url), wakes(two.url)) == before

        # the counter does count: a poll of A's woken by a hop for A
        a_wait = Poll(two.url, tokens["hospital-a"])
        for _ in trains[1:]:  # A claims the rest first, so its next poll waits
            httpx.post(f"{two.url}/api/v1/hops/next", headers=auth(tokens["hospital-a"]))
        a_wait.start()
        until(lambda: waiting(two.url) == 1, "A's poll did not wait")
        woken = submit(one.url, researcher, [a], tokens["alice"])[0]
        a_wait.join(WAIT_S + 10)
        assert a_wait.status == 200 and a_wait.train_id == woken.train_id
        assert a_wait.took_s < WAIT_S / 2, "A's poll was not woken by the notification"
        assert wakes(two.url) == before[1] + 1 and wakes(one.url) == before[0]
    finally:
        one.stop()
        two.stop()
