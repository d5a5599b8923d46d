"""The demo: a registry, central and three hospital stations on this machine, the cohort
train over all three, and its verified result printed next to the pooled figures.

Run it with ``scripts/demo.sh`` (which sets the machine up first) or
``python3 -m train_builder.demo``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pandas as pd

from central.client import CentralClient
from train_builder.image import build_image, push_image
from train_builder.localnet import LocalNet
from train_builder.pooled import pooled_cohort_stats
from train_builder.researcher import Researcher
from trains.errors import PhtError

REPO = Path(__file__).resolve().parents[1]
COHORT = REPO / "trains" / "reference" / "cohort"
HOSPITALS = ["hospital-a", "hospital-b", "hospital-c"]


def say(text: str) -> None:
    print(text, flush=True)


def run(workdir: Path) -> int:
    run_dir = workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    with LocalNet(run_dir) as net:
        net.start_registry(storage=workdir / "registry")  # kept: later runs push less
        net.start_central()
        say(f"registry   {net.registry}\ncentral    {net.central_url}")
        alice, _, token = net.add_researcher("dr-alice")
        for name in HOSPITALS:
            csv = COHORT / "sample" / f"{name}.csv"
            net.add_station(name, {"cohort": csv}, trusted=[alice])
            net.start_station(name)
            say(f"station    {name:<11} data {csv.name} ({len(pd.read_csv(csv))} patients)")

        started = time.monotonic()
        _, tag = build_image(COHORT, net.registry)
        image = push_image(tag)
        say(f"image      {image.reference} ({time.monotonic() - started:.1f}s build+push)")

        researcher = Researcher(alice, CentralClient(net.central_url, token.read_text().strip()))
        started = time.monotonic()
        train_id = researcher.submit(COHORT, image, HOSPITALS)
        say(f"train      {train_id} submitted, route {' -> '.join(HOSPITALS)}")
        status = researcher.wait(train_id, timeout_s=600)
        wall = time.monotonic() - started
        if status["status"] != "done":
            say(f"train failed: {status.get('error')}")
            return 1
        result = researcher.result(train_id, run_dir / "result")
        say(f"result     verified {len(result.hops)} receipts; route took {wall:.1f}s")
        for hop in result.hops:
            say(
                f"           hop {hop.hop} {hop.station:<11} container {hop.container_seconds:.2f}s"
            )
        frames = [pd.read_csv(COHORT / "sample" / f"{h}.csv") for h in HOSPITALS]
        assert result.state is not None
        print_comparison(result.state, pooled_cohort_stats(frames))
    return 0


def serve(workdir: Path) -> int:
    """Start the demo network and keep it running; register you as a researcher (your
    keys in ~/.pht/keys, made if missing), have the stations trust you, and point your
    profile (~/.config/pht/profile.toml, or $PHT_PROFILE) at the network."""
    from train_builder.profile import DEFAULT_KEYS_DIR, profile_path, write_profile_value

    run_dir = workdir / "serve"
    shutil.rmtree(run_dir, ignore_errors=True)
    keys_dir = Path(os.environ.get("PHT_KEYS_DIR") or DEFAULT_KEYS_DIR).expanduser()
    with LocalNet(run_dir) as net:
        net.start_registry(storage=workdir / "registry")
        net.start_central()
        you, keys, token = net.add_researcher(getpass.getuser() or "researcher", keys_dir)
        for name in HOSPITALS:
            net.add_station(name, {"cohort": COHORT / "sample" / f"{name}.csv"}, trusted=[you])
            net.start_station(name)
        profile = profile_path()
        if profile.exists():
            backup = profile.with_name(profile.name + ".before-demo")
            shutil.copy2(profile, backup)
            say(f"your profile was saved to {backup}")
        for key, value in (
            ("central_url", net.central_url),
            ("token_file", str(token)),
            ("keys_dir", str(keys)),
            ("registry", net.registry),
        ):
            write_profile_value(key, value, profile)
        say(f"demo network up: central {net.central_url}, registry {net.registry}")
        say(f"stations: {', '.join(HOSPITALS)} (each offers the dataset 'cohort')")
        say(f"you are researcher {you.name} (keys in {keys}); profile written to {profile}")
        say("press Ctrl-C to stop the network")
        try:
            while all(p.poll() is None for p in net.processes):
                time.sleep(1)
            say("a demo process stopped; see the logs in " + str(run_dir))
            return 1
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup
            say("stopping")
            return 0


def print_comparison(federated: dict, pooled: dict) -> None:  # type: ignore[type-arg]
    say("\nnumeric columns        federated (3 stations)            pooled (all data in one place)")
    for col, p in pooled["numeric"].items():
        f = federated["numeric"][col]
        say(
            f"  {col:<12} mean {f['mean']:>9.4f} sd {f['std']:>8.4f} n {f['count']:>4}"
            f"    mean {p['mean']:>9.4f} sd {p['std']:>8.4f} n {p['count']:>4}"
        )
    say("categorical counts (None = fewer than 5, suppressed)")
    for col, counts in pooled["categorical"].items():
        for key, count in counts.items():
            got = federated["categorical"][col].get(key)
            say(f"  {col:<12} {key:<14} {got!s:>6}    {count!s:>6}")
    same = (
        all(
            abs(federated["numeric"][c]["mean"] - p["mean"]) <= 1e-9 * abs(p["mean"])
            for c, p in pooled["numeric"].items()
        )
        and federated["categorical"] == pooled["categorical"]
    )
    say(f"\nfederated equals pooled: {'yes' if same else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=str(REPO / ".demo"))
    parser.add_argument(
        "--serve", action="store_true", help="keep the network running for the tutorial"
    )
    args = parser.parse_args(argv)
    try:
        if args.serve:
            return serve(Path(args.workdir).resolve())
        return run(Path(args.workdir).resolve())
    except PhtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
