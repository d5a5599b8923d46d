"""Three-stop route, end to end on real parts: how long a train takes and where it goes.

Starts a registry, central and three station daemons (train_builder.localnet), pushes the
cohort train once, then runs it over the three stops N times. Baseline, measured in the
same run: the same image run three times by plain ``docker run`` with the same sandbox
flags and data (no verification, sealing, receipts or routing). Prints per-route wall
time, summed container time, and the ratio of the route to the baseline.

    python3 benchmarks/route_three_stops.py [--trains 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from central.client import CentralClient
from train_builder.image import build_image, push_image
from train_builder.localnet import LocalNet
from train_builder.researcher import Researcher
from train_builder.timeline import STEPS, hop_breakdown

REPO = Path(__file__).resolve().parents[1]
COHORT = REPO / "trains" / "reference" / "cohort"
HOSPITALS = ["hospital-a", "hospital-b", "hospital-c"]


def baseline(image: str, runs: int) -> list[float]:
    """Plain docker run of the same train on the same data, three stops in a row."""
    times = []
    for _ in range(runs):
        started = time.monotonic()
        for name in HOSPITALS:
            with tempfile.TemporaryDirectory() as tmp:
                data = Path(tmp) / "data" / "cohort"
                data.mkdir(parents=True)
                (data / "data.csv").write_bytes((COHORT / "sample" / f"{name}.csv").read_bytes())
                out = Path(tmp) / "out"
                out.mkdir(mode=0o777)
                out.chmod(0o777)
                subprocess.run(
                    [
                        "docker",
                        "run",
                        "--rm",
                        "--network",
                        "none",
                        "--read-only",
                        "--user",
                        "10001:10001",
                        "--cap-drop",
                        "ALL",
                        "--security-opt",
                        "no-new-privileges",
                        "--memory",
                        "512m",
                        "-v",
                        f"{data.parent}:/pht/data:ro",
                        "-v",
                        f"{out}:/pht/output",
                        "-e",
                        "PHT_LAST_HOP=0",
                        image,
                    ],
                    check=True,
                    capture_output=True,
                )
        times.append(time.monotonic() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trains", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalNet(Path(tmp)) as net:
        net.start_registry()
        net.start_central()
        alice, _, token = net.add_researcher("bench")
        for name in HOSPITALS:
            net.add_station(name, {"cohort": COHORT / "sample" / f"{name}.csv"}, trusted=[alice])
            net.start_station(name)
        started = time.monotonic()
        _, tag = build_image(COHORT, net.registry)
        image = push_image(tag)
        print(f"build+push (first, includes base layers): {time.monotonic() - started:.1f}s")
        client = CentralClient(net.central_url, token.read_text().strip())
        researcher = Researcher(alice, client, trust=net.trust())
        walls, containers = [], []
        steps: dict[str, list[float]] = defaultdict(list)  # per hop, over every route
        for i in range(args.trains):
            started = time.monotonic()
            train_id = researcher.submit(COHORT, image, HOSPITALS)
            status = researcher.wait(train_id, poll_s=0.05)
            wall = time.monotonic() - started
            assert status["status"] == "done", status
            result = researcher.result(train_id, Path(tmp) / f"r{i}")
            walls.append(wall)
            containers.append(sum(h.container_seconds for h in result.hops))
            now, signed = researcher.timeline(train_id)
            for hop in now["hops"]:
                for step, seconds in hop_breakdown(hop, signed.get(hop["index"])).items():
                    steps[step].append(seconds)
        base = baseline(image.reference, args.trains)
    print(f"routes: {args.trains}, stops per route: 3 (station poll interval 0.2 s)")
    print(
        f"route wall time     median {statistics.median(walls):6.2f}s  "
        f"min {min(walls):.2f}s  max {max(walls):.2f}s"
    )
    print(f"container time      median {statistics.median(containers):6.2f}s (sum of 3 hops)")
    print(f"baseline docker run median {statistics.median(base):6.2f}s (3 plain runs)")
    overhead = (statistics.median(walls) - statistics.median(containers)) / 3
    print(f"pht overhead per hop (wall - container) / 3: {overhead * 1000:.0f} ms")
    print(f"ratio route / baseline: {statistics.median(walls) / statistics.median(base):.2f}")
    print("where a hop's time goes (median per hop; station steps as signed in receipts):")
    for step in ("queued", *STEPS, "claim_and_delivery"):
        if steps.get(step):
            print(f"  {step:<19} {statistics.median(steps[step]) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
