"""Soak: one station daemon runs many hops of a trivial train; its memory and open file
descriptors must stay flat (issue 15 item 5).

Starts a registry, central and one station (train_builder.localnet), pushes a trivial
train once (the no-op train of tests/attack_trains, but publishing one typed count: an
untyped output at the release point would be held for the admin, ``untyped = "hold"``),
then submits --hops one-stop trains (a few at a time, so the station always has work) and
samples the daemon's RSS (VmRSS) and open file descriptors (/proc/<pid>/fd) at the start
and every --every hops; with --minutes it stops submitting when that time is up and reports
the hops it ran. Baseline, same run: the first sample, taken after the daemon's first hop
(imports and caches warm).

    python3 benchmarks/station_soak.py [--hops 1000] [--every 100] [--minutes 25]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from central.client import CentralClient
from train_builder.image import build_image, push_image
from train_builder.localnet import LocalNet
from train_builder.researcher import Researcher

REPO = Path(__file__).resolve().parents[1]
NOOP = REPO / "tests" / "attack_trains" / "noop"
TRIVIAL = '''"""The soak's trivial train: one typed count, so the station releases it."""


def local(data, state, ctx):
    ctx.publish.statistic("hops", "other", 1.0, 100)
    return {"ok": True}
'''
STATION = "soak"
IN_FLIGHT = 4  # trains submitted ahead of the station


def sample(pid: int) -> tuple[float, int]:
    """(RSS in MB, open file descriptors) of process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hops", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=0.0, help="0: no time limit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalNet(Path(tmp)) as net:
        net.start_registry()
        net.start_central()
        alice, _, token = net.add_researcher("soak")
        net.add_station(STATION, {}, trusted=[alice])
        net.start_station(STATION)
        process = net.stations[STATION].process
        assert process is not None
        train = Path(tmp) / "trivial"
        train.mkdir()
        (train / "train.toml").write_text((NOOP / "train.toml").read_text())
        (train / "train.py").write_text(TRIVIAL)
        _, tag = build_image(train, net.registry)
        image = push_image(tag)
        client = CentralClient(net.central_url, token.read_text().strip())
        researcher = Researcher(alice, client, trust=net.trust())
        pending: list[str] = []
        samples: list[tuple[int, float, float, int]] = []
        started = time.monotonic()
        done = submitted = 0
        budget = args.minutes * 60 or float("inf")
        while True:
            out_of_time = time.monotonic() - started > budget
            while submitted < args.hops and len(pending) < IN_FLIGHT and not out_of_time:
                pending.append(researcher.submit(train, image, [STATION]))
                submitted += 1
            if not pending:  # every hop asked for ran, or the time is up and the last ran
                break
            status = researcher.wait(pending.pop(0), timeout_s=300, poll_s=0.05)
            assert status["status"] == "done", status
            done += 1
            if done == 1 or done % args.every == 0 or not pending:
                rss, fds = sample(process.pid)
                samples.append((done, time.monotonic() - started, rss, fds))
                print(
                    f"  after {done:5d} hops  {samples[-1][1]:7.0f}s  RSS {rss:7.1f} MB  fds {fds}"
                )
    first, last = samples[0], samples[-1]
    print(f"hops: {done} of {args.hops} asked; station daemon pid {process.pid}")
    print(
        f"RSS  start {first[2]:.1f} MB  end {last[2]:.1f} MB  growth {last[2] - first[2]:+.1f} MB"
    )
    print(f"fds  start {first[3]}  end {last[3]}  growth {last[3] - first[3]:+d}")
    print(f"hops per minute: {60 * done / last[1]:.1f}")


if __name__ == "__main__":
    main()
