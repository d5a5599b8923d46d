"""Cost of a new anonymous visit to the station console's in-memory sessions
(trains/websession.py) when the table is full (MAX_SESSIONS live sessions: a flood of
cookie-less requests) against an empty table, in the same run.

    python benchmarks/web_sessions.py [--visits 2000]
"""

from __future__ import annotations

import argparse
import time

from trains.websession import MAX_SESSIONS, Sessions


def per_visit(sessions: Sessions, visits: int) -> float:
    started = time.perf_counter()
    for _ in range(visits):
        sessions.get_or_start(None)
    return (time.perf_counter() - started) / visits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=2000)
    args = parser.parse_args()
    empty = per_visit(Sessions(1800.0), args.visits)
    full = Sessions(1800.0)
    for _ in range(MAX_SESSIONS):
        full.get_or_start(None)
    flooded = per_visit(full, args.visits)
    print(f"new visit, empty table: {empty * 1e6:8.1f} us")
    print(f"new visit, {MAX_SESSIONS} sessions: {flooded * 1e6:8.1f} us")
    print(f"ratio full/empty: {flooded / empty:.2f}")


if __name__ == "__main__":
    main()
