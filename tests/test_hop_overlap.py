"""The hop's Docker work that overlaps (issue 15 item 1), with real containers: the
holder of the output volume starts while the inputs are copied in, and the removal of a
run's containers and volumes goes on while the station checks and seals the output.

Neither may lose a guarantee: the output of a train that exits at once is still copied
(the holder was up before the train started), and after ``settle`` nothing of the run is
left; a run that starts while the previous removal is under way waits for it first."""

from __future__ import annotations

import threading
import time

import docker
import pytest

from station.leftovers import RUNNER_FILE
from station.runner import DockerRunner
from tests.test_sandbox_attacks import (  # noqa: F401  (fixtures)
    ENV,
    LIMITS,
    SMALL,
    HopDirs,
    assert_removed,
    attack_image,
    hop,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def runner(docker_required) -> DockerRunner:
    return DockerRunner(LIMITS)


def run(runner: DockerRunner, image_id: str, dirs: HopDirs, defer: bool):
    return runner.run(
        image_id,
        input_dir=dirs.input,
        data_dir=dirs.data,
        output_dir=dirs.output,
        env=ENV,
        resources=SMALL,
        defer_cleanup=defer,
    )


def hold_removal(runner: DockerRunner, monkeypatch) -> threading.Event:
    """The runner's removals wait until the returned event is set (the removal itself is
    Docker's, real; only its start is held, to see what runs before it)."""
    gate = threading.Event()
    real = runner._remove

    def held(made, quiet=False):
        let_go = gate.wait(120)
        real(made, quiet)  # even when the test failed first: it leaves nothing behind
        assert let_go, "the test never let the removal go"

    monkeypatch.setattr(runner, "_remove", held)
    return gate


def containers_of(runner: DockerRunner) -> set[str]:
    client = docker.from_env()
    label = f"pht.runner={runner.runner_id}"
    return {c.id for c in client.containers.list(all=True, filters={"label": label})}


def test_a_deferred_cleanup_leaves_nothing_once_settled(runner, attack_image, hop, monkeypatch):  # noqa: F811
    gate = hold_removal(runner, monkeypatch)
    result = run(runner, attack_image("noop"), hop, defer=True)
    assert result.ok, result.log
    assert (hop.output / "state.json").is_file()  # the holder kept the tmpfs until copied
    assert containers_of(runner)  # the run returned before its removal: deferred
    gate.set()
    runner.settle()
    assert_removed(f"pht.run={result.run_id}")
    assert runner.settle() == 0.0  # nothing left to wait for


def test_the_next_run_waits_for_the_previous_removal(runner, attack_image, hop, monkeypatch):  # noqa: F811
    gate = hold_removal(runner, monkeypatch)
    first = run(runner, attack_image("noop"), hop, defer=True)
    left = containers_of(runner)
    assert first.ok and left  # its removal is held
    for path in hop.output.iterdir():
        path.unlink()
    done: dict[str, object] = {}
    second = threading.Thread(
        target=lambda: done.setdefault("run", run(runner, attack_image("noop"), hop, False))
    )
    second.start()
    for _ in range(30):  # 3 s in which a run that did not wait would create its containers
        assert containers_of(runner) <= left, "the next run started before the removal"
        time.sleep(0.1)
    gate.set()
    second.join(180)
    assert not second.is_alive() and done["run"].ok  # type: ignore[attr-defined]
    assert_removed(f"pht.run={first.run_id}")
    assert_removed(f"pht.run={done['run'].run_id}")  # type: ignore[attr-defined]


def bare_station(tmp_path, name: str):
    """A station daemon's object with a state folder and no central: enough to recover."""
    from station.audit import AuditLog
    from station.config import Policy, StationConfig, StationInfo
    from station.daemon import Station
    from station.queue import HopQueue
    from trains.keys import Identity

    config = StationConfig(
        station=StationInfo(
            name=name, central_url="http://127.0.0.1:1", state_dir=tmp_path / "state"
        ),
        policy=Policy(trusted_signers=[]),
    )
    queue = HopQueue(tmp_path / "state")
    return Station(config, Identity.generate(name), queue, AuditLog(tmp_path / "a")), queue


def test_a_restart_removes_what_a_dead_daemons_deferred_cleanup_left(tmp_path, attack_image):  # noqa: F811
    """The daemon died before a deferred removal ran: the next one removes the containers
    and volumes labelled with the dead daemon's runner id, whatever state their hop is in."""
    station, queue = bare_station(tmp_path, "st-restart")
    dead = "deadbeef0123"
    labels = {"pht": "hop", "pht.runner": dead}
    client = docker.from_env()
    volume = client.volumes.create(name=f"pht-output-{dead}", labels=labels)
    client.containers.create(attack_image("noop"), name=f"pht-hold-{dead}", labels=labels)
    (queue.root / RUNNER_FILE).write_text(dead + "\n")
    station.recover()
    assert_removed(f"pht.runner={dead}")
    assert not (queue.root / RUNNER_FILE).exists()
    assert volume.name  # it was made, and is gone (assert_removed)


def test_a_restart_while_docker_is_away_keeps_the_dead_daemons_id_for_later(tmp_path, monkeypatch):
    """Review finding: when Docker did not answer at the restart, the dead daemon's runner
    id was deleted anyway, so its containers (a train still running on patient data) and
    volumes were never removed. Docker away is real here: DOCKER_HOST names a socket that
    nothing listens on. The id stays until a later restart removes what it labels."""
    station, queue = bare_station(tmp_path, "st-away")
    dead = "feedface4567"
    (queue.root / RUNNER_FILE).write_text(dead + "\n")
    with monkeypatch.context() as away:
        away.setenv("DOCKER_HOST", f"unix://{tmp_path}/nobody-listens.sock")
        station.recover()
    assert dead in (queue.root / RUNNER_FILE).read_text().split()
    client = docker.from_env()
    volume = client.volumes.create(name=f"pht-output-{dead}", labels={"pht.runner": dead})
    station.recover()  # Docker answers now
    assert_removed(f"pht.runner={dead}")
    assert dead not in ((queue.root / RUNNER_FILE).read_text().split()
                        if (queue.root / RUNNER_FILE).exists() else [])  # fmt: skip
    assert volume.name
