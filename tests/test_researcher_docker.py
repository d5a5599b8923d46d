"""The researcher's Docker paths, for real: ``pht-train test --in-docker`` in the station's
sandbox (with a requirements.txt installed offline from a wheelhouse), and a train on a real
network (registry, central, station daemons as processes) followed with ``watch``, refused
by a station that does not trust its signer, and failing at a hop where its code raises."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import docker
import pandas as pd
import pytest

from tests.released import assert_cohort_released_matches_pooled, by_name, read_published
from train_builder.templates import scaffold

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "trains" / "reference" / "cohort" / "sample"
RAISES = (
    "def local(data, state, ctx):\n"
    "    if ctx.hop == 1:\n"
    "        return {'mean': len(data['cohort']) // 0}\n"
    "    return {'mean': 0}\n"
)


def pht_train(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "train_builder.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env=env,
    )


def make_wheel(folder: Path, name: str, version: str, source: str) -> Path:
    """A minimal pure-Python wheel, written by hand: the wheelhouse needs no network."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": source,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture
def local_images():
    """Remove the images this test builds for local runs (never pushed)."""
    made: list[str] = []
    yield made
    client = docker.from_env()
    for tag in made:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag, force=True)


def test_local_test_in_docker_installs_requirements_offline(
    docker_required, tmp_path, local_images
):
    name = f"deps-{uuid.uuid4().hex[:6]}"
    train = tmp_path / name
    scaffold(train, "cohort")
    code = (train / "train.py").read_text()
    (train / "train.py").write_text(
        "import pht_offline_dep\n" + code + "\n\n_finalize = finalize\n\n"
        "def finalize(state, ctx):\n"
        "    ctx.publish.statistic('dep/mark', 'other', pht_offline_dep.MARK, state['rows'])\n"
        "    return _finalize(state, ctx)\n"
    )
    (train / "requirements.txt").write_text("pht-offline-dep==1.0\n")
    wheelhouse = tmp_path / "wheels"
    make_wheel(wheelhouse, "pht_offline_dep", "1.0", "MARK = 1729  # installed offline\n")
    local_images.append(f"pht-local/pht/{name}:0.1.0")
    a, b = SAMPLE / "hospital-a.csv", SAMPLE / "hospital-b.csv"
    done = pht_train(
        "test", str(train), "--in-docker", "--wheelhouse", str(wheelhouse),
        "--data", str(a), "--data", str(b), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "in containers" in done.stdout and "hop 1 round 0 hospital-b" in done.stdout
    published = read_published(tmp_path / "out")
    assert by_name(published)["dep/mark"]["value"] == 1729  # the offline wheel's number
    assert_cohort_released_matches_pooled(published, [pd.read_csv(a), pd.read_csv(b)])


def test_local_test_in_docker_shows_the_trains_own_traceback(
    docker_required, tmp_path, local_images
):
    name = f"raises-{uuid.uuid4().hex[:6]}"
    train = tmp_path / name
    scaffold(train, "cohort")
    (train / "train.py").write_text(RAISES)
    local_images.append(f"pht-local/pht/{name}:0.1.0")
    done = pht_train(
        "test", str(train), "--in-docker",
        "--data", str(SAMPLE / "hospital-a.csv"), "--data", str(SAMPLE / "hospital-b.csv"),
    )  # fmt: skip
    assert done.returncode == 1
    assert "hop 1 at hospital-b (round 0): the container exited with code 1" in done.stderr
    assert 'File "train.py", line 3, in local' in done.stderr
    assert "ZeroDivisionError" in done.stderr
    assert "/opt/pht" not in done.stderr and "Traceback (most recent" not in done.stderr


# -- on a real network ------------------------------------------------------------------


@pytest.fixture(scope="module")
def network(localnet, tmp_path_factory):
    """Two stations (daemons) trusting one researcher; a profile for that researcher."""
    tag = uuid.uuid4().hex[:6]
    root = tmp_path_factory.mktemp("rx")
    alice, keys, token = localnet.add_researcher(f"rx-alice-{tag}")
    stations = [f"rx-a-{tag}", f"rx-b-{tag}"]
    for station, sample in zip(stations, ("hospital-a", "hospital-b"), strict=True):
        localnet.add_station(station, {"cohort": SAMPLE / f"{sample}.csv"}, trusted=[alice])
        localnet.start_station(station)
    profile = root / "profile.toml"
    profile.write_text(
        f'central_url = "{localnet.central_url}"\ntoken_file = "{token}"\n'
        f'keys_dir = "{keys}"\nregistry = "{localnet.registry}"\n'
        f'network_root = "{localnet.network_root}"\n'
    )
    env = {**_base_env(), "PHT_PROFILE": str(profile)}
    return localnet, stations, env, tag


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PHT_")}


def test_a_train_travels_and_watch_follows_every_stop(network, tmp_path):
    net, stations, env, tag = network
    train = tmp_path / f"rx-cohort-{tag}"
    assert pht_train("init", str(train), "--template", "cohort", env=env).returncode == 0
    built = pht_train("build", str(train), env=env)
    assert built.returncode == 0, built.stderr
    assert f"pushed {net.registry}/pht/{train.name}@sha256:" in built.stdout
    submitted = pht_train("submit", str(train), "--route", ",".join(stations), "--yes", env=env)
    assert submitted.returncode == 0, submitted.stderr
    train_id = submitted.stdout.strip().splitlines()[-1].split()[-1]

    watched = pht_train("watch", "last", "--timeout", "300", env=env)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    lines = watched.stdout.splitlines()
    assert lines[0].startswith(f"train {train_id} ({train.name}):")
    for i, station in enumerate(stations):
        assert any(f"hop {i} round 0 {station}" in x and x.endswith("done") for x in lines)
    assert f"train {train_id}: done" in watched.stdout

    result = pht_train("result", "last", "--out", str(tmp_path / "result"), env=env)
    assert result.returncode == 0, result.stderr
    assert "verified 2 receipts" in result.stdout
    frames = [pd.read_csv(SAMPLE / f"{h}.csv") for h in ("hospital-a", "hospital-b")]
    assert_cohort_released_matches_pooled(read_published(tmp_path / "result"), frames)


def test_an_untrusted_signer_sees_the_stations_refusal(network, tmp_path):
    net, stations, _, tag = network
    _, keys, token = net.add_researcher(f"rx-mallory-{tag}")
    env = {**_base_env(), "PHT_CENTRAL_URL": net.central_url, "PHT_TOKEN_FILE": str(token),
           "PHT_KEYS_DIR": str(keys), "PHT_REGISTRY": net.registry,
           "PHT_NETWORK_ROOT": net.network_root}  # fmt: skip
    train = tmp_path / f"rx-mallory-{tag}"
    scaffold(train, "cohort")
    (train / ".pht-image.json").write_text(  # refused before any pull: no image needed
        json.dumps({"repository": f"{net.registry}/pht/x", "digest": "sha256:" + "1" * 64})
    )
    submitted = pht_train("submit", str(train), "--route", stations[1], "--yes", env=env)
    assert submitted.returncode == 0, submitted.stderr
    watched = pht_train("watch", "last", "--timeout", "120", env=env)
    assert watched.returncode == 1
    assert f"does not trust signer rx-mallory-{tag}" in watched.stdout
    status = pht_train("status", "last", env=env)
    assert "PolicyRejected" in status.stdout and f"hop 0 round 0 {stations[1]}" in status.stdout


def test_a_train_that_raises_fails_its_hop_with_a_reason(network, tmp_path):
    _, stations, env, tag = network
    train = tmp_path / f"rx-raises-{tag}"
    scaffold(train, "cohort")
    (train / "train.py").write_text(RAISES)
    assert pht_train("build", str(train), env=env).returncode == 0
    assert pht_train("submit", str(train), "--route", ",".join(stations), "--yes",
                     env=env).returncode == 0  # fmt: skip
    watched = pht_train("watch", "last", "--timeout", "300", env=env)
    assert watched.returncode == 1
    assert f"hop 1 at {stations[1]}: TrainFailed: the train failed" in watched.stdout
    assert "ZeroDivisionError" not in watched.stdout  # the log stays at the station
