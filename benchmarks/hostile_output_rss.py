"""The station daemon's memory on a hostile output: what a hop's output costs the daemon.

A train writes ``--size-mb`` of ``[[],[],...]`` (the densest JSON in objects per byte) as
its declared output; the daemon runs on it exactly what it runs after a container exits:
disclosure control (``station.disclosure.check_output``, whose parsing happens in a
resource-limited child process), packing and sealing to the next reader, all streamed.
Measured: the daemon process's peak RSS (``ru_maxrss``) before and after (the child's is
capped by its own limit, 512 MiB). Cases:

  json        state.json, not a count file: it travels, its summary says "not summarised"
  count-json  the same bytes as stats.counts.json: refused (a count file must be parsed)
  count-csv   a count CSV of small rows: streamed through the child, small counts blanked

Before the child process (issue 10, reproduction 6), 39 MB of this JSON took the daemon
from 66 MB to 639 MB RSS.

    python3 benchmarks/hostile_output_rss.py                  # 1024 MB, every case
    python3 benchmarks/hostile_output_rss.py --size-mb 64 --cases json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CASES = ("json", "count-json", "count-csv")


def write_hostile(path: Path, size_mb: int, kind: str) -> None:
    chunk_items = 1 << 20
    target = size_mb << 20
    with path.open("w") as handle:
        if kind == "csv":
            handle.write("ward,count\n")
            line = "w,3\n" * chunk_items
            written = 0
            while written < target:
                handle.write(line)
                written += len(line)
            return
        handle.write("[")
        block = "[]," * chunk_items
        written = 1
        while written + len(block) < target:
            handle.write(block)
            written += len(block)
        handle.write("[]]")


def one(case: str, size_mb: int) -> dict[str, Any]:
    from station.config import DisclosurePolicy
    from station.disclosure import check_output
    from trains import state_codec
    from trains.errors import PhtError
    from trains.keys import Identity
    from trains.sealing import output_context, seal_file

    name = {"json": "state.json", "count-json": "stats.counts.json"}.get(case, "w.counts.csv")
    with tempfile.TemporaryDirectory() as root:
        out = Path(root) / "output"
        out.mkdir()
        write_hostile(out / name, size_mb, "csv" if case == "count-csv" else "json")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        outcome = "sealed"
        try:
            summary = check_output(out, [name], (size_mb + 1) << 20, DisclosurePolicy())
            shape = summary.files[0].shape
            archive = Path(root) / "output.tar"
            with archive.open("wb") as target:
                state_codec.pack_to(out, [name], (size_mb + 1) << 20, target)
            reader = Identity.generate("next-stop").public
            seal_file(archive, Path(root) / "output.sealed", [reader], output_context("t", 0))
        except PhtError as exc:
            outcome, shape = f"refused: {type(exc).__name__}", str(exc)[:90]
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "case": case,
        "size_mb": size_mb,
        "outcome": outcome,
        "shape_or_reason": shape,
        "daemon_peak_before_mb": round(before / 1024, 1),
        "daemon_peak_after_mb": round(after / 1024, 1),
        "daemon_growth_mb": round((after - before) / 1024, 1),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a fresh process per case, so each peak is that case's own
        print(json.dumps(one(args.one, args.size_mb)))
        return
    for case in args.cases:
        result = subprocess.run(
            [sys.executable, __file__, "--one", case, "--size-mb", str(args.size_mb)],
            capture_output=True,
            text=True,
            check=True,
        )
        print(result.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
