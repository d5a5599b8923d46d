"""What preparing while waiting saves (issue 15 item 2): approval -> container start.

Starts a registry, central and two station daemons (train_builder.localnet) over one
Docker Engine. A one-hop train (the cohort train with a comment of its own, so its image is
this run's alone) goes N times to each station, with the image's local references
forgotten before every train, so each hop must fetch it from the registry:

* baseline, ``st-auto`` (approval by policy): the hop is approved when the offer is
  admitted and the run pulls the image then, which is what a hop needing manual approval
  did before (it pulled after the admin's approval);
* ``st-manual`` (approval by the admin): the station pulls while the hop waits; the
  benchmark approves once the image is ready (``image_ready`` in the audit log).

Both are read from each station's audit log: from ``approved`` to ``run_started`` (the
moment the sandbox is set up for the container). The registry is on this machine, and only
the train's own layer is fetched (the base layers stay in Docker): a station pulling over
a network saves much more.

    python3 benchmarks/prepare_while_waiting.py [--trains 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import docker
import docker.errors

from central.client import CentralClient
from station.queue import HopQueue, HopState
from train_builder.image import build_image, push_image
from train_builder.localnet import LocalNet, Station
from train_builder.researcher import Researcher

REPO = Path(__file__).resolve().parents[1]
COHORT = REPO / "trains" / "reference" / "cohort"


def forget(names: list[str]) -> None:
    client = docker.from_env()
    for name in names:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(name)


def audit(station: Station, train_id: str) -> dict[str, datetime]:
    """When each event of the train's hop happened at the station (the first of each)."""
    seen: dict[str, datetime] = {}
    path = station.directory / "state" / "audit.jsonl"
    if not path.exists():  # the station has not been offered anything yet
        return seen
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("train_id") == train_id:
            seen.setdefault(entry["event"], datetime.fromisoformat(entry["at"]))
    return seen


def wait_for(station: Station, train_id: str, event: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while event not in audit(station, train_id):
        if time.monotonic() > deadline:
            sys.exit(
                f"{station.name}: no {event} for {train_id}\n{station.log.read_text()[-2000:]}"
            )
        time.sleep(0.05)


def approve(station: Station, train_id: str) -> None:
    record = next(
        r
        for r in HopQueue(station.directory / "state").all()
        if r.train_id == train_id and r.state == HopState.PENDING
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "station.cli",
            "approve",
            "--config",
            str(station.config),
            record.id,
        ],
        check=True,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trains", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalNet(Path(tmp)) as net:
        net.start_registry()
        net.start_central()
        alice, _, token = net.add_researcher("bench")
        folder = Path(tmp) / "train"
        shutil.copytree(COHORT, folder)
        with (folder / "train.py").open("a") as handle:
            handle.write(f"\n# {uuid.uuid4().hex}: this benchmark's own image\n")
        data = {"cohort": COHORT / "sample" / "hospital-a.csv"}
        stations = {}
        for name, policy in (("st-auto", ""), ("st-manual", 'approval = "manual"\n')):
            stations[name] = net.add_station(name, data, trusted=[alice])
            with stations[name].config.open("a") as handle:
                handle.write(policy)
            net.start_station(name)
        _, tag = build_image(folder, net.registry)
        image = push_image(tag)
        client = CentralClient(net.central_url, token.read_text().strip())
        researcher = Researcher(alice, client, trust=net.trust())
        waits: dict[str, list[float]] = {name: [] for name in stations}
        for _ in range(args.trains):
            for name, station in stations.items():
                forget([tag, image.reference])
                train_id = researcher.submit(folder, image, [name])
                if name == "st-manual":
                    wait_for(station, train_id, "image_ready")
                    approve(station, train_id)
                wait_for(station, train_id, "run_started")
                status = researcher.wait(train_id, poll_s=0.05)
                assert status["status"] == "done", status
                seen = audit(station, train_id)
                waits[name].append((seen["run_started"] - seen["approved"]).total_seconds())
    base, prepared = statistics.median(waits["st-auto"]), statistics.median(waits["st-manual"])
    print(f"trains per station: {args.trains}; image fetched from the registry every train")
    print(f"approval -> container start, pulled after approval (baseline) {base * 1000:7.1f} ms")
    print(f"approval -> container start, pulled while waiting            {prepared * 1000:7.1f} ms")
    print(f"saved per hop: {(base - prepared) * 1000:.1f} ms; ratio {prepared / base:.2f}")


if __name__ == "__main__":
    main()
