"""Database round trips and CPU of one submit + its claim through central's real app on
PostgreSQL, counted rather than timed (so the machine's load cannot move them).

Counts, per train (a one-stop submit, then its station's claim), what central sends to
PostgreSQL: statements, transactions (each costs a BEGIN and a COMMIT/ROLLBACK round trip
on top of its statements), connection pings and new connections; and the app's CPU time
per train (process time, one thread). Run it with another checkout on PYTHONPATH to
compare two versions of central::

    python3 benchmarks/central_round_trips.py [--trains 50]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import httpx
from central_common import signed_manifest  # run as: python3 benchmarks/central_round_trips.py
from sqlalchemy import event

from central.api import create_app
from central.settings import CentralSettings
from central.testing_pg import fresh_database
from trains.keys import Identity


async def run(args: argparse.Namespace) -> None:
    settings = CentralSettings(data_dir=Path(tempfile.mkdtemp()), database_url=fresh_database())
    app = create_app(settings, background=False)
    service = app.state.service
    engine = service.sessions.kw["bind"]
    researcher = Identity.generate("alice")
    stations = [Identity.generate(f"s{i:04d}") for i in range(args.stations)]
    r_token = service.register("researcher", researcher.public)
    s_tokens = {s.name: service.register("station", s.public) for s in stations}
    work = []
    for i in range(args.trains + 5):
        station = random.Random(i).choice(stations)
        envelope = signed_manifest(researcher, [station])
        work.append((s_tokens[station.name], {"manifest": envelope.model_dump(mode="json")}))

    counts = {"statements": 0, "transactions": 0, "pings": 0, "connects": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(*_: object) -> None:
        counts["statements"] += 1

    @event.listens_for(engine, "begin")
    def _begin(*_: object) -> None:
        counts["transactions"] += 1

    @event.listens_for(engine.pool, "connect")
    def _connect(*_: object) -> None:
        counts["connects"] += 1

    real_ping = engine.dialect.do_ping

    def ping(dbapi_conn: object) -> bool:
        counts["pings"] += 1
        return bool(real_ping(dbapi_conn))

    engine.dialect.do_ping = ping  # counted; the real ping still runs

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://central") as http:

        async def one(token: str, body: dict[str, object]) -> None:
            answer = await http.post(
                "/api/v1/trains", json=body, headers={"Authorization": f"Bearer {r_token}"}
            )
            assert answer.status_code == 201, answer.text
            answer = await http.post(
                "/api/v1/hops/next", headers={"Authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 200, answer.text

        for token, body in work[:5]:  # warm: caches, prepared statements, pool
            await one(token, body)
        for key in counts:
            counts[key] = 0
        cpu = time.process_time()
        for token, body in work[5:]:
            await one(token, body)
        cpu = time.process_time() - cpu
    n = args.trains
    print(f"central round trips per train (submit + claim), {n} trains, PostgreSQL")
    for key, value in counts.items():
        print(f"  {key:<13} {value / n:6.2f}")
    trips = counts["statements"] + 2 * counts["transactions"] + counts["pings"]
    print(f"  round trips   {trips / n:6.2f}  (statements + 2 per transaction + pings)")
    print(f"  app CPU       {cpu / n * 1000:6.2f} ms per train (one thread, sequential)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trains", type=int, default=50)
    parser.add_argument("--stations", type=int, default=100)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
