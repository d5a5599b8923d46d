"""Dispatch latency with many long-polling stations.

N stations hold long polls (``POST /api/v1/hops/next?wait=20``) on one central; a researcher
submits M one-stop trains one after another, each to a random station. Latency is from the
start of the submit request to the station holding the offer. Baseline, same run and same
client: a raw ``/healthz`` round trip. Also prints central's CPU time for the whole run.

    python3 benchmarks/central_dispatch.py [--stations 200] [--trains 200] [--postgres]
    python3 benchmarks/central_dispatch.py --stations 100 --trains 50 --concurrent 50 --postgres
        (issue 15 item 5: 100 stations, 50 trains at once; target dispatch p99 < 100 ms)
    ... --processes 2: two central processes on the one PostgreSQL (LISTEN/NOTIFY wakes
        across them), stations and submits spread over both, CPU summed
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path
from typing import Any

import httpx
from central_common import (  # run as: python3 benchmarks/central_dispatch.py
    cpu_seconds,
    healthz_round_trips,
    percentile,
    register,
    signed_manifest,
    start_central,
    summary,
)

from trains.keys import Identity


async def run(args: argparse.Namespace) -> None:
    database_url = ""
    if args.postgres:
        from central.testing_pg import fresh_database

        database_url = fresh_database()
    if args.processes > 1 and not args.postgres:
        raise SystemExit("--processes > 1 needs --postgres (they share its database)")
    servers = [start_central(database_url=database_url) for _ in range(args.processes)]
    server = servers[0]
    pids = [s.process.pid for s in servers if s.process is not None]
    try:
        researcher = Identity.generate("alice")
        stations = [Identity.generate(f"s{i:04d}") for i in range(args.stations)]
        (r_token,) = register(server, "researcher", [researcher])
        s_tokens = register(server, "station", stations)
        envelopes = {}
        for i in range(args.trains):
            station = random.Random(i).choice(stations)
            envelopes[i] = (station, signed_manifest(researcher, [station]))
        baseline = healthz_round_trips(server.url)
        received: dict[str, float] = {}
        submitted: dict[str, float] = {}
        answered: dict[str, float] = {}  # the submit's response arrived
        submit_rtt: list[float] = []
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=args.stations + 50, max_keepalive_connections=None)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            # several processes: station i polls process i % N, train j goes to j % N
            urls = [s.url for s in servers]

            async def station_loop(token: str, base: str) -> None:
                headers = {"Authorization": f"Bearer {token}"}
                while not stop.is_set():
                    response = await http.post(f"{base}/api/v1/hops/next?wait=20", headers=headers)
                    if response.status_code == 200:
                        received[response.json()["train_id"]] = time.perf_counter()

            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            started = time.perf_counter()
            loops = [
                asyncio.create_task(station_loop(t, urls[i % len(urls)]))
                for i, t in enumerate(s_tokens)
            ]
            await asyncio.sleep(2.0)  # every station is now waiting in its long poll
            headers = {"Authorization": f"Bearer {r_token}"}

            async def submit(envelope: Any, base: str) -> None:
                t0 = time.perf_counter()
                response = await http.post(
                    f"{base}/api/v1/trains",
                    json={"manifest": envelope.model_dump(mode="json")},
                    headers=headers,
                )
                t1 = time.perf_counter()
                submit_rtt.append(t1 - t0)
                submitted[response.json()["train_id"]] = t0
                answered[response.json()["train_id"]] = t1

            batch = max(args.concurrent, 1)  # trains submitted at once
            queue = [envelope for _, envelope in envelopes.values()]
            for at in range(0, len(queue), batch):
                await asyncio.gather(
                    *(
                        submit(e, urls[(at + j) % len(urls)])
                        for j, e in enumerate(queue[at : at + batch])
                    )
                )
                await asyncio.sleep(args.gap_ms / 1000)
            deadline = time.perf_counter() + 30
            while len(received) < args.trains and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            wall = time.perf_counter() - started
            cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
            stop.set()
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        latency = [received[t] - submitted[t] for t in submitted if t in received]
        # the hop is queued when the submit commits, shortly before its response: from the
        # response to the offer is central's dispatch alone, without the submit's own wait
        after = [received[t] - answered[t] for t in answered if t in received]
        print(f"central dispatch: {args.stations} long-polling stations, {args.trains} trains")
        print(f"  database                 {'PostgreSQL' if args.postgres else 'SQLite (WAL)'}")
        print(f"  central processes        {len(servers)}")
        print(f"  baseline /healthz RTT    {summary(baseline)}")
        print(f"  submit request RTT       {summary(submit_rtt)}")
        print(f"  submit start -> offer    {summary(latency)}")
        print(f"  submit answer -> offer   {summary(after)}")
        ratio = percentile(latency, 50) / percentile(baseline, 50)
        print(f"  ratio p50 dispatch/healthz {ratio:.1f}x")
        print(f"  delivered                {len(latency)}/{args.trains}")
        print(f"  central CPU              {cpu:.2f} s over {wall:.1f} s wall")
        print(f"  load average             {Path('/proc/loadavg').read_text().split()[0]}")
    finally:
        for each in servers:
            each.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--trains", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=20.0, help="pause between submits")
    parser.add_argument(
        "--concurrent", type=int, default=1, help="trains submitted at once (e.g. 50)"
    )
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL")
    parser.add_argument(
        "--processes", type=int, default=1, help="central processes on one PostgreSQL"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
