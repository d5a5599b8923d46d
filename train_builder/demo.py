"""The demo: a registry, central and three hospital stations on this machine; the cohort,
logistic-regression and Kaplan-Meier trains over all three; each verified result printed
next to the same analysis of the pooled data.

Run it with ``scripts/demo.sh`` (which sets the machine up first) or
``python3 -m train_builder.demo``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from central.client import CentralClient
from train_builder.demo_compare import (
    AGGREGATOR,
    COHORT,
    FEDAVG_PARAMETERS,
    FEDAVG_ROUNDS,
    HOSPITALS,
    LOGREG_PARAMETERS,
    LOGREG_ROUNDS,
    REFERENCE,
    compare_cohort,
    compare_fedavg,
    compare_km,
    compare_logreg,
    hospital_datasets,
    print_comparison,
    print_summary,
    say,
)
from train_builder.demo_serve import DemoNet, Stopped, default_workdir, serve, stop_on_signals
from train_builder.image import build_image, push_image
from train_builder.localnet import LocalNet
from train_builder.researcher import Researcher
from trains.errors import PhtError


def configured_train(
    source: Path, target: Path, parameters: dict[str, Any], dataset: str | None = None
) -> Path:
    """A copy of a train folder with its [parameters] table (the last one) replaced, and
    optionally the dataset it asks for, as a researcher adapts a reference train."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in source.glob("*.py"):
        shutil.copy2(path, target / path.name)
    text = (source / "train.toml").read_text()
    lines = [f"{key} = {json.dumps(value)}" for key, value in parameters.items()]
    head = text[: text.index("[parameters]")]
    if dataset is not None:
        head = head.replace('datasets = ["cohort"]', f'datasets = ["{dataset}"]')
    (target / "train.toml").write_text(head + "[parameters]\n" + "\n".join(lines) + "\n")
    return target


def run(workdir: Path) -> int:
    run_dir = workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    with DemoNet(run_dir) as net:
        net.start_registry(storage=workdir / "registry")  # kept: later runs push less
        net.start_central()
        say(f"registry   {net.registry}\ncentral    {net.central_url}")
        alice, _, token = net.add_researcher("dr-alice")
        for name in HOSPITALS:
            datasets = hospital_datasets(name)
            net.add_station(name, datasets, trusted=[alice])
            net.start_station(name)
            sizes = ", ".join(f"{d} {len(pd.read_csv(p))} rows" for d, p in datasets.items())
            say(f"station    {name:<11} data {sizes}")
        net.add_station(AGGREGATOR, {}, trusted=[alice])  # joins parallel rounds; holds no data
        net.start_station(AGGREGATOR)
        say(f"station    {AGGREGATOR:<11} no data: aggregates the partial models of a round")
        say(f"network    root {net.network_root} enrolled every station; you pin it")
        client = CentralClient(net.central_url, token.read_text().strip())
        researcher = Researcher(alice, client, trust=net.trust())

        published, seconds = travel(net, researcher, COHORT, 1, run_dir / "cohort")
        print_comparison(published)
        comparisons = [compare_cohort(published, seconds)]

        logreg = configured_train(REFERENCE / "logreg", run_dir / "logreg", LOGREG_PARAMETERS)
        published, seconds = travel(net, researcher, logreg, LOGREG_ROUNDS, run_dir / "logreg-out")
        comparisons.append(compare_logreg(published, LOGREG_ROUNDS, seconds))

        published, seconds = travel(net, researcher, REFERENCE / "km", 1, run_dir / "km-out")
        comparisons.append(compare_km(published, seconds))

        fedavg = configured_train(
            REFERENCE / "fedavg", run_dir / "fedavg", FEDAVG_PARAMETERS, dataset="risk"
        )
        published, seconds = travel(
            net, researcher, fedavg, FEDAVG_ROUNDS, run_dir / "fedavg-out", AGGREGATOR
        )
        comparisons.append(compare_fedavg(fedavg, published, seconds))
        print_summary(comparisons)
    return 0 if all(c.equal for c in comparisons) else 1


def travel(
    net: LocalNet,
    researcher: Researcher,
    folder: Path,
    rounds: int,
    out: Path,
    aggregator: str | None = None,
) -> tuple[dict[str, Any], float]:
    """Build and push the train, submit it over the three hospitals (in parallel rounds
    joined at ``aggregator`` if given), wait, and return what the verified result released
    (its ``published.json``, after the last station's rules) and the route's wall time."""
    started = time.monotonic()
    _, tag = build_image(folder, net.registry)
    image = push_image(tag)
    say(f"\nimage      {image.reference} ({time.monotonic() - started:.1f}s build+push)")
    started = time.monotonic()
    if aggregator is None:
        train_id = researcher.submit(folder, image, HOSPITALS, rounds=rounds)
        route = " -> ".join(HOSPITALS)
    else:
        train_id = researcher.submit(
            folder, image, HOSPITALS, rounds=rounds, mode="parallel", aggregator=aggregator
        )
        route = f"({' | '.join(HOSPITALS)}) -> {aggregator}"
    say(f"train      {train_id} submitted, route {route}, {rounds} round(s)")
    status = researcher.wait(train_id, timeout_s=600, poll_s=0.2)
    wall = time.monotonic() - started
    if status["status"] != "done":
        raise PhtError(f"train {folder.name} {status['status']}: {status.get('error')}")
    result = researcher.result(train_id, out)
    container = sum(h.container_seconds for h in result.hops)
    say(
        f"result     verified {len(result.hops)} receipts; route took {wall:.1f}s "
        f"({container:.1f}s in containers)"
    )
    if len(result.hops) <= 3:
        for hop in result.hops:
            say(
                f"           hop {hop.hop} {hop.station:<11} container {hop.container_seconds:.2f}s"
            )
    if result.published is None:
        raise PhtError(f"train {folder.name} released no typed quantities (published.json)")
    return result.published, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--workdir",
        default=str(default_workdir()),
        help="where the network keeps its state (default $XDG_STATE_HOME/pht-demo, "
        "else ~/.local/state/pht-demo)",
    )
    parser.add_argument(
        "--serve", action="store_true", help="keep the network running for the tutorial"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="with --serve: start a new network instead of the one kept in the work folder",
    )
    args = parser.parse_args(argv)
    stop_on_signals()
    try:
        if args.serve:
            return serve(Path(args.workdir).expanduser().resolve(), fresh=args.fresh)
        return run(Path(args.workdir).expanduser().resolve())
    except Stopped as why:
        say(f"stopped by {why}: every process the demo started has ended")
        return 0
    except PhtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
