"""Prepare while waiting (issue 15 item 2), with real parts: a hop waiting for the admin's
approval has its image pulled before the approval is given, and a hop that ends without
running gives back what was pulled for it; an offer whose checks fail pulls nothing.

Observed for real: the station's audit log (its order of events) and Docker Engine (does
it hold the image's pinned reference). The train image is built for this module only and
its local references are removed after the push, so the station must pull it."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from central.client import CentralClient
from station.queue import HopState
from tests.test_station_daemon import add_station, record_in, station_cli, wait_for
from train_builder.localnet import Station
from train_builder.researcher import Researcher

TOML = """datasets = ["cohort"]
outputs = ["state.json"]

[train]
name = "prepwait"
version = "0.1.0"

[resources]
memory_mb = 256
timeout_s = 120
max_output_mb = 1
"""
TRAIN = """
def local(data, state, ctx):
    rows = len(data["cohort"]) + (state or {}).get("rows", 0)
    if ctx.is_last:
        ctx.publish.frequency_table("rows", ["all"], [rows])
    return {"rows": rows}
# %s: this module's own image
"""


def held(reference: str) -> bool:
    try:
        docker.from_env().images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


def forget(reference: str, tag: str) -> None:
    """Docker no longer holds the image under these names (its layers may stay)."""
    client = docker.from_env()
    for name in (tag, reference):
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(name)
    assert not held(reference)


def events(station: Station, train_id: str) -> list[dict]:
    path = station.directory / "state" / "audit.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("train_id") == train_id]


def kinds(station: Station, train_id: str) -> list[str]:
    return [str(e["event"]) for e in events(station, train_id)]


@pytest.fixture(scope="module")
def world(localnet, tmp_path_factory):
    from train_builder.image import build_image, push_image

    root = tmp_path_factory.mktemp("prepare")
    data = root / "cohort.csv"
    data.write_text("age\n" + "\n".join(str(30 + i) for i in range(40)) + "\n")
    folder = root / "prepwait"
    folder.mkdir()
    (folder / "train.toml").write_text(TOML)
    (folder / "train.py").write_text(TRAIN % uuid.uuid4().hex)
    _, tag = build_image(folder, localnet.registry)
    image = push_image(tag)
    identity, _, token = localnet.add_researcher("dr-prepare")
    researcher = Researcher(
        identity,
        CentralClient(localnet.central_url, token.read_text().strip()),
        trust=localnet.trust(),
    )
    forget(image.reference, tag)
    yield localnet, researcher, data, folder, image, tag
    researcher.close()


def submit(researcher: Researcher, folder: Path, image, station: str) -> str:
    manifest = researcher.make_manifest(folder, image, researcher.route_stops([station]))
    return researcher.submit_manifest(manifest)


def test_a_waiting_hop_has_its_image_before_approval_and_a_rejected_one_gives_it_back(world):
    net, researcher, data, folder, image, _ = world
    station = add_station(net, "st-prepare", data, researcher, approval="manual")
    net.start_station(station.name)
    # 1. pulled while the hop waits; nothing has run
    first = submit(researcher, folder, image, station.name)
    wait_for(
        lambda: (r := record_in(station, HopState.PENDING)) and r.prepared_at, "a prepared hop"
    )
    assert held(image.reference)
    seen = kinds(station, first)
    assert "image_ready" in seen and "approved" not in seen and "run_started" not in seen, seen
    ready = next(e for e in events(station, first) if e["event"] == "image_ready")
    assert ready["pulled"] is True
    # 2. the admin rejects it: the daemon gives the image back
    pending = record_in(station, HopState.PENDING)
    assert station_cli(station, "reject", pending.id, "--reason", "not now").returncode == 0
    wait_for(lambda: not held(image.reference), "the prepared image removed", logs=station)
    # audited right after the removal: wait for the line, not only for Docker
    wait_for(lambda: "image_removed" in kinds(station, first), "image_removed", logs=station)
    # 3. a second train: prepared, then approved; the run finds the image ready
    second = submit(researcher, folder, image, station.name)
    wait_for(
        lambda: (r := record_in(station, HopState.PENDING)) and r.prepared_at, "a prepared hop"
    )
    pending = record_in(station, HopState.PENDING)
    assert station_cli(station, "approve", pending.id).returncode == 0
    status = researcher.wait(second, timeout_s=180)
    assert status["status"] == "done", status
    order = kinds(station, second)
    assert order.index("image_ready") < order.index("approved") < order.index("run_started")
    assert held(image.reference)  # an image that ran stays, as before
    assert "image_removed" not in order


def test_an_offer_that_fails_its_checks_pulls_nothing(world):
    net, researcher, data, folder, image, tag = world
    forget(image.reference, tag)
    # the station trusts nobody: the signer check refuses the offer
    station = net.add_station("st-untrusting", {"cohort": data}, trusted=[], poll_s=0.2)
    net.start_station(station.name)
    train_id = submit(researcher, folder, image, station.name)
    status = researcher.wait(train_id, timeout_s=120)
    assert status["status"] == "failed", status
    seen = kinds(station, train_id)
    assert "verified" in seen and "image_ready" not in seen, seen
    assert not held(image.reference)


def test_offers_nobody_approved_hold_at_most_max_prepared_images():
    """Review finding: every offer that passed its checks had its image pulled and kept
    until decided, so a researcher submitting many trains could fill the station's disk
    without any approval. A pure count over the records (built without validation: only
    their state and pulled image matter here)."""
    from station import prepare
    from station.queue import HopRecord

    def record(state: HopState, pulled: str | None) -> HopRecord:
        return HopRecord.model_construct(state=state, pulled_image=pulled)

    waiting = [record(HopState.PENDING, f"reg/t@sha256:{i}") for i in range(prepare.MAX_PREPARED)]
    assert not prepare.has_room(waiting)
    assert prepare.has_room(waiting[:-1])
    # approved or ended hops, and pending hops whose image was already here, do not count
    others = [record(HopState.APPROVED, "reg/a@sha256:1"), record(HopState.REJECTED, "x"),
              record(HopState.PENDING, None)]  # fmt: skip
    assert prepare.has_room(waiting[:-1] + others)
