"""Nothing a train controls leaves a station except its sealed state: real registry, real
central, station daemons as separate processes, real containers (the attack trains are in
tests/attack_trains). What a failed hop tells central and the researcher is a category, or
a refusal code from the runtime's fixed vocabulary (trains/runtime/refusal.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from central.client import CentralClient
from train_builder.researcher import Researcher
from trains.keys import Identity
from trains.runtime.refusal import REFUSALS

pytestmark = pytest.mark.docker

ATTACKS = Path(__file__).parent / "attack_trains"
AGE = 61  # the first patient's age: the exit-code train tries to smuggle it out
WARD = "ZZWARD-9b7e21"  # the first patient's ward: the name-leak train names a file after it
FAILED = "the train failed (its code raised an error or exited with one)"


@pytest.fixture(scope="module")
def covert(localnet, tmp_path_factory):
    """Two stations: covert-small holds 3 patients, covert-big 30."""
    import docker

    probe = "import trains.runtime.refusal"
    try:
        docker.from_env().containers.run(
            "pht-base:latest", ["-c", probe], entrypoint="python3", remove=True, network_mode="none"
        )
    except docker.errors.ContainerError:
        pytest.fail("pht-base:latest predates runtime refusals: run compose/base/build-base.sh")
    net = localnet
    root = tmp_path_factory.mktemp("covert")
    identity, keys, token = net.add_researcher("dr-covert")
    stations: dict[str, Identity] = {}
    for name, rows in (("covert-small", 3), ("covert-big", 30)):
        frame = pd.DataFrame(
            {
                "age": [AGE] + [40 + i % 30 for i in range(rows - 1)],
                "ward": [WARD] + ["cardio"] * (rows - 1),
            }
        )
        csv = root / f"{name}.csv"
        frame.to_csv(csv, index=False)
        stations[name] = net.add_station(name, {"cohort": csv}, trusted=[identity]).identity
        net.start_station(name)
    researcher = Researcher(
        Identity.load(keys),
        CentralClient(net.central_url, token.read_text().strip()),
        trust=net.trust(),
    )
    yield net, researcher, stations
    researcher.close()


def travel(covert, image_for, train: str, route: list[str], on_refusal: str = "fail") -> dict:
    """Submit ``train`` on ``route`` (each stop's keys authenticated by the local network's
    root, as the stations pinning that root require) and wait until it finishes; return
    its final status."""
    _, researcher, _ = covert
    folder = ATTACKS / train
    image = image_for(folder)
    stops = researcher.route_stops(route)
    manifest = researcher.make_manifest(folder, image, stops, on_refusal=on_refusal)
    train_id = researcher.submit_manifest(manifest)
    status = researcher.wait(train_id, timeout_s=600, poll_s=0.2)
    return status


def central_database_text(net) -> str:
    """Every text value in central's database, as one string."""
    db = sqlite3.connect(net.central_dir / "central.db")
    try:
        parts = []
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in db.execute(f'SELECT * FROM "{table}"'):
                parts += [str(v) for v in row if v is not None]
        return "\n".join(parts)
    finally:
        db.close()


def test_a_data_dependent_exit_code_reaches_no_one(covert, image_for):
    """The train exits with the first patient's age: central and the researcher learn only
    that it failed."""
    net = covert[0]
    status = travel(covert, image_for, "exit_code_leak", ["covert-big"])
    assert status["status"] == "failed"
    assert FAILED in status["error"]
    (hop,) = status["hops"]
    for text in (status["error"], hop["error"]):
        assert str(AGE) not in text.replace(status["train_id"], ""), text
    assert f"code {AGE}" not in central_database_text(net)
    assert "exited with code" not in central_database_text(net)


def test_an_output_named_after_patient_data_is_not_named_in_the_failure(covert, image_for):
    """An undeclared output file named after a patient's value fails the hop; the refusal
    says which rule the output broke, never the file's name."""
    net = covert[0]
    status = travel(covert, image_for, "name_leak", ["covert-big"])
    assert status["status"] == "failed"
    assert "the output does not match" in status["error"]
    assert WARD not in status["error"]
    assert WARD not in central_database_text(net)


def test_a_runtime_refusal_reaches_the_researcher_as_its_fixed_message(covert, image_for):
    status = travel(covert, image_for, "refuses_few_rows", ["covert-small"])
    assert status["status"] == "failed"
    assert "TrainRefused: the train refused (too_few_rows)" in status["error"]
    assert REFUSALS["too_few_rows"] in status["error"]
    assert "3 complete rows" not in status["error"]  # the train's own words stay local


def test_a_runtime_refusal_is_skipped_on_a_skip_route(covert, image_for, tmp_path):
    """covert-small refuses (3 rows < min_rows): on a skip route it passes the (empty)
    state on with a signed ``skipped`` receipt carrying the fixed message; covert-big
    counts its 30 rows; the researcher verifies the chain."""
    _, researcher, _ = covert
    status = travel(
        covert, image_for, "refuses_few_rows", ["covert-small", "covert-big"], on_refusal="skip"
    )
    assert status["status"] == "done", status
    first = status["hops"][0]
    assert first["status"] == "skipped"
    assert REFUSALS["too_few_rows"] in first["error"]
    result = researcher.result(status["train_id"], tmp_path / "out")
    assert result.state == {}  # the state stayed at covert-big; the count was released
    assert result.quantity("rows")["counts"] == [[30]]  # covert-big's alone
    skipped = result.hops[0]
    assert skipped.kind == "skipped" and REFUSALS["too_few_rows"] in (skipped.reason or "")


def test_a_skip_route_where_every_stop_refuses_fails(covert, image_for):
    """Issue 17, reproduction 4: a refusal at the last stop (here the only one) is not
    skipped, since finalize and disclosure control run there: the train fails, and the
    researcher gets no verified empty result."""
    status = travel(covert, image_for, "refuses_few_rows", ["covert-small"], on_refusal="skip")
    assert status["status"] == "failed", status
    assert [h["status"] for h in status["hops"]] == ["failed"]
    assert REFUSALS["too_few_rows"] in status["error"]
    assert "is the last hop" in status["error"]


def test_an_output_path_the_host_cannot_hold_is_not_quoted(docker_required, tmp_path):
    """Folders named after a patient's ward, nested to just under the container's path
    limit: under the station's longer work folder the copy fails, and the error that would
    quote the path stays in the hop's log. Real container, real copy."""
    import docker

    from station.outcome import contained
    from station.runner import DockerRunner
    from tests.test_sandbox_attacks import DOCKERFILE, LIMITS, SMALL
    from trains.errors import TrainFailed

    client = docker.from_env(timeout=300)
    context = tmp_path / "context"
    (context / "train").mkdir(parents=True)
    (context / "Dockerfile").write_text(DOCKERFILE)
    for name in ("train.py", "train.toml"):
        (context / "train" / name).write_text((ATTACKS / "deep_names" / name).read_text())
    image, _ = client.images.build(path=str(context), tag="pht-attack/deep_names:test", rm=True)
    work = tmp_path / ("w" * 100)  # a station's work folder is longer than /pht/output
    folders = {n: work / n for n in ("input", "data", "output")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    (folders["data"] / "cohort").mkdir()
    (folders["data"] / "cohort" / "d.csv").write_text(f"age,ward\n61,{WARD}\n")
    for path in [work, *work.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    log = tmp_path / "hop.log"
    runner = DockerRunner(LIMITS)
    with pytest.raises(TrainFailed) as caught:
        contained(
            lambda: runner.run(
                str(image.id),
                input_dir=folders["input"],
                data_dir=folders["data"],
                output_dir=folders["output"],
                env={"PHT_MODE": "local", "PHT_STATION": "s", "PHT_ROUND": "0", "PHT_HOP": "0"},
                resources=SMALL,
            ),
            log,
        )
    assert WARD not in str(caught.value) and "could not be copied out" in str(caught.value)
    assert WARD in log.read_text()
    client.images.remove("pht-attack/deep_names:test", force=True)
