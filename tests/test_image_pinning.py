"""The image is pinned by digest: a re-pushed tag changes nothing that runs, and a digest
the registry does not hold is refused with a reason. Real registry, Docker and stations."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from central.client import CentralClient
from train_builder.image import build_image, push_image
from train_builder.localnet import LocalNet
from train_builder.researcher import Researcher
from trains.errors import ImageError, PolicyRejected
from trains.manifest import Image

COHORT = Path(__file__).resolve().parents[1] / "trains" / "reference" / "cohort"


@pytest.fixture(scope="module")
def pinning(localnet, image_for, tmp_path_factory):
    researcher, _, token = localnet.add_researcher("pin-researcher")
    localnet.add_station(
        "pin-a", {"cohort": COHORT / "sample" / "hospital-a.csv"}, trusted=[researcher]
    )
    localnet.start_station("pin-a")
    central = CentralClient(localnet.central_url, token.read_text().strip())
    client = Researcher(researcher, central, trust=localnet.trust())
    return client, image_for(COHORT), tmp_path_factory.mktemp("pinning")


def test_a_re_pushed_tag_does_not_change_what_runs(localnet, pinning):
    client, original, tmp = pinning
    # an attacker with registry access pushes other code under the same name and tag
    evil = tmp / "cohort"
    shutil.copytree(COHORT, evil)
    (evil / "train.py").write_text(
        "def local(data, state, ctx):\n    return {'leaked': data['cohort'].to_dict()}\n"
    )
    _, tag = build_image(evil, localnet.registry)
    repushed = push_image(tag)
    assert repushed.repository == original.repository
    assert repushed.digest != original.digest

    train_id = client.submit(COHORT, original, ["pin-a"])
    assert client.wait(train_id, timeout_s=300)["status"] == "done"
    result = client.result(train_id, tmp / "result")
    # the pinned image ran, not the re-pushed tag (whose untyped state would be held)
    assert result.state == {} and sorted(result.files) == ["published.json", "state.json"]
    assert result.quantity("rows")["counts"] == [[180]]
    assert all(h.image_digest == original.digest for h in result.hops)


def test_a_digest_the_registry_does_not_hold_is_refused(pinning):
    client, original, _ = pinning
    unknown = Image(repository=original.repository, digest="sha256:" + "0" * 64)
    train_id = client.submit(COHORT, unknown, ["pin-a"])
    status = client.wait(train_id, timeout_s=300)
    assert status["status"] == "failed"
    assert "cannot pull" in status["error"]
    assert json.dumps(status).count("Traceback") == 0


# --- registries and pulls: exact host:port policy, deadlines and the size cap -------------


class StallingRegistry:
    """A deliberate fault the real registry cannot be made to show: it answers ``/v2/``
    like a registry, then never answers the manifest request (it holds the connection
    open until the test ends). Runs on 127.0.0.1; Docker Engine pulls from it for real."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.stalled = threading.Event()
        stop, stalled = self.stop, self.stalled

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/v2/":
                    self.send_response(200)
                    self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                stalled.set()
                stop.wait()

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stalling_registry() -> Iterator[StallingRegistry]:
    registry = StallingRegistry()
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def second_registry(localnet, tmp_path_factory) -> Iterator[str]:
    """Another real registry (Debian's docker-registry) on the same host, another port."""
    with LocalNet(tmp_path_factory.mktemp("second-registry")) as other:
        other.start_registry()
        assert other.registry != localnet.registry
        yield other.registry


def _tiny_image(registry: str, name: str, payload: bytes, extra: str = "") -> Image:
    """Build FROM scratch (no base layers to push), push, and drop the local copy."""
    import docker

    client = docker.from_env(timeout=300)
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = f"FROM scratch\nCOPY blob /blob\n{extra}".encode()
        for member, data in (("Dockerfile", dockerfile), ("blob", payload)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    tag = f"{registry}/pht/{name}:1"
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    image = push_image(tag)
    client.images.remove(tag)
    return image


def _station(localnet, name: str, researcher, registries: list[str], **settings) -> None:
    station = localnet.add_station(
        name, {"cohort": COHORT / "sample" / "hospital-a.csv"}, trusted=[researcher]
    )
    text = station.config.read_text()
    text = text.replace(
        f'allowed_registries = ["{localnet.registry}"]',
        "allowed_registries = [" + ", ".join(f'"{r}"' for r in registries) + "]",
    )
    for key, value in settings.items():
        section = "[policy]" if key == "max_image_mb" else "[station]"
        text = text.replace(section + "\n", f"{section}\n{key} = {value}\n", 1)
    station.config.write_text(text)
    localnet.start_station(name)


def _local_images(reference: str) -> list[object]:
    import docker

    client = docker.from_env()
    try:
        return [client.images.get(reference)]
    except docker.errors.ImageNotFound:
        return []


def test_an_image_from_another_registry_on_the_same_host_is_refused(
    localnet, pinning, second_registry, tmp_path
):
    """Issue 17, reproduction 1: the policy allowed 127.0.0.1:<A>, an image from
    127.0.0.1:<B> passed and was pulled. Both are real registries here."""
    client, _, _ = pinning
    elsewhere = _tiny_image(second_registry, "elsewhere", b"not a train")
    assert elsewhere.repository.startswith(second_registry)

    train_id = client.submit(COHORT, elsewhere, ["pin-a"])  # pin-a allows only registry A
    status = client.wait(train_id, timeout_s=300)

    assert status["status"] == "failed"
    assert f"registry {second_registry}" in status["error"]
    assert "not allowed" in status["error"]
    assert _local_images(elsewhere.reference) == []  # never pulled


def test_a_stalling_registry_fails_the_hop_and_the_station_takes_the_next_train(
    localnet, image_for, stalling_registry
):
    """Issue 17, reproduction 2: a registry that stalls on the manifest kept a hop running
    for 12+ minutes and the next train queued. Now the pull ends after pull_stall_s."""
    researcher, _, token = localnet.add_researcher("stall-researcher")
    registries = [localnet.registry, stalling_registry.address]
    _station(localnet, "stall-a", researcher, registries, pull_stall_s=2, pull_timeout_s=60)
    client = Researcher(
        researcher,
        CentralClient(localnet.central_url, token.read_text().strip()),
        trust=localnet.trust(),
    )
    stuck = Image(repository=f"{stalling_registry.address}/pht/stall", digest="sha256:" + "a" * 64)

    first = client.submit(COHORT, stuck, ["stall-a"])
    second = client.submit(COHORT, image_for(COHORT), ["stall-a"])

    failed = client.wait(first, timeout_s=300)
    assert stalling_registry.stalled.is_set()  # Docker really waited on the manifest
    assert failed["status"] == "failed"
    assert "stalled: no progress for the station's pull_stall_s of 2s" in failed["error"]
    assert client.wait(second, timeout_s=300)["status"] == "done"


def test_a_pull_over_max_image_mb_is_stopped_while_it_downloads(localnet):
    """A 3 MB layer against a 1 MB cap: the pull stops on Docker's first progress line
    (declared layer sizes and downloaded bytes are summed), and nothing is kept."""
    import docker

    from station.pull import PullLimits
    from station.runner import DockerRunner

    big = _tiny_image(localnet.registry, "big", os.urandom(3 * 1024 * 1024))

    with pytest.raises(ImageError, match="larger than this station's max_image_mb of 1;"):
        DockerRunner().pull(big, PullLimits(max_image_mb=1))

    assert _local_images(big.reference) == []
    DockerRunner().pull(big, PullLimits(max_image_mb=4))  # within the cap it is pulled
    assert len(_local_images(big.reference)) == 1
    docker.from_env().images.remove(big.reference)


def test_an_image_over_max_image_mb_unpacked_is_refused(localnet, pinning):
    """The unpacked size counts too (the base layers are already here: nothing downloads)."""
    from station.pull import PullLimits
    from station.runner import DockerRunner

    _, cohort, _ = pinning
    with pytest.raises(ImageError, match=r"max_image_mb of 100 \(unpacked: \d+ MB\)"):
        DockerRunner().pull(cohort, PullLimits(max_image_mb=100))


def test_showing_a_refused_trains_code_never_pulls_from_a_registry_not_allowed(
    localnet, second_registry
):
    """``pht-station show`` pulls the image to show its code, also for a refused hop."""
    from station.config import Policy, StationConfig, StationInfo
    from station.inspect import train_files
    from station.runner import DockerRunner

    elsewhere = _tiny_image(second_registry, "shown", b"not a train")
    config = StationConfig(
        station=StationInfo(name="show-a", central_url=localnet.central_url),
        policy=Policy(allowed_registries=[localnet.registry]),
    )
    with pytest.raises(PolicyRejected, match="not allowed"):
        train_files(DockerRunner(), elsewhere, config)
    assert _local_images(elsewhere.reference) == []


def test_a_pulled_image_that_declares_volumes_is_refused(localnet):
    """Checked after every pull (and again before a run: tests/test_hostile_images.py)."""
    from station.pull import PullLimits
    from station.runner import DockerRunner

    volumes = _tiny_image(localnet.registry, "volumes", b"x", extra="VOLUME /scratch\n")
    with pytest.raises(ImageError, match="declares VOLUME /scratch"):
        DockerRunner().pull(volumes, PullLimits())
    assert _local_images(volumes.reference) == []  # not kept
