"""The station, not the image, decides how a train's container runs (station/image_override.py).

Each test builds an image FROM pht-base:latest whose configuration sets one field to a
hostile value (ENTRYPOINT, CMD, ENV, VOLUME, HEALTHCHECK, USER, WORKDIR, STOPSIGNAL, LABEL),
runs it through the real ``DockerRunner.run`` and checks three things: what the train saw
from inside (a probe train reports it), how Docker actually configured every container the
runner created (each is inspected right after it was created: a spy around the real
``create`` call), and that nothing is left on the host (containers, named and anonymous
volumes).
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from station.image_override import RUNTIME, RUNTIME_ENV
from station.runner import CONTAINER_USER, DockerRunner, RunResult, SandboxLimits
from trains.errors import ImageError
from trains.manifest import Resources

pytestmark = pytest.mark.docker

SMALL = Resources(memory_mb=128, cpus=0.5, timeout_s=60, max_output_mb=8)
HOP_ENV = {"PHT_MODE": "local", "PHT_STATION": "attacked", "PHT_ROUND": "0", "PHT_HOP": "0"}
PROBE = '''\
"""Reports what the container looks like from inside."""
import os, sys, time, signal
from pathlib import Path

def local(data, state, ctx):
    if Path("/opt/train/LOOP").exists():  # the STOPSIGNAL image: never ends by itself
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(0.1)
    healthcheck = Path("/pht/output/healthcheck")
    if Path("/opt/train/WAIT_FOR_HEALTHCHECK").exists():
        for _ in range(40):  # the image's healthcheck would run every second
            if healthcheck.exists():
                break
            time.sleep(0.1)
    return {
        "probe": True,
        "env": dict(os.environ),
        "cmdline": Path("/proc/self/cmdline").read_text().split("\\0")[:-1],
        "cwd": os.getcwd(),
        "uid": os.getuid(),
        "healthcheck_ran": healthcheck.exists(),
        "mountinfo": Path("/proc/self/mountinfo").read_text(),
        "state_seen": state,
        "data_seen": Path("/pht/data/cohort/data.csv").read_text(),
    }
'''
TOML = """\
datasets = []
outputs = ["state.json"]

[train]
name = "probe"
version = "0.1.0"
description = "reports what the container looks like from inside"
"""
EVIL = "open('/pht/output/state.json', 'w').write('{\"evil\": true}')\n"
HOSTILE = {
    "ENTRYPOINT": 'ENTRYPOINT ["python3", "/opt/evil.py"]',
    "CMD": 'ENTRYPOINT ["python3"]\nCMD ["/opt/evil.py"]',
    "ENV": "ENV LD_PRELOAD=/opt/evil.so PYTHONSTARTUP=/opt/evil.py PYTHONPATH=/opt/evil "
    "PYTHONINSPECT=1 PHT_MODE=aggregate PHT_EVIL=1 IMAGE_SECRET=from-the-image",
    "HEALTHCHECK": "HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD "
    "[\"python3\", \"-c\", \"open('/pht/output/healthcheck', 'w').write('ran')\"]",
    "USER": "USER 0:0",
    "WORKDIR": "WORKDIR /opt/evil-workdir",
    "STOPSIGNAL": "STOPSIGNAL SIGCONT",
    "LABEL": 'LABEL pht="evil" pht.runner="someone-else" pht.run="other" org.evil="1"',
    "VOLUME": "VOLUME /scratch /pht/evil",
}
SETUP = {  # run as root before the hostile line: tells the probe what to do
    "HEALTHCHECK": "RUN touch /opt/train/WAIT_FOR_HEALTHCHECK",
    "STOPSIGNAL": "RUN touch /opt/train/LOOP",
}


@pytest.fixture(scope="module")
def image_of(docker_required) -> Iterator[Callable[[str], str]]:
    """``image_of(field) -> image id``: the probe train with one hostile config field;
    tags are unique to this session (other test runs share the Docker Engine)."""
    import docker

    client = docker.from_env(timeout=300)
    prefix = f"pht-hostile-{uuid.uuid4().hex[:8]}"
    built: dict[str, str] = {}

    def build(field: str) -> str:
        if field not in built:
            lines = ["FROM pht-base:latest", "USER 0:0", "COPY evil.py /opt/evil.py"]
            lines += ["COPY --chown=0:0 train/ /opt/train/", SETUP.get(field, "")]
            lines += ["USER 10001:10001", HOSTILE.get(field, "")]
            files = {
                "Dockerfile": "\n".join(lines) + "\n",
                "evil.py": EVIL,
                "train/train.py": PROBE,
                "train/train.toml": TOML,
            }
            context = io.BytesIO()
            with tarfile.open(fileobj=context, mode="w") as tar:
                for name, text in files.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(text.encode())
                    tar.addfile(info, io.BytesIO(text.encode()))
            context.seek(0)
            image, _ = client.images.build(
                fileobj=context, custom_context=True, tag=f"{prefix}/{field.lower()}:test", rm=True
            )
            built[field] = str(image.id)
        return built[field]

    yield build
    for field in built:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(f"{prefix}/{field.lower()}:test")


@pytest.fixture(scope="module")
def runner(docker_required) -> DockerRunner:
    return DockerRunner(SandboxLimits(pids=64, tmp_mb=16, shm_mb=8))


@pytest.fixture
def created(monkeypatch) -> list[dict[str, Any]]:
    """Docker's own view of every container the runner creates, inspected at creation."""
    from docker.models.containers import ContainerCollection

    seen: list[dict[str, Any]] = []
    real = ContainerCollection.create

    def spy(self, *args, **kwargs):
        container = real(self, *args, **kwargs)
        container.reload()
        seen.append(container.attrs)
        return container

    monkeypatch.setattr(ContainerCollection, "create", spy)
    return seen


@pytest.fixture
def hop(tmp_path) -> dict[str, Path]:
    """A hop's folders, named as station/hop.py names them, under a recognisable path."""
    work = tmp_path / "station-work-secret" / "hop-3-abcdef"
    dirs = {n: work / n for n in ("input", "data", "output")}
    (dirs["data"] / "cohort").mkdir(parents=True)
    dirs["input"].mkdir()
    dirs["output"].mkdir()
    (dirs["input"] / "state.json").write_text(json.dumps({"count": 41}))
    (dirs["data"] / "cohort" / "data.csv").write_text("id,age\n1,50\n")
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dirs


def run(runner: DockerRunner, image_id: str, hop: dict[str, Path], **kw: Any) -> RunResult:
    return runner.run(
        image_id,
        input_dir=hop["input"],
        data_dir=hop["data"],
        output_dir=hop["output"],
        env=HOP_ENV,
        resources=kw.get("resources", SMALL),
    )


def assert_nothing_left(runner: DockerRunner, created: list[dict[str, Any]]) -> None:
    """No container of this runner, no volume it labelled, no volume any container had."""
    import docker

    client = docker.from_env()
    label = f"pht.runner={runner.runner_id}"
    assert client.containers.list(all=True, filters={"label": label}) == []
    assert client.volumes.list(filters={"label": label}) == []
    for attrs in created:
        for mount in attrs.get("Mounts") or []:
            if mount.get("Type") == "volume":
                with pytest.raises(docker.errors.NotFound):
                    client.volumes.get(mount["Name"])


def state(hop: dict[str, Path]) -> dict[str, Any]:
    return json.loads((hop["output"] / "state.json").read_text())


def assert_station_config(runner: DockerRunner, created: list[dict[str, Any]]) -> None:
    """Every container of the hop runs as the station says, whatever the image says."""
    # the holder and the train's container; with them the loader on the archive path, or
    # on a runner's first hop the never-started container that proves the direct path
    kinds = [attrs["Name"].lstrip("/").split("-")[1] for attrs in created]
    assert kinds in (["hold", "load", "hop"], ["probe", "hold", "hop"], ["hold", "hop"]), kinds
    for attrs in created:
        config = attrs["Config"]
        assert config["User"] == CONTAINER_USER
        assert config["WorkingDir"] == "/pht"
        assert config["Healthcheck"]["Test"] == ["NONE"]  # timings may stay; it never runs
        assert config["StopSignal"] == "SIGKILL"
        assert config["Labels"]["pht"] == "hop"
        assert config["Labels"]["pht.runner"] == runner.runner_id
        assert not config.get("Volumes")
        env = dict(entry.partition("=")[::2] for entry in config["Env"])
        for key, value in env.items():
            assert value in ("", RUNTIME_ENV.get(key), HOP_ENV.get(key)), (key, value)
        assert [m["Type"] for m in attrs["Mounts"]] == ["volume"] * len(attrs["Mounts"])
    train = created[-1]["Config"]
    assert train["Entrypoint"] == RUNTIME
    assert not train["Cmd"]


FIELDS = ["ENTRYPOINT", "CMD", "ENV", "HEALTHCHECK", "USER", "WORKDIR", "LABEL"]


@pytest.mark.parametrize("field", FIELDS)
def test_hostile_image_config_is_overridden(runner, image_of, created, hop, field):
    result = run(runner, image_of(field), hop)

    assert result.ok, result.log
    seen = state(hop)
    assert seen["probe"] is True and "evil" not in seen  # the runtime ran the train
    assert seen["cmdline"] == RUNTIME
    assert seen["uid"] == 10001
    assert seen["cwd"] == "/pht"
    assert seen["healthcheck_ran"] is False
    assert not (hop["output"] / "healthcheck").exists()
    for key, value in seen["env"].items():  # Docker itself adds HOSTNAME and HOME
        expected = {**RUNTIME_ENV, **HOP_ENV, "HOSTNAME": "pht-train", "HOME": "/nonexistent"}
        assert value in ("", expected.get(key)), (key, value)
    assert {**RUNTIME_ENV, **HOP_ENV}.items() <= seen["env"].items()
    if field == "ENV":
        assert seen["env"]["IMAGE_SECRET"] == seen["env"]["LD_PRELOAD"] == ""
        assert seen["env"]["PHT_MODE"] == "local" and seen["env"]["PHT_EVIL"] == ""
    assert seen["state_seen"] == {"count": 41}
    assert_station_config(runner, created)
    assert_nothing_left(runner, created)


def test_hostile_stop_signal_is_replaced_and_the_timeout_still_kills(
    runner, image_of, created, hop
):
    result = run(
        runner, image_of("STOPSIGNAL"), hop, resources=SMALL.model_copy(update={"timeout_s": 3})
    )

    assert result.timed_out and not result.ok
    assert_station_config(runner, created)
    assert_nothing_left(runner, created)


def test_an_image_that_declares_volumes_is_refused_before_anything_is_created(
    runner, image_of, created, hop
):
    with pytest.raises(ImageError, match="declares VOLUME /pht/evil, /scratch"):
        run(runner, image_of("VOLUME"), hop)

    assert created == []
    assert_nothing_left(runner, created)
    assert list(hop["output"].iterdir()) == []


def test_the_container_sees_no_path_of_the_station_host(runner, image_of, created, hop):
    result = run(runner, image_of("plain"), hop)

    assert result.ok, result.log
    seen = state(hop)
    assert seen["state_seen"] == {"count": 41}
    assert seen["data_seen"] == "id,age\n1,50\n"
    mountinfo = seen["mountinfo"]
    work = hop["input"].parent
    for secret in (str(work), "station-work-secret", work.name, str(hop["input"].parent.parent)):
        assert secret not in mountinfo
    # each mount's root (4th field) is "/" or a path of Docker's own (volumes, /etc files)
    for line in mountinfo.splitlines():
        root, target = line.split()[3:5]
        if target.startswith("/pht/"):
            assert root == "/" or root.endswith("/_data"), line
    assert_nothing_left(runner, created)
