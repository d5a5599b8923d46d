"""What one daemon step's queue work costs as a station's history grows (issue 15 item 5).

A hospital's station keeps the record of every hop it was ever offered, for years; the
daemon's loop must cost O(open hops), not O(history). For each history size N, in a fresh
state folder with the same few open hops (pending, waiting for the admin), N ended records
(a third each: done, quarantined, failed and reported) are written through the queue, then
one loop pass's queue work is timed, with real files and real records:

  step       Station.step against a central with nothing to offer (drop_cancelled,
             give_back, the sealed / refused / approved passes, the offer poll)
  long_poll  daemon.long_poll (is any hop pending?)
  heartbeat  the heartbeat thread's scan of the hops whose lease it keeps
  peak MB    tracemalloc's peak during one more step: what the step holds at once

The baseline is the same work with N = 0, measured in the same run; the ratio is the
median at N over the median at 0. Pure Python, no Docker, no central (the central stub
answers "no offer" only: the step's own work is what is measured).

    python3 benchmarks/station_queue.py                     # N = 0, 1000, 10000
    python3 benchmarks/station_queue.py --sizes 0 1000 --repeat 20 --open 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from station.audit import AuditLog  # noqa: E402
from station.daemon import Heartbeat, Station, long_poll  # noqa: E402
from station.queue import HopQueue, HopRecord, HopState  # noqa: E402
from tests.factories import make_offer, manual_station  # noqa: E402


class NoOffers:
    """Central with an empty queue: ``next_hop`` answers nothing at once."""

    def next_hop(self, wait: float = 0) -> None:
        return None


def build(root: Path, ended: int, open_hops: int) -> Station:
    """A state folder with ``open_hops`` pending hops and ``ended`` ended ones."""
    config, envelope, here = manual_station(root)
    queue = HopQueue(config.state_dir)

    def record(state: HopState, **fields: Any) -> HopRecord:
        offer = make_offer(str(uuid.uuid4()), 0, envelope)
        return HopRecord.from_offer(offer, state, **fields)

    kinds = [
        {"state": HopState.DONE},
        {"state": HopState.QUARANTINED, "reason": "central would not hear", "reported": False},
        {"state": HopState.FAILED, "reason": "the run failed", "reported": True},
    ]
    for index in range(ended):
        queue.save(record(**kinds[index % 3]))  # type: ignore[arg-type]
    for _ in range(open_hops):
        queue.save(record(HopState.PENDING))
    return Station(config, here, queue, AuditLog(queue.root / "audit.jsonl"))


def measure(station: Station, repeat: int) -> dict[str, float]:
    """Median seconds of each part of one pass, over ``repeat`` passes."""
    central: Any = NoOffers()
    beat = Heartbeat(station)
    times: dict[str, list[float]] = {"step": [], "long_poll": [], "heartbeat": []}
    station.step(central, 0)  # untimed: the first pass of a process warms its caches
    for _ in range(repeat):
        start = time.perf_counter()
        station.step(central, 0)
        times["step"].append(time.perf_counter() - start)
        start = time.perf_counter()
        long_poll(station.config, station.queue)
        times["long_poll"].append(time.perf_counter() - start)
        start = time.perf_counter()
        beat.held()
        times["heartbeat"].append(time.perf_counter() - start)
    medians = {part: statistics.median(values) for part, values in times.items()}
    tracemalloc.start()  # what one pass holds at its peak: grows with what it reads at once
    station.step(central, 0)
    medians["peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--open", type=int, default=5, help="pending hops in every folder")
    args = parser.parse_args()
    sizes = sorted(set([0, *args.sizes]))
    results: dict[int, dict[str, float]] = {}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="pht-queue-bench-") as tmp:
            started = time.perf_counter()
            station = build(Path(tmp), size, args.open)
            made = time.perf_counter() - started
            results[size] = measure(station, args.repeat)
        print(f"  N={size:>6}: folder written in {made:.1f} s", file=sys.stderr)
    base = results[0]
    print(f"open hops {args.open}, median of {args.repeat} passes; ratio = time at N / at N=0")
    print(
        f"{'ended N':>8} {'step ms':>9} {'ratio':>7} {'poll ms':>9} {'ratio':>7} "
        f"{'beat ms':>9} {'ratio':>7} {'step peak MB':>9}"
    )
    for size in sizes:
        row = results[size]
        cells = [
            f"{row[p] * 1000:9.2f} {row[p] / base[p]:7.1f}"
            for p in ("step", "long_poll", "heartbeat")
        ]
        print(f"{size:>8} " + " ".join(cells) + f" {row['peak_mb']:9.2f}")
    with open("/proc/loadavg") as handle:
        print(f"load average: {handle.read().strip()}")


if __name__ == "__main__":
    main()
