"""The demo: a registry, central and three hospital stations on this machine; the cohort,
logistic-regression and Kaplan-Meier trains over all three; each verified result printed
next to the same analysis of the pooled data.

Run it with ``scripts/demo.sh`` (which sets the machine up first) or
``python3 -m train_builder.demo``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from central.client import CentralClient
from train_builder.image import build_image, push_image
from train_builder.localnet import LocalNet
from train_builder.pooled import pooled_cohort_stats, pooled_km, pooled_logit
from train_builder.researcher import Researcher
from trains.errors import PhtError
from trains.runtime.core import load_train_module

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "trains" / "reference"
COHORT = REFERENCE / "cohort"
HOSPITALS = ["hospital-a", "hospital-b", "hospital-c"]
# The logistic regression runs on the hospitals' cohort table: is hypertension diagnosed?
LOGREG_PARAMETERS: dict[str, Any] = {
    "outcome": "diagnosis=hypertension",
    "covariates": ["age", "bmi", "sex=M", "smoker=yes"],
    "intercept": True,
    "min_rows": 10,
    "tol": 1e-8,
    "conf_level": 0.95,
}
LOGREG_ROUNDS = 5  # Newton-Raphson converges (step < tol) in 5 on this table
EXACT = 1e-6  # federated must equal pooled to this relative difference
# FedAvg on the same question, in parallel rounds joined at a data-less aggregator station
AGGREGATOR = "aggregator"
FEDAVG_ROUNDS = 8  # round 0 learns the scaling, 6 rounds train, the last one scores
FEDAVG_PARAMETERS: dict[str, Any] = {
    "outcome": "hypertension",
    "covariates": ["age", "bmi", "sex=M", "smoker=yes"],
    "epochs": 1,
    "batch_size": 16,
    "learning_rate": 0.1,
    "alpha": 0.001,
    "test_fraction": 0.25,
    "seed": 0,
    "auc_bins": 1000,
    "min_rows": 10,
}
ITERATIVE = 0.01  # an iterative method must come within 1 percentage point of pooled


def hospital_datasets(name: str) -> dict[str, Path]:
    """What each demo hospital offers: the cohort sample as ``cohort`` (cohort and logreg
    trains), the Kaplan-Meier sample as ``survival`` (km train) and the FedAvg sample, a
    table with a learnable hypertension outcome, as ``risk`` (fedavg train)."""
    return {
        "cohort": COHORT / "sample" / f"{name}.csv",
        "survival": REFERENCE / "km" / "sample" / f"{name}.csv",
        "risk": REFERENCE / "fedavg" / "sample" / f"{name}.csv",
    }


def frames_of(dataset: str) -> list[pd.DataFrame]:
    return [pd.read_csv(hospital_datasets(h)[dataset]) for h in HOSPITALS]


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


Shown = tuple[str, float | None, float | None]  # label, federated, pooled


@dataclass
class Comparison:
    """One train's verified result against the pooled analysis."""

    train: str
    rounds: int
    seconds: float
    shown: list[Shown]  # a few key numbers
    compared: int  # how many numbers were compared in all
    max_rel: float  # the largest relative difference among them (absolute for rates)
    tolerance: float = EXACT

    @property
    def equal(self) -> bool:
        return self.max_rel <= self.tolerance


def rel(a: float | None, b: float | None) -> float:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        same = (a is None or not math.isfinite(a)) and (b is None or not math.isfinite(b))
        return 0.0 if same else math.inf  # both undefined (e.g. median not reached) is equal
    return abs(a - b) / max(abs(b), 1e-12)


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

        state, seconds = travel(net, researcher, COHORT, 1, run_dir / "cohort")
        print_comparison(state, pooled_cohort_stats(frames_of("cohort")))
        comparisons = [compare_cohort(state, seconds)]

        logreg = configured_train(REFERENCE / "logreg", run_dir / "logreg", LOGREG_PARAMETERS)
        state, seconds = travel(net, researcher, logreg, LOGREG_ROUNDS, run_dir / "logreg-out")
        comparisons.append(compare_logreg(state, LOGREG_ROUNDS, seconds))

        state, seconds = travel(net, researcher, REFERENCE / "km", 1, run_dir / "km-out")
        comparisons.append(compare_km(state, seconds))

        fedavg = configured_train(
            REFERENCE / "fedavg", run_dir / "fedavg", FEDAVG_PARAMETERS, dataset="risk"
        )
        state, seconds = travel(
            net, researcher, fedavg, FEDAVG_ROUNDS, run_dir / "fedavg-out", AGGREGATOR
        )
        comparisons.append(compare_fedavg(fedavg, state, seconds))
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
    joined at ``aggregator`` if given), wait, and return the verified, opened result and
    the route's wall time."""
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
    if result.state is None:
        raise PhtError(f"train {folder.name} returned no state.json")
    return result.state, wall


def compare_cohort(state: dict[str, Any], seconds: float) -> Comparison:
    pooled = pooled_cohort_stats(frames_of("cohort"))
    diffs: list[float] = []
    shown: list[Shown] = []
    for col, p in pooled["numeric"].items():
        f = state["numeric"][col]
        diffs += [rel(f[k], p[k]) for k in ("mean", "std", "min", "max")]
        diffs.append(0.0 if f["count"] == p["count"] else math.inf)
        shown.append((f"{col} mean", f["mean"], p["mean"]))
    same_counts = state["categorical"] == pooled["categorical"]
    diffs.append(0.0 if same_counts else math.inf)
    return Comparison("cohort", 1, seconds, shown, len(diffs), max(diffs))


def compare_logreg(state: dict[str, Any], rounds: int, seconds: float) -> Comparison:
    pooled = pooled_logit(
        frames_of("cohort"), LOGREG_PARAMETERS["outcome"], LOGREG_PARAMETERS["covariates"]
    )
    diffs: list[float] = []
    shown: list[Shown] = []
    for name, p in pooled.items():
        f = state["coefficients"][name]
        diffs += [rel(f[k], p[k]) for k in ("estimate", "se", "p")]
        shown.append((f"{name} log-odds", f["estimate"], p["estimate"]))
    if not state["converged"]:
        diffs.append(math.inf)
    return Comparison("logreg", rounds, seconds, shown, len(diffs), max(diffs))


def compare_km(state: dict[str, Any], seconds: float) -> Comparison:
    pooled = pooled_km(frames_of("survival"), "time", "event", "treatment")
    diffs: list[float] = []
    shown: list[Shown] = []
    for label, p in pooled["curves"].items():
        f = state["curves"][label]
        at = dict(zip(p["time"].tolist(), p["survival"].tolist(), strict=True))
        diffs += [rel(s, at.get(t)) for t, s in zip(f["time"], f["survival"], strict=True)]
        diffs.append(rel(f["median"], p["median"]))
        shown.append((f"{label} median", f["median"], p["median"]))
    diffs.append(rel(state["logrank"]["chi2"], pooled["chi2"]))
    shown.append(("log-rank chi2", state["logrank"]["chi2"], pooled["chi2"]))
    return Comparison("km", 1, seconds, shown, len(diffs), max(diffs))


def compare_fedavg(folder: Path, state: dict[str, Any], seconds: float) -> Comparison:
    """FedAvg is iterative, not exact: compare its held-out accuracy and AUC with the same
    model trained by the same code on the pooled training rows (what pooling would give)."""
    from sklearn.metrics import roc_auc_score

    core = load_train_module(folder).core
    params = FEDAVG_PARAMETERS
    parts = [core.design(f, params["covariates"], params["outcome"]) for f in frames_of("risk")]
    masks = [core.held_out(len(y), params["test_fraction"], params["seed"]) for _, y in parts]
    test_x = np.vstack([x[m] for (x, _), m in zip(parts, masks, strict=True)])
    test_y = np.concatenate([y[m] for (_, y), m in zip(parts, masks, strict=True)])
    x = np.vstack([x[~m] for (x, _), m in zip(parts, masks, strict=True)])
    y = np.concatenate([y[~m] for (_, y), m in zip(parts, masks, strict=True)])
    scaler = core.merge_moments([core.moments(x)])
    weights = np.zeros(x.shape[1] + 1)
    for r in range(1, FEDAVG_ROUNDS - 1):
        weights = core.train_locally(weights, core.standardise(scaler, x), y, params, [0, r])
    score = core.logits(weights, core.standardise(scaler, test_x))
    accuracy = float(np.mean((score > 0) == test_y))
    auc = float(roc_auc_score(test_y, score))
    shown: list[Shown] = [
        ("held-out accuracy", state["accuracy"], accuracy),
        ("held-out AUC", state["auc"], auc),
    ]
    gaps = [abs(state["accuracy"] - accuracy), abs(state["auc"] - auc)]
    return Comparison("fedavg", FEDAVG_ROUNDS, seconds, shown, 2, max(gaps), ITERATIVE)


def print_summary(comparisons: list[Comparison]) -> None:
    say("\ntrain (route time)     quantity                  federated        pooled")
    for c in comparisons:
        head = f"{c.train} ({c.rounds} rd, {c.seconds:.0f}s)"
        for i, (label, fed, pooled) in enumerate(c.shown):
            say(f"  {head if i == 0 else '':<21} {label:<22} {_num(fed):>12}  {_num(pooled):>12}")
        if c.tolerance == EXACT:
            verdict = "equal" if c.equal else "DIFFERENT"
            say(
                f"  {'':<21} max relative difference {c.max_rel:.1e} over {c.compared} "
                f"numbers: {verdict}"
            )
        else:
            verdict = "within" if c.equal else "NOT within"
            say(
                f"  {'':<21} largest gap {100 * c.max_rel:.2f} percentage points: {verdict} "
                f"{100 * c.tolerance:g} pp of pooled"
            )
    same = all(c.equal for c in comparisons)
    say(
        f"\nexact methods equal pooled (to {EXACT:g}), iterative ones within "
        f"{100 * ITERATIVE:g} pp: {'yes' if same else 'NO'}"
    )


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.6g}"


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
            net.add_station(name, hospital_datasets(name), trusted=[you])
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
            ("network_root", net.network_root),
        ):
            write_profile_value(key, value, profile)
        say(f"demo network up: central {net.central_url}, registry {net.registry}")
        say(f"stations: {', '.join(HOSPITALS)} (each offers the datasets 'cohort' and 'survival')")
        say(f"you are researcher {you.name} (keys in {keys}); profile written to {profile}")
        say(
            f"network root {net.network_root} enrolled every station (its key is in "
            f"{net.root_dir}); your profile pins it, so 'pht-train submit' accepts only "
            "stations it enrolled"
        )
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
