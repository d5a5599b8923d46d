"""compose/ deploys the real thing (issue 11 item 2): the central stack (central under
uvicorn workers, PostgreSQL, the registry) and two stations, each a ``docker-compose``
project of images built locally by ``compose/central/build-images.sh``, driven by Debian's
``docker-compose``. A cohort train travels both stations to a verified result; the whole
network is taken down (``down`` without ``-v``) and brought up again; the train, its result
and the pushed image are still there, and a second train runs.

Nothing is mocked. Every compose project, volume and image tag carries this run's id.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.released import assert_cohort_released_matches_pooled, read_published
from tests.test_end_to_end import hospital_frame
from train_builder.localnet import free_port, wait_http
from trains.enrolment import NetworkRoot, enrol
from trains.keys import Identity

REPO = Path(__file__).resolve().parents[1]
CENTRAL_YML = REPO / "compose" / "central" / "docker-compose.yml"
STATION_YML = REPO / "compose" / "station" / "docker-compose.yml"
TRAIN = REPO / "trains" / "reference" / "cohort"
STATIONS = ("hosp-a", "hosp-b")


class Laps:
    """Wall time of each phase, printed at the end (``-s``) for the deploy notes."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.laps: list[tuple[str, float]] = []

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        self.laps.append((phase, now - self.last))
        self.last = now

    def report(self) -> str:
        parts = [f"{phase} {seconds:.0f}s" for phase, seconds in self.laps]
        return f"compose test {time.monotonic() - self.start:.0f}s: " + ", ".join(parts)


class Compose:
    """One ``docker-compose`` project: its file, name and environment."""

    def __init__(self, file: Path, project: str, env: dict[str, str]) -> None:
        self.file, self.project, self.env = file, project, {**os.environ, **env}

    def __call__(self, *args: str, stdin: bytes | None = None) -> str:
        out = self.run(*args, stdin=stdin)
        assert out is not None
        return out.decode()

    def run(self, *args: str, stdin: bytes | None = None, check: bool = True) -> bytes | None:
        """``docker-compose`` with bytes out; None for a failure when ``check`` is off."""
        done = subprocess.run(
            ["docker-compose", "-p", self.project, "-f", str(self.file), *args],
            input=stdin,
            capture_output=True,
            env=self.env,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            output = done.stdout.decode() + done.stderr.decode()
            assert not check, f"docker-compose {' '.join(args)} failed:\n{output}"
            return None
        return done.stdout

    def logs(self) -> str:
        try:
            return self("logs", "--no-color", "--tail", "40")
        except AssertionError as exc:
            return str(exc)


def pht_train(cli: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "train_builder.cli", *cli, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def central_admin(central: Compose, *args: str, files: tuple[Path, ...] = ()) -> str:
    """``pht-central admin ...`` inside the central container, as its operator runs it;
    the files it names are copied in first (``docker cp``)."""
    container = central("ps", "-q", "central").strip()
    for path in files:
        path.chmod(0o644)  # read by the unprivileged user central runs as
        subprocess.run(["docker", "cp", str(path), f"{container}:/tmp/{path.name}"], check=True)
    return central("exec", "-T", "central", "pht-central-here", "admin", *args)


@pytest.fixture(scope="module")
def network(docker_required, tmp_path_factory) -> Iterator[dict[str, object]]:
    if shutil.which("docker-compose") is None:
        message = "docker-compose is not installed; run scripts/setup.sh"
        if os.environ.get("PHT_REQUIRE_DOCKER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    laps = Laps()
    # only tags when nothing changed; a first build takes minutes
    subprocess.run([str(REPO / "compose" / "central" / "build-images.sh")], check=True)
    laps("images")

    run = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("compose")
    secrets = root / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "db_password").write_text(uuid.uuid4().hex + "\n")
    (secrets / "db_password").chmod(0o600)
    central_port, registry_port = free_port(), free_port()
    registry = f"127.0.0.1:{registry_port}"
    central_url = f"http://127.0.0.1:{central_port}"
    central = Compose(
        CENTRAL_YML,
        f"phtcompose{run}",
        {
            "PHT_SECRETS_DIR": str(secrets),
            "PHT_CENTRAL_PORT": str(central_port),
            "PHT_REGISTRY_PORT": str(registry_port),
        },
    )
    stations = {
        name: Compose(
            STATION_YML,
            f"phtcompose{run}{name.replace('-', '')}",
            {
                "PHT_STATION_DIR": str(root / "stations" / name),
                "PHT_STATION_DATA": str(root / "data" / name),
            },
        )
        for name in STATIONS
    }
    projects = [central, *stations.values()]
    try:
        central("up", "-d")
        wait_http(f"{central_url}/healthz", timeout_s=120)
        laps("central up")

        network_root = NetworkRoot.generate(f"compose-{run}")
        researcher = Identity.generate(f"dr-compose-{run}")
        researcher.save(root / "researcher" / "keys")
        public = root / "researcher.public.json"
        public.write_text(researcher.public.model_dump_json())
        out = central_admin(central, "add-researcher", f"/tmp/{public.name}", files=(public,))
        token = root / "researcher" / "token"
        token.write_text(out.strip().splitlines()[-1] + "\n")
        admin = central_admin(central, "add-admin", f"root-{run}").strip().splitlines()[-1]

        frames = {}
        for i, name in enumerate(STATIONS):
            frames[name] = hospital_frame(seed=20 + i, n=70 + 20 * i)
            directory = root / "stations" / name
            data = root / "data" / name
            data.mkdir(parents=True)
            frames[name].to_csv(data / "cohort.csv", index=False)
            identity = Identity.generate(name)
            identity.save(directory / "keys")
            # stations over the admin API (the researcher went through the CLI above)
            added = httpx.post(
                f"{central_url}/api/v1/admin/parties",
                headers={"Authorization": f"Bearer {admin}"},
                json={
                    "role": "station",
                    "name": name,
                    "identity": identity.public.model_dump(mode="json"),
                    "enrolment": enrol(network_root, identity.public, 30).model_dump(mode="json"),
                },
                timeout=30,
            )
            assert added.status_code == 201, added.text
            (directory / "token").write_text(added.json()["token"] + "\n")
            (directory / "token").chmod(0o600)
            (directory / "station.toml").write_text(
                "[station]\n"
                f'name = "{name}"\n'
                f'central_url = "{central_url}"\n'
                "poll_interval_s = 0.5\n\n"
                "[datasets.cohort]\n"
                'type = "csv"\n'
                f'path = "{data / "cohort.csv"}"\n\n'
                "[policy]\n"
                f'trusted_signers = ["{researcher.public.signing_fingerprint}"]\n'
                f'allowed_registries = ["{registry}"]\n'
                f'network_root = "{network_root.public.signing_fingerprint}"\n'
            )
            stations[name]("up", "-d")
        laps("parties registered, stations up")

        cli = ["--central", central_url, "--token-file", str(token),
               "--keys", str(root / "researcher" / "keys"),
               "--network-root", network_root.public.signing_fingerprint]  # fmt: skip
        yield {
            "central": central,
            "stations": stations,
            "cli": cli,
            "frames": frames,
            "registry": registry,
            "central_url": central_url,
            "root": root,
            "laps": laps,
            "admin": admin,
        }
    finally:
        for project in reversed(projects):
            with _quietly():
                project("down", "-v", "--remove-orphans")
        # untag this run's train images only (their layers may be shared with others')
        for line in subprocess.run(
            ["docker", "images", "--filter", f"reference={registry}/*/*",
             "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True, text=True, check=False,
        ).stdout.split():  # fmt: skip
            subprocess.run(["docker", "rmi", line], capture_output=True, check=False)


class _quietly:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True  # teardown goes on when one project is already gone


def travel(net: dict[str, object], train: Path) -> tuple[str, dict[str, object]]:
    """Submit the built train along both stations, wait, fetch and verify the result."""
    cli: list[str] = net["cli"]  # type: ignore[assignment]
    submitted = pht_train(cli, "submit", str(train), "--route", ",".join(STATIONS), "--yes")
    assert submitted.returncode == 0, submitted.stderr
    train_id = submitted.stdout.strip().splitlines()[-1].split()[-1]
    waited = pht_train(cli, "wait", train_id, "--timeout", "300")
    assert waited.returncode == 0, waited.stdout + waited.stderr + _all_logs(net)
    return train_id, fetch(net, train_id)


def fetch(net: dict[str, object], train_id: str) -> dict[str, object]:
    out: Path = net["root"] / f"result-{uuid.uuid4().hex[:6]}"  # type: ignore[operator]
    result = pht_train(net["cli"], "result", train_id, "--out", str(out), "--quiet")  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    assert f"verified {len(STATIONS)} receipts" in result.stdout
    return read_published(out)  # the released quantities (the state stays: {})


def _all_logs(net: dict[str, object]) -> str:
    projects = [net["central"], *net["stations"].values()]  # type: ignore[attr-defined]
    return "\n".join(p.logs() for p in projects)


def test_a_dashboard_session_holds_on_every_central_worker(network):
    """Central runs several uvicorn workers behind one port: a session opened on one must
    hold on the others (sessions and the login form's CSRF key are in the database). Each
    request is a new connection, so the kernel spreads them over the workers."""
    base = f"{net_url(network)}/dashboard"
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(limits=fresh, follow_redirects=False, timeout=30) as browser:
        for _ in range(3):  # a login form from any worker is taken by any worker
            form = browser.get(f"{base}/login")
            csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            logged = browser.post(
                f"{base}/login", data={"csrf": csrf, "token": str(network["admin"])}
            )
            assert logged.status_code == 303 and logged.headers["location"] == "/dashboard/"
        answers = [browser.get(f"{base}/parties").status_code for _ in range(30)]
    assert answers == [200] * 30, answers


def net_url(net: dict[str, object]) -> str:
    return str(net["central_url"])


def test_a_train_and_its_result_survive_down_and_up(network, tmp_path):
    net = network
    central: Compose = net["central"]
    stations: dict[str, Compose] = net["stations"]
    frames = list(net["frames"].values())

    # central runs as several uvicorn workers, as the unprivileged user
    processes = central("exec", "-T", "central", "ps", "-o", "user=,args=", "-u", "pht-central")
    assert processes.count("multiprocessing.spawn") >= 2, processes

    laps: Laps = net["laps"]
    train = tmp_path / "cohort"
    shutil.copytree(TRAIN, train)
    built = pht_train(net["cli"], "build", str(train), "--registry", net["registry"])
    assert built.returncode == 0, built.stderr
    image = json.loads((train / ".pht-image.json").read_text())
    laps("train built and pushed")

    first, state = travel(net, train)
    assert_cohort_released_matches_pooled(state, frames)
    laps("first train")

    # the backup docs/deploy.md describes: a dump of the database and a tar of the blob
    # store, both naming the train
    assert first in central("exec", "-T", "-u", "postgres", "db", "pg_dump", "pht")
    blobs = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-v", f"{central.project}_blobs:/data:ro",
         "pht-app:latest", "tar", "-C", "/data", "-cf", "-", "."],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(blobs.stdout)) as tar:
        names = tar.getnames()
    assert any(first in name and name.endswith(".sealed") for name in names), names
    dump = central.run("exec", "-T", "-u", "postgres", "db", "pg_dump", "-Fc", "pht")
    laps("backup")

    # everything down (the volumes stay), then up again
    for project in [*stations.values(), central]:
        project("down")
    assert not central("ps", "-q").strip()
    central("up", "-d")
    wait_http(f"{net['central_url']}/healthz", timeout_s=120)
    for project in stations.values():
        project("up", "-d")
    laps("down and up")

    # nothing was lost: the train is done, its result verifies and is the same, the image
    # is still in the registry's volume
    status = pht_train(net["cli"], "status", first)
    assert status.returncode == 0 and "done" in status.stdout, status.stdout + status.stderr
    assert fetch(net, first) == state
    repository = image["repository"].split("/", 1)[1]
    manifest = httpx.get(
        f"http://{net['registry']}/v2/{repository}/manifests/{image['digest']}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                           "application/vnd.oci.image.manifest.v1+json"},
    )  # fmt: skip
    assert manifest.status_code == 200, manifest.text

    # a second train runs, its image pulled again from the restarted registry (untagged
    # here; its layers may be shared with other images, so they stay)
    for reference in (f"{image['repository']}@{image['digest']}", f"{image['repository']}:0.1.0"):
        subprocess.run(["docker", "rmi", reference], capture_output=True, check=False)
    second, again = travel(net, train)
    assert second != first
    assert_cohort_released_matches_pooled(again, frames)
    laps("second train")

    # the restore docs/deploy.md describes, into empty volumes: the first train's result
    # is served again and verifies
    central("down", "-v")
    central("up", "-d", "db")
    deadline = time.monotonic() + 120
    while central.run("exec", "-T", "db", "pg_isready", "-q", "-h", "127.0.0.1", "-U", "pht",
                      "-d", "pht", check=False) is None:  # fmt: skip
        assert time.monotonic() < deadline, central.logs()
        time.sleep(1)
    central.run("exec", "-T", "-u", "postgres", "db", "pg_restore", "--clean", "--if-exists",
                "-d", "pht", stdin=dump)  # fmt: skip
    subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", "-v", f"{central.project}_blobs:/data",
         "pht-app:latest", "sh", "-c", "tar -C /data -xf - && chown -R 10002:10002 /data"],
        input=blobs.stdout, capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    central("up", "-d")
    wait_http(f"{net['central_url']}/healthz", timeout_s=120)
    assert fetch(net, first) == state
    laps("restore")
    print(laps.report())
