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
from station import daemon, delivery
from station.audit import verify as verify_audit
from station.queue import HopQueue, HopRecord, HopState
from tests.released import one_way
from train_builder.localnet import LocalNet, Station
from train_builder.researcher import Researcher
from trains.errors import CentralUnreachable

TRAIN = Path(__file__).resolve().parents[1] / "trains" / "reference" / "cohort"
MARKER = "ZZAUDITMARKER-91c"
SLOW_TRAIN = """
import time

def local(data, state, ctx):
    time.sleep(float(ctx.params.get("sleep_s", 0)))
    rows = len(data["cohort"]) + (state or {}).get("rows", 0)
    if ctx.is_last:  # the release point: the count leaves typed
        ctx.publish.frequency_table("rows", ["all"], [rows])
    return {"rows": rows}
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
    assert "published.json" in summary and "typed quantities" in summary
    assert MARKER not in summary
    assert researcher.status(train_id)["status"] == "running"  # nothing left yet

    released = station_cli(station, "release", held.id, "--yes")
    assert released.returncode == 0, released.stderr
    assert researcher.wait(train_id, timeout_s=120)["status"] == "done"
    result = researcher.result(train_id, tmp_path / "out")
    assert result.state == {} and one_way(result.quantity("rows")) == {"all": 40}
    assert one_way(result.quantity("ward"))[MARKER] is None  # 1 patient: suppressed

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
        result = researcher.result(train_id, tmp_path / "out")
        assert one_way(result.quantity("rows")) == {"all": 40}
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
    result = researcher.result(train_id, tmp_path / "out")
    assert result.state == {} and one_way(result.quantity("rows")) == {"all": 40}
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
    assert one_way(result.quantity("rows")) == {"all": 80}
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


HOSTILE_TRAIN = """
from pathlib import Path

def local(data, state, ctx):
    out = Path(ctx.output_dir)
    # 39 MB of [[],[],...]: 570 MB more RSS in the daemon when it parsed outputs itself
    with (out / "state.json").open("w") as handle:
        handle.write("[" + "[]," * (13 * 1024 * 1024 - 1) + "[]]")
    # a count file with a 2 MB field (_csv.Error in the daemon once)
    (out / "ward.counts.csv").write_text("ward,count\\n" + "x" * (2 << 20) + ",3\\n")
    return None
"""
HOSTILE_TOML = """datasets = ["cohort"]
outputs = ["state.json", "ward.counts.csv"]

[train]
name = "hostile"
version = "0.1.0"

[resources]
memory_mb = 512
timeout_s = 120
max_output_mb = 64
"""


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])


def test_a_hostile_output_fails_its_hop_and_the_daemon_runs_the_next_train(
    world, image_for, tmp_path
):
    """Issue 10, reproductions 3 and 6 with real processes: the hostile hop fails with a
    reason the researcher reads, the daemon lives on with flat memory, and the next train
    on the same station runs and verifies."""
    net, researcher, data, images, folders = world
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "train.toml").write_text(HOSTILE_TOML)
    (hostile / "train.py").write_text(HOSTILE_TRAIN)
    station = add_station(net, "st-hostile", data, researcher)
    net.start_station(station.name)
    assert station.process is not None
    wait_for(lambda: "polling" in station.log.read_text(), "the daemon up", logs=station)
    before = _peak_rss_kib(station.process.pid)

    manifest = researcher.make_manifest(
        hostile, image_for(hostile), researcher.route_stops([station.name])
    )
    train_id = researcher.submit_manifest(manifest)
    status = researcher.wait(train_id, timeout_s=300)
    assert status["status"] == "failed", station.log.read_text()
    # a category for the researcher (no file name the train chose); which file, in the
    # hop's log at the station
    assert "cannot be read as its type" in status["error"] and "ward" not in status["error"]
    assert station.name in status["error"] or "StateInvalid" in status["error"]
    (hop_log,) = station.config.parent.rglob(f"{train_id}-hop0.log")
    assert "ward.counts.csv cannot be checked" in hop_log.read_text()
    assert station.process.poll() is None  # still alive
    grown_kib = _peak_rss_kib(station.process.pid) - before
    assert grown_kib < 64 * 1024, f"the daemon's peak RSS grew by {grown_kib} KiB"

    following = submit(researcher, images, folders, "cohort", [station.name])
    assert researcher.wait(following, timeout_s=300)["status"] == "done"
    result = researcher.result(following, tmp_path / "out")  # verifies the receipt chain
    assert one_way(result.quantity("rows")) == {"all": 40}
    assert station.process.poll() is None
    assert "Traceback" not in station.log.read_text()


# -- issue 10, reproductions 3 and 4: a failure while handling one hop ends that hop, never
#    the daemon, and one record that keeps failing never blocks the others. Central is the
#    real app in-process; where a fault cannot be caused for real (central answering 500
#    for one train only, a proxy rewriting a train id) a stand-in plays it and says so. --


class _FaultyCentral:
    """The real client, except for the faults a test names (a stand-in: a real central
    gives 500 for one train only when its database is poisoned, which the UUID train ids
    now prevent, and a proxy's rewrite needs a proxy)."""

    def __init__(self, real: CentralClient) -> None:
        self.real, self.poisoned, self.offers = real, set(), []

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def deliver(self, train_id, hop, sealed, receipt):
        if train_id in self.poisoned:
            raise CentralUnreachable("central refused (500): internal server error")
        return self.real.deliver(train_id, hop, sealed, receipt)

    def fail(self, train_id, hop, reason):
        if train_id in self.poisoned:
            raise CentralUnreachable("central refused (500): internal server error")
        return self.real.fail(train_id, hop, reason)

    def next_hop(self, wait=0):
        return self.offers.pop(0) if self.offers else self.real.next_hop(wait)


@pytest.fixture
def in_process(tmp_path):
    from fastapi.testclient import TestClient

    from central.api import create_app
    from central.settings import CentralSettings
    from central.testing_pg import database_url_for
    from station.audit import AuditLog
    from station.config import CsvSource, Policy, StationConfig, StationInfo
    from station.daemon import Station as Daemon
    from tests.test_central_protocol import auth, submit
    from trains.keys import Identity

    url = database_url_for("sqlite", tmp_path)
    app = create_app(CentralSettings(data_dir=tmp_path / "central", database_url=url))
    researcher, me = Identity.generate("alice"), Identity.generate("hospital-a")
    tokens = {
        "alice": app.state.service.register("researcher", researcher.public),
        "hospital-a": app.state.service.register("station", me.public),
    }
    client = TestClient(app)
    real = CentralClient("http://testserver", tokens["hospital-a"])
    real._http = TestClient(app, headers=auth(tokens["hospital-a"]))
    data = tmp_path / "d.csv"
    data.write_text("x\n1\n")
    config = StationConfig(
        station=StationInfo(name="hospital-a", central_url="http://testserver"),
        datasets={"cohort": CsvSource(path=data)},
        policy=Policy(trusted_signers=[researcher.public.signing_fingerprint]),
        base_dir=tmp_path / "station",
    )
    queue = HopQueue(config.state_dir)
    station = Daemon(config, me, queue, AuditLog(queue.root / "audit.jsonl"))

    def new_train() -> str:
        manifest, _ = submit(client, researcher, [me], tokens["alice"])
        return manifest.train_id

    def status(train_id: str) -> dict:
        return client.get(f"/api/v1/trains/{train_id}", headers=auth(tokens["alice"])).json()

    def cancel(train_id: str) -> None:
        reply = client.post(f"/api/v1/trains/{train_id}/cancel", headers=auth(tokens["alice"]))
        assert reply.status_code == 200, reply.text

    yield station, _FaultyCentral(real), new_train, status, cancel
    real.close()


def _claim(station, central, state: HopState, **fields) -> HopRecord:
    offer = central.real.next_hop()
    assert offer is not None
    record = HopRecord.from_offer(offer, state, **fields)
    if state == HopState.SEALED:  # bytes and a receipt central will never see
        sealed = station.queue.sealed_path(record).with_suffix(".incoming")
        sealed.write_bytes(b"sealed bytes")
        station.queue.store_output(record, sealed, offer.manifest)
    return station.queue.save(record)


def _due_now(station, record: HopRecord) -> None:
    """Time passes: the record's backoff is over (the test does not sleep through it)."""
    record = station.queue.get(record.id)
    record.retry_at = None
    station.queue.save(record)


def test_a_record_central_keeps_refusing_is_retried_then_quarantined_and_blocks_nobody(
    in_process, capsys
):
    station, central, new_train, status, _ = in_process
    poisoned, good = new_train(), new_train()
    central.poisoned.add(poisoned)
    stuck = _claim(station, central, HopState.SEALED)
    refused = _claim(station, central, HopState.REJECTED, reason="PolicyRejected: not today")
    assert (stuck.train_id, refused.train_id) == (poisoned, good)

    station.step(central)  # delivers first: the poisoned upload fails, the rest goes on
    assert status(good)["status"] == "failed" and "not today" in status(good)["error"]
    stuck = station.queue.get(stuck.id)
    assert stuck.state == HopState.SEALED and stuck.tries == 1 and stuck.retry_at is not None
    station.step(central)  # backing off: not tried again at once
    assert station.queue.get(stuck.id).tries == 1

    for _ in range(2 * delivery.MAX_TRIES):
        _due_now(station, stuck)
        station.step(central)
    stuck = station.queue.get(stuck.id)
    assert stuck.state == HopState.QUARANTINED, stuck
    assert "did not accept the output" in (stuck.reason or "")
    events = [json.loads(line) for line in station.audit.path.read_text().splitlines()]
    assert [e["train_id"] for e in events if e["event"] == "quarantined"] == [poisoned]
    station.step(central)  # quarantined: left alone
    assert station.queue.get(stuck.id).tries == stuck.tries
    assert status(good)["status"] == "failed"  # the other train was told long ago

    from station.cli import main as station_main

    toml = station.config.base_dir / "station.toml"
    data = station.config.datasets["cohort"].path
    toml.write_text(
        '[station]\nname = "hospital-a"\ncentral_url = "http://testserver"\n'
        f'[datasets.cohort]\npath = "{data}"\n'
    )
    assert station_main(["pending", "--config", str(toml)]) == 0
    listed = capsys.readouterr().out
    assert f"{stuck.id}  quarantined" in listed and "did not take this report" in listed


def test_a_cancelled_trains_undelivered_output_is_dropped(in_process):
    station, central, new_train, _, cancel = in_process
    poisoned = new_train()
    central.poisoned.add(poisoned)
    stuck = _claim(station, central, HopState.SEALED)
    station.step(central)
    cancel(poisoned)
    assert central.heartbeat(poisoned, 0) == "cancelled"
    station.cancelled.add(stuck.id)  # what the heartbeat thread does on that answer
    _due_now(station, stuck)
    station.step(central)
    dropped = station.queue.get(stuck.id)
    assert (dropped.state, dropped.reported) == (HopState.FAILED, True)
    assert not list(station.queue.outbox.iterdir())


def test_an_offer_the_station_cannot_even_record_is_refused_and_the_next_one_runs(
    in_process,
):
    """A proxy rewrote the train id to 5,000 characters (OSError: File name too long)."""
    station, central, new_train, _, _ = in_process
    train_id = new_train()
    offer = central.real.next_hop()
    central.offers.append(offer.model_copy(update={"train_id": "x" * 5000}))
    assert station.step(central) is True  # handled: refused, not crashed
    other = new_train()
    station.step(central)
    assert [r.train_id for r in station.queue.all()] == [other]
    assert train_id != other


def test_a_hop_interrupted_again_and_again_is_failed_not_run_forever(in_process):
    """A hop whose run kills the daemon (out of memory, a crash in a parser) is found
    running at every start: after MAX_RUN_ATTEMPTS it fails with a reason."""
    station, central, new_train, status, _ = in_process
    train_id = new_train()
    record = _claim(station, central, HopState.RUNNING)
    record.attempts = daemon.MAX_RUN_ATTEMPTS
    station.queue.save(record)
    station.recover()
    failed = station.queue.get(record.id)
    assert failed.state == HopState.FAILED and not failed.reported
    assert f"interrupted {daemon.MAX_RUN_ATTEMPTS} times" in (failed.reason or "")
    station.step(central)
    assert status(train_id)["status"] == "failed"


class _BrokenDocker:
    """Stands in for the Docker adapter: pulling raises what an unknown parser bug would."""

    runner_id = None

    def pull(self, image, limits=None):
        raise RecursionError("maximum recursion depth exceeded near 'PATIENT-ZZ'")


def test_a_run_that_raises_anything_fails_its_hop_by_kind_only(in_process):
    """Every known cause in a run (parsers, archives) now raises a PhtError, so a stand-in
    Docker adapter raises what a yet unknown bug would, with bytes in its message."""
    station, central, new_train, status, _ = in_process
    train_id, other = new_train(), new_train()
    station._runner = _BrokenDocker()
    assert station.step(central) and station.step(central)  # both offers admitted
    assert station.step(central)  # runs the first: it fails, the daemon goes on
    (failed,) = station.queue.in_state(HopState.FAILED)
    assert failed.train_id == train_id
    assert "RecursionError" in failed.reason and "PATIENT-ZZ" not in failed.reason
    station.step(central)  # reports it, then runs the next one
    assert status(train_id)["status"] == "failed"
    assert "could not process this hop (RecursionError)" in status(train_id)["error"]
    assert [r.train_id for r in station.queue.in_state(HopState.FAILED)] == [train_id, other]


def test_a_report_that_got_through_after_failed_tries_starts_afresh(in_process):
    """Review finding: tries counted once were never reset, so a record offered again
    later was quarantined after a single further failure."""
    station, central, new_train, status, _ = in_process
    train_id = new_train()
    central.poisoned.add(train_id)
    refused = _claim(station, central, HopState.REJECTED, reason="PolicyRejected: not today")
    station.step(central)
    assert station.queue.get(refused.id).tries == 1
    central.poisoned.discard(train_id)
    _due_now(station, refused)
    station.step(central)
    told = station.queue.get(refused.id)
    assert told.reported and (told.tries, told.retry_at) == (0, None)
    assert status(train_id)["status"] == "failed"


class _PullOnlyDocker:
    """Stands in for the Docker adapter up to the pull: the hop fails before any run."""

    runner_id = None

    def pull(self, image, limits=None):
        return "sha256:" + "0" * 64

    def run(self, *args, **kwargs):
        raise AssertionError("the hop must fail before a container runs")


def test_a_data_source_failure_reaches_central_without_the_stations_paths(in_process):
    """Review finding: a data source's error (its host path, URL or a database's words)
    went to central and the researcher as the hop's reason; it stays in the station's log."""
    station, central, new_train, status, _ = in_process
    train_id = new_train()
    station._runner = _PullOnlyDocker()
    source = station.config.datasets["cohort"].path
    secret_path = str(source)
    source.unlink()  # the admin moved the file after the station started
    assert station.step(central) and station.step(central)  # admit, then run: it fails
    station.step(central)  # report
    error = status(train_id)["error"]
    assert "could not read its data for this train" in error
    assert secret_path not in error and source.name not in error


def test_the_heartbeat_follows_a_lease_shorter_than_its_setting():
    """Review finding: the station renewed every heartbeat_s whatever lease central gave."""
    from station.daemon import beat_interval

    assert beat_interval(10.0, 60.0) == 10.0
    assert beat_interval(10.0, 9.0) == 3.0  # central leases 9 s: beat every 3 s
    assert beat_interval(10.0, 0.0) == 10.0
    assert beat_interval(10.0, 0.03) == 0.1
