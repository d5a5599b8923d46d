"""The station daemon with real parts: a real central and registry (the session localnet),
station daemons as separate processes, real containers. Approval by hand, rejection,
manual release, central going away at upload, a station killed mid-run, Docker away."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from central.client import CentralClient
from station.audit import verify as verify_audit
from station.queue import HopQueue, HopRecord, HopState
from train_builder.localnet import LocalNet, Station
from train_builder.researcher import Researcher

TRAIN = Path(__file__).resolve().parents[1] / "trains" / "reference" / "cohort"
MARKER = "ZZAUDITMARKER-91c"
SLOW_TRAIN = """
import time

def local(data, state, ctx):
    time.sleep(float(ctx.params.get("sleep_s", 0)))
    return {"rows": len(data["cohort"]) + (state or {}).get("rows", 0)}
"""
SLOW_TOML = """datasets = ["cohort"]
outputs = ["state.json"]

[train]
name = "slowcount"
version = "0.1.0"

[resources]
memory_mb = 256
timeout_s = 120
max_output_mb = 1

[parameters]
sleep_s = 6
"""


def station_cli(station: Station, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "station.cli", args[0], "--config", str(station.config), *args[1:]],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def wait_for(predicate, what: str, timeout_s: float = 120.0, logs: Station | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    tail = logs.log.read_text()[-3000:] if logs and logs.log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def records(station: Station) -> list[HopRecord]:
    return HopQueue(station.directory / "state").all()


def record_in(station: Station, *states: HopState) -> HopRecord | None:
    return next((r for r in records(station) if r.state in states), None)


@pytest.fixture(scope="module")
def world(localnet, image_for, tmp_path_factory):
    root = tmp_path_factory.mktemp("station-daemon")
    data = root / "cohort.csv"
    frame = pd.DataFrame({"age": range(30, 70), "ward": ["cardio", "onco"] * 20})
    frame.loc[0, "ward"] = MARKER
    frame.to_csv(data, index=False)
    identity, _, token = localnet.add_researcher("dr-station-tests")
    researcher = Researcher(
        identity,
        CentralClient(localnet.central_url, token.read_text().strip()),
        trust=localnet.trust(),
    )
    slow = root / "slowcount"
    slow.mkdir()
    (slow / "train.toml").write_text(SLOW_TOML)
    (slow / "train.py").write_text(SLOW_TRAIN)
    images = {"cohort": image_for(TRAIN), "slow": image_for(slow)}
    folders = {"cohort": TRAIN, "slow": slow}
    auto = localnet.add_station("st-auto", {"cohort": data}, [identity], poll_s=0.2)
    localnet.start_station(auto.name)  # a second stop, for routes of two hops
    yield localnet, researcher, data, images, folders
    researcher.close()


def add_station(net: LocalNet, name: str, data: Path, researcher: Researcher, **policy: str):
    station = net.add_station(name, {"cohort": data}, trusted=[researcher.identity], poll_s=0.2)
    extra = "".join(f'{key} = "{value}"\n' for key, value in policy.items())
    with station.config.open("a") as handle:  # [policy] is the last table localnet writes
        handle.write(extra)
    return station


def submit(researcher: Researcher, world_images, folders, kind: str, route: list[str]) -> str:
    manifest = researcher.make_manifest(
        folders[kind], world_images[kind], researcher.route_stops(route)
    )
    return researcher.submit_manifest(manifest)


def test_manual_approval_show_approve_release(world, tmp_path):
    net, researcher, data, images, folders = world
    station = add_station(net, "st-manual", data, researcher, approval="manual", release="manual")
    net.start_station(station.name)
    train_id = submit(researcher, images, folders, "cohort", [station.name])

    pending = wait_for(lambda: record_in(station, HopState.PENDING), "a pending hop", logs=station)
    listed = station_cli(station, "pending")
    assert pending.id in listed.stdout and "policy.approval is manual" in listed.stdout
    assert researcher.status(train_id)["hops"][0]["status"] == "running"  # central waits

    shown = station_cli(station, "show", pending.id[:12])
    assert shown.returncode == 0, shown.stderr
    assert researcher.identity.public.signing_fingerprint in shown.stdout
    assert f"0: round 0 {station.name}" in shown.stdout and "<- this hop" in shown.stdout
    assert "----- train.py -----" in shown.stdout and "def local(" in shown.stdout
    assert "----- train.toml -----" in shown.stdout and "datasets   cohort" in shown.stdout

    assert station_cli(station, "release", pending.id, "--yes").returncode == 1  # not yet
    approved = station_cli(station, "approve", pending.id)
    assert approved.returncode == 0, approved.stderr
    held = wait_for(lambda: record_in(station, HopState.HELD), "a held output", logs=station)
    summary = station_cli(station, "show", held.id, "--no-files").stdout
    assert "state.json" in summary and "JSON object" in summary
    assert MARKER not in summary
    assert researcher.status(train_id)["status"] == "running"  # nothing left yet

    released = station_cli(station, "release", held.id, "--yes")
    assert released.returncode == 0, released.stderr
    assert researcher.wait(train_id, timeout_s=120)["status"] == "done"
    result = researcher.result(train_id, tmp_path / "out")
    assert result.state is not None and result.state["rows"] == 40
    assert result.state["categorical"]["ward"][MARKER] is None  # 1 patient: suppressed

    audit = station.directory / "state" / "audit.jsonl"
    events = [json.loads(line)["event"] for line in audit.read_text().splitlines()]
    for event in (
        "offer_received",
        "verified",
        "queued",
        "approved",
        "run_started",
        "run_finished",
        "output_held",
        "output_released",
        "uploaded",
        "completed",
    ):
        assert event in events, events
    assert MARKER not in audit.read_text() and "cardio" not in audit.read_text()
    assert verify_audit(audit) == []
    assert station_cli(station, "audit", "verify").returncode == 0


def test_rejection_reaches_the_researcher(world):
    net, researcher, data, images, folders = world
    station = add_station(net, "st-reject", data, researcher, approval="manual")
    net.start_station(station.name)
    train_id = submit(researcher, images, folders, "cohort", [station.name])
    pending = wait_for(lambda: record_in(station, HopState.PENDING), "a pending hop", logs=station)
    rejected = station_cli(station, "reject", pending.id, "--reason", "no ethics approval yet")
    assert rejected.returncode == 0, rejected.stderr
    status = researcher.wait(train_id, timeout_s=60)
    assert status["status"] == "failed"
    assert "rejected the hop: no ethics approval yet" in status["error"]
    assert station.name in status["error"]
    assert station_cli(station, "approve", pending.id).returncode == 1  # it is decided


def test_central_down_at_upload_output_kept_and_sent_later(world, tmp_path):
    """Central goes away after the offer; the sealed output waits on disk until it is back."""
    shared, _, data, images, folders = world
    with LocalNet(tmp_path / "own") as net:
        net.registry_port = shared.registry_port  # images live in the shared registry
        net.start_central()
        identity, _, token = net.add_researcher("dr-outage")
        client = CentralClient(net.central_url, token.read_text().strip())
        researcher = Researcher(identity, client, trust=net.trust())
        station = add_station(net, "st-outage", data, researcher, approval="manual")
        station.config.write_text(
            station.config.read_text().replace(
                "poll_interval_s = 0.2", "poll_interval_s = 0.2\nmax_backoff_s = 1.0"
            )
        )
        net.start_station(station.name)
        train_id = submit(researcher, images, folders, "cohort", [station.name])
        pending = wait_for(lambda: record_in(station, HopState.PENDING), "pending", logs=station)

        central = net.processes[0]
        central.terminate()
        central.wait(timeout=20)
        assert station_cli(station, "approve", pending.id).returncode == 0
        sealed = wait_for(lambda: record_in(station, HopState.SEALED), "sealed", logs=station)
        outbox = station.directory / "state" / "outbox"
        kept = (outbox / f"{sealed.id}.sealed").read_bytes()
        wait_for(lambda: "cannot reach central" in station.log.read_text(), "a retry")
        assert station.process is not None and station.process.poll() is None  # still alive

        net.start_central()  # same port, same data folder
        assert researcher.wait(train_id, timeout_s=120)["status"] == "done"
        done = wait_for(lambda: record_in(station, HopState.DONE), "done", logs=station)
        assert done.output_digest == "sha256:" + hashlib.sha256(kept).hexdigest()
        assert not list(outbox.iterdir())  # delivered, so no longer kept
        assert researcher.result(train_id, tmp_path / "out").state["rows"] == 40
        researcher.close()


def test_station_killed_mid_run_runs_the_hop_again(world, tmp_path):
    net, researcher, data, images, folders = world
    station = add_station(net, "st-crash", data, researcher)
    net.start_station(station.name)
    train_id = submit(researcher, images, folders, "slow", [station.name])
    running = wait_for(lambda: record_in(station, HopState.RUNNING), "a running hop", logs=station)
    time.sleep(1.5)  # inside the container's sleep
    assert station.process is not None
    station.process.send_signal(signal.SIGKILL)
    station.process.wait(timeout=10)
    assert records(station)[0].state == HopState.RUNNING
    assert researcher.status(train_id)["status"] == "running"

    net.start_station(station.name)
    assert researcher.wait(train_id, timeout_s=120)["status"] == "done", station.log.read_text()
    record = records(station)[0]
    assert (record.state, record.attempts) == (HopState.DONE, 2)
    assert researcher.result(train_id, tmp_path / "out").state == {"rows": 40}
    # what the killed run left behind was removed on restart
    import docker

    client = docker.from_env()
    label = f"pht.runner={running.runner_id}"
    assert client.containers.list(all=True, filters={"label": label}) == []
    events = [
        e["event"]
        for e in map(
            json.loads, station.directory.joinpath("state", "audit.jsonl").read_text().splitlines()
        )
    ]
    assert "resumed" in events


def test_docker_unreachable_defers_the_hop_without_losing_it(world, tmp_path):
    net, researcher, data, images, folders = world
    station = add_station(net, "st-nodocker", data, researcher)
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker-here.sock"}
    log = station.log.open("ab")
    broken = subprocess.Popen(
        [sys.executable, "-m", "station.cli", "run", "--config", str(station.config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    net.processes.append(broken)
    train_id = submit(researcher, images, folders, "cohort", [station.name, "st-auto"])
    wait_for(lambda: "cannot reach Docker Engine" in station.log.read_text(), "a Docker error")
    record = records(station)[0]
    assert record.state == HopState.APPROVED  # kept, not failed
    assert researcher.status(train_id)["status"] == "running"
    assert "Traceback" not in station.log.read_text()
    broken.terminate()
    broken.wait(timeout=10)

    net.start_station(station.name)  # Docker is back
    assert researcher.wait(train_id, timeout_s=120)["status"] == "done", station.log.read_text()
    result = researcher.result(train_id, tmp_path / "out")  # verifies both receipts
    assert result.state is not None and result.state["rows"] == 80
    assert [h.station for h in result.hops] == [station.name, "st-auto"]


def test_doctor_passes_on_a_ready_station_and_catches_a_wrong_token(world):
    net, *_ = world
    station = net.stations["st-auto"]
    ok = station_cli(station, "doctor")
    assert ok.returncode == 0, ok.stdout
    assert "all checks passed" in ok.stdout and "accepted as station st-auto" in ok.stdout
    token = station.directory / "token"
    good = token.read_text()
    try:
        token.write_text("pht_sta_not-a-real-token\n")
        bad = station_cli(station, "doctor")
    finally:
        token.write_text(good)
    assert bad.returncode == 1
    assert "FAIL token" in bad.stdout and "ask central's operator" in bad.stdout


def test_heartbeat_keeps_a_waiting_hop_leased(world, tmp_path):
    """Central offers a hop again when its lease runs out (and fails the train after three
    claims); a station holding it for the admin renews the lease, so it is still there."""
    from train_builder.localnet import _bin, free_port, wait_http

    shared, _, data, images, folders = world
    with LocalNet(tmp_path / "own") as net:
        net.registry_port = shared.registry_port
        net.central_port = free_port()
        net.central_dir.mkdir(parents=True)
        serve = [*_bin("pht-central"), "serve", "--data-dir", str(net.central_dir)]
        net._spawn(  # short leases, swept often
            [*serve, "--port", str(net.central_port), "--lease-s", "1.5", "--lease-check-s", "0.3"],
            net.root / "central.log",
        )
        wait_http(f"{net.central_url}/healthz")
        identity, _, token = net.add_researcher("dr-lease")
        client = CentralClient(net.central_url, token.read_text().strip())
        researcher = Researcher(identity, client, trust=net.trust())
        station = add_station(net, "st-lease", data, researcher, approval="manual")
        station.config.write_text(
            station.config.read_text().replace(
                "poll_interval_s = 0.2", "poll_interval_s = 0.2\nheartbeat_s = 0.3"
            )
        )
        net.start_station(station.name)
        train_id = submit(researcher, images, folders, "cohort", [station.name])
        pending = wait_for(lambda: record_in(station, HopState.PENDING), "pending", logs=station)
        time.sleep(6)  # four leases: without heartbeats the train would have failed by now
        assert researcher.status(train_id)["status"] == "running"
        assert station_cli(station, "approve", pending.id).returncode == 0
        assert researcher.wait(train_id, timeout_s=120)["status"] == "done"
        researcher.close()
