"""Wake-up latency across central processes (LISTEN/NOTIFY on one PostgreSQL).

Two ``pht-central serve`` processes, A and B, share a throwaway PostgreSQL; both run their
database check only every 60 s, so only a notification wakes a poll in time. One station
long-polls; once its poll waits (``pht_long_polls_waiting``), a researcher submits a
one-stop train through A. Hops alternate between the station polling B (the cross-process
wake-up measured) and polling A itself (the baseline: the in-process ring, same run, same
load). Three measures per hop:

- submit start -> offer at the station (client clocks: the whole path, with the submit's
  own checks and signature verification, an upper bound);
- queued -> claimed, from the hop's row (``queued_at`` is written inside A's transaction
  that queues it, ``claimed_at`` when B hands it out; both from this machine's clock);
- the cross-process cost: B's numbers minus A's.

    python3 benchmarks/central_wakeup.py [--hops 200]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import httpx
from central_common import (  # run as: python3 benchmarks/central_wakeup.py
    percentile,
    register,
    signed_manifest,
    summary,
)
from sqlalchemy import select

from central.db import HopRow, as_utc, make_engine, make_sessions
from central.testing_pg import fresh_database
from central.testing_server import CentralServer
from trains.keys import Identity

CHECK = ("--poll-recheck-s", "60", "--poll-fallback-s", "60")


def start(url: str) -> CentralServer:
    data = Path(tempfile.mkdtemp(prefix="pht-bench-wakeup-"))
    return CentralServer(data, url, 0, *CHECK).start(timeout_s=300)  # slow on a busy machine


def waiting(http: httpx.Client, base: str) -> float:
    for line in http.get(f"{base}/metrics").text.splitlines():
        if line.startswith("pht_long_polls_waiting "):
            return float(line.split()[1])
    raise RuntimeError("central has no pht_long_polls_waiting gauge")


def one_hop(
    http: httpx.Client, polled: CentralServer, a: CentralServer, s_token: str, body: dict
) -> tuple[str, float]:
    """Poll ``polled``, submit through A; the train id and submit start -> offer."""
    got: list[tuple[httpx.Response, float]] = []

    def poll() -> None:
        response = http.post(
            f"{polled.url}/api/v1/hops/next?wait=30",
            headers={"Authorization": f"Bearer {s_token}"},
        )
        got.append((response, time.perf_counter()))

    thread = threading.Thread(target=poll)
    thread.start()
    while waiting(http, polled.url) < 1:
        time.sleep(0.01)
    t0 = time.perf_counter()
    submitted = http.post(f"{a.url}/api/v1/trains", json=body[0], headers=body[1])
    thread.join()
    assert submitted.status_code == 201, submitted.text
    response, t1 = got[0]
    assert response.status_code == 200, response.text
    return response.json()["train_id"], t1 - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hops", type=int, default=200)
    args = parser.parse_args()
    url = fresh_database()
    a = start(url)
    b: CentralServer | None = None
    try:
        b = start(url)
        researcher, station = Identity.generate("alice"), Identity.generate("hospital-a")
        (r_token,) = register(a, "researcher", [researcher])
        (s_token,) = register(a, "station", [station])
        headers = {"Authorization": f"Bearer {r_token}"}
        bodies = [
            ({"manifest": signed_manifest(researcher, [station]).model_dump(mode="json")}, headers)
            for _ in range(args.hops)
        ]
        polled_by: dict[str, str] = {}
        end_to_end: dict[str, list[float]] = {"A": [], "B": []}
        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=20)) as http:
            for i, body in enumerate(bodies):
                name, server = ("B", b) if i % 2 else ("A", a)  # interleaved: same load
                train_id, took = one_hop(http, server, a, s_token, body)
                polled_by[train_id] = name
                end_to_end[name].append(took)
        in_db: dict[str, list[float]] = {"A": [], "B": []}
        with make_sessions(make_engine(url, migrate=False))() as db:
            for train_id, queued, claimed in db.execute(
                select(HopRow.train_id, HopRow.queued_at, HopRow.claimed_at)
            ):
                assert queued is not None and claimed is not None
                seconds = (as_utc(claimed) - as_utc(queued)).total_seconds()
                in_db[polled_by[train_id]].append(seconds)
        print(f"central wake-up: {args.hops} hops queued through A, a station long-polling")
        print("  (DB check every 60 s: a poll is woken by a ring (A) or a NOTIFY (B))")
        for label, data in (("submit start -> offer", end_to_end), ("queued -> claimed", in_db)):
            print(f"  {label}")
            print(f"    baseline, polling A (same process)  {summary(data['A'])}")
            print(f"    polling B (other process)           {summary(data['B'])}")
            for p in (50, 99):
                cost = (percentile(data["B"], p) - percentile(data["A"], p)) * 1000
                ratio = percentile(data["B"], p) / percentile(data["A"], p)
                print(f"    p{p}: B - A = {cost:+.2f} ms, B / A = {ratio:.2f}x")
        p99 = percentile(in_db["B"], 99) * 1000
        print(f"  target: queued on A -> claimed through B, p99 < 100 ms: {p99:.1f} ms")
    finally:
        a.stop()
        if b is not None:
            b.stop()


if __name__ == "__main__":
    main()
