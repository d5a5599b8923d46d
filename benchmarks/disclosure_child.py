"""Disclosure control's step per hop: the parser child started cold versus the warm spare.

In process, no Docker: ``station.disclosure.check_output`` on a typical small output (a
count CSV with one small cell and a ``state.json``), alternating a cold child (started
for the check, as before issue 15's item 1) and the spare kept warm by
``station.parse_child``. Between checks the benchmark waits ``--gap`` seconds, standing in
for the container's run in a hop (the time the next spare has to start); both paths wait
the same. Prints median and p90 per path and the warm/cold ratio of the same run, with the
load average (the machine is shared).

    python3 benchmarks/disclosure_child.py --rounds 30 --gap 0.3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from station import disclosure, parse_child
from station.config import DisclosurePolicy

MB = 1024 * 1024


def write_output(folder: Path) -> list[str]:
    """A typical small hop output: a count table and a model state."""
    rows = "".join(f"g{i},{50 + i}\n" for i in range(200)) + "rare,2\n"
    (folder / "table.counts.csv").write_text("group,n\n" + rows)
    (folder / "state.json").write_text('{"coef": [0.1, 0.2, 0.3], "round": 4}')
    return ["table.counts.csv", "state.json"]


def one_check(folder: Path, run: Callable[..., Any]) -> float:
    """Seconds for one check_output with ``run`` as the parser runner (fresh files each)."""
    declared = write_output(folder)
    saved = disclosure.run_parser
    disclosure.run_parser = run  # type: ignore[assignment]
    try:
        start = time.perf_counter()
        result = disclosure.check_output(folder, declared, MB, DisclosurePolicy())
        seconds = time.perf_counter() - start
    finally:
        disclosure.run_parser = saved  # type: ignore[assignment]
    assert result.suppressed_cells == 1, "the check did not run"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between checks")
    args = parser.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    paths = {
        "cold": partial(parse_child.run_parser, warm=False),
        "warm": parse_child.run_parser,
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        one_check(folder, paths["warm"])  # the first check starts the first spare
        time.sleep(args.gap)
        for _ in range(args.rounds):
            for name, run in paths.items():  # alternated: both see the same load
                times[name].append(one_check(folder, run))
                time.sleep(args.gap)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(f"disclosure check of a small output, {args.rounds} rounds, gap {args.gap}s")
    print(f"load average before {' '.join(load_before)}, after {' '.join(load_after)}")
    summary = {}
    for name, values in times.items():
        ordered = sorted(values)
        median = statistics.median(ordered)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        summary[name] = median
        print(f"  {name:5} median {median * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms")
    print(f"  warm/cold ratio (medians): {summary['warm'] / summary['cold']:.2f}")


if __name__ == "__main__":
    main()
