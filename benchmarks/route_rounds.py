"""Iterative routes on real parts: route time against the containers' critical path, and
what ending a converged route early saves (issue 15 items 3 and 4).

Starts a registry, central, three station daemons and an aggregator station
(train_builder.localnet), then runs
  - logreg over the three stops for --rounds rounds, every round (``stop_early = false``),
  - the same logreg ending when it converged (``stop_early = true``, the template's default),
  - FedAvg in parallel rounds joined at the aggregator, --fed-rounds rounds, every round and
    ending when converged (a round's averaging moved no weight by ``tol``).
The baseline, measured in the same run, is the critical path of the containers the route
ran: every hop in turn for a sequential route; per parallel round, the slowest stop plus
the aggregate hop. Target: route wall time <= 1.3 x that critical path. Prints where the
time went, per step, from the receipts' signed timelines.

    python3 benchmarks/route_rounds.py [--rounds 10] [--fed-rounds 12]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from central.client import CentralClient
from train_builder.image import build_image, push_image
from train_builder.localnet import LocalNet
from train_builder.researcher import Researcher
from train_builder.timeline import STEPS, hop_breakdown

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "trains" / "reference"
HOSPITALS = ["hospital-a", "hospital-b", "hospital-c"]
AGGREGATOR = "aggregator"


def critical_path(hops: list[Any], parallel: bool) -> float:
    """Seconds of container time the route cannot overlap."""
    if not parallel:
        return sum(h.container_seconds for h in hops)
    rounds: dict[int, list[Any]] = defaultdict(list)
    for hop in hops:
        rounds[hop.round].append(hop)
    total = 0.0
    for members in rounds.values():
        local = [h.container_seconds for h in members if h.kind == "local"]
        joined = [h.container_seconds for h in members if h.kind == "aggregate"]
        total += max(local, default=0.0) + sum(joined)
    return total


def run(
    researcher: Researcher, net: LocalNet, folder: Path, rounds: int, out: Path, parallel: bool
) -> dict[str, Any]:
    _, tag = build_image(folder, net.registry)
    image = push_image(tag)
    started = time.monotonic()
    if parallel:
        train_id = researcher.submit(
            folder, image, HOSPITALS, rounds, mode="parallel", aggregator=AGGREGATOR
        )
    else:
        train_id = researcher.submit(folder, image, HOSPITALS, rounds=rounds)
    status = researcher.wait(train_id, timeout_s=1800, poll_s=0.05)
    wall = time.monotonic() - started
    assert status["status"] == "done", status
    result = researcher.result(train_id, out)
    now, signed = researcher.timeline(train_id)
    steps: dict[str, list[float]] = defaultdict(list)
    for hop in now["hops"]:
        for step, seconds in hop_breakdown(hop, signed.get(hop["index"])).items():
            steps[step].append(seconds)
    path = critical_path(result.hops, parallel)
    return {"wall": wall, "path": path, "hops": len(result.hops), "steps": steps}


def with_stop_early(tmp: Path, value: bool, train: str = "logreg") -> Path:
    folder = tmp / f"{train}-stop-early-{value}"
    shutil.copytree(REFERENCE / train, folder)
    toml = folder / "train.toml"
    toml.write_text(
        toml.read_text().replace("stop_early = true", f"stop_early = {str(value).lower()}")
    )
    return folder


def fed(tmp: Path, value: bool) -> Path:
    """FedAvg reading its sample as "risk" (the stations' "cohort" is logreg's)."""
    folder = with_stop_early(tmp, value, "fedavg")
    toml = folder / "train.toml"
    toml.write_text(toml.read_text().replace('datasets = ["cohort"]', 'datasets = ["risk"]'))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="logreg's rounds")
    parser.add_argument("--fed-rounds", type=int, default=12, help="FedAvg's rounds")
    parser.add_argument("--fed-only", action="store_true", help="only the FedAvg routes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, LocalNet(Path(tmp_name)) as net:
        tmp = Path(tmp_name)
        net.start_registry()
        net.start_central()
        alice, _, token = net.add_researcher("bench")
        sample = REFERENCE / "logreg" / "sample"
        for name in HOSPITALS:
            # logreg reads "cohort"; fedavg reads its own sample under the name "risk"
            data = {
                "cohort": sample / f"{name}.csv",
                "risk": REFERENCE / "fedavg" / "sample" / f"{name}.csv",
            }
            net.add_station(name, data, trusted=[alice])
            net.start_station(name)
        net.add_station(AGGREGATOR, {}, trusted=[alice])
        net.start_station(AGGREGATOR)
        client = CentralClient(net.central_url, token.read_text().strip())
        researcher = Researcher(alice, client, trust=net.trust())
        runs = {}
        if not args.fed_only:
            runs["logreg, every round"] = run(
                researcher, net, with_stop_early(tmp, False), args.rounds, tmp / "a", False
            )
            runs["logreg, ends when converged"] = run(
                researcher, net, with_stop_early(tmp, True), args.rounds, tmp / "b", False
            )
        runs |= {
            "fedavg, every round": run(
                researcher, net, fed(tmp, False), args.fed_rounds, tmp / "c", True
            ),
            "fedavg, ends when converged": run(
                researcher, net, fed(tmp, True), args.fed_rounds, tmp / "d", True
            ),
        }
    print(f"rounds asked: logreg {args.rounds}, fedavg {args.fed_rounds}; stops: 3 (+ an ")
    print("aggregator for fedavg)")
    print(f"{'route':<30} {'hops':>4} {'wall':>8} {'critical path':>14} {'ratio':>6}")
    for name, r in runs.items():
        ratio = r["wall"] / r["path"] if r["path"] else float("nan")
        print(f"{name:<30} {r['hops']:>4} {r['wall']:7.2f}s {r['path']:13.2f}s {ratio:6.2f}")
    print("where a hop's time goes (median per hop, all routes):")
    merged: dict[str, list[float]] = defaultdict(list)
    for r in runs.values():
        for step, values in r["steps"].items():
            merged[step].extend(values)
    for step in ("queued", *STEPS, "claim_and_delivery"):
        if merged.get(step):
            print(f"  {step:<19} {statistics.median(merged[step]) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
