"""secure = true on real stations: station daemons as separate processes with their own
keys, central, the registry, real containers. Cohort on a sequential route and FedAvg on a
parallel route joined at a station without data.

The trains run on an image whose runtime is this checkout's (``trains/runtime`` copied
over ``pht-base:latest``), so the test exercises the code under test even before the
shared base image is rebuilt. While the route runs, the test keeps a copy of every sealed
blob central stores and afterwards plays the curious station: it opens the first stop's
output with the second stop's own key (the one reader it was sealed to) and finds nothing
it can decode.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pandas as pd
import pytest

from tests.conftest import SITE_AGGREGATOR, SITE_SAMPLES, SITE_STATIONS
from tests.released import assert_cohort_released_matches_pooled, by_name, read_published
from tests.secure_route import secure_copy
from train_builder.image import build_image, push_image
from train_builder.local_run import run_local, stops_from_frames
from train_builder.localnet import LocalNet
from train_builder.researcher import Researcher
from trains import state_codec
from trains.runtime.masking import SECURE_FILE, RingOverflow, SecureParts, decode_sum
from trains.sealing import open_file, output_context

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "trains" / "reference"
STATIONS = SITE_STATIONS
AGGREGATOR = SITE_AGGREGATOR
SITES = SITE_SAMPLES
BUILT: list[str] = []  # image tags this module built, removed at its end
LEVELS = {
    "sex": ["F", "M"],
    "smoker": ["no", "yes"],
    "diagnosis": ["none", "hypertension", "copd", "t2_diabetes", "sarcoidosis"],
}


def sample(train: str) -> list[pd.DataFrame]:
    return [pd.read_csv(REFERENCE / train / "sample" / f"{site}.csv") for site in SITES]


@pytest.fixture(scope="module")
def secure_base() -> Iterator[str]:
    """``pht-base:latest`` with this checkout's runtime on top, tagged for this test."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "trains" / "runtime").rglob("*.py")):
        digest.update(path.read_bytes())
    tag = f"pht-base-secagg-test:{digest.hexdigest()[:12]}"
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        (context / "trains").mkdir()
        shutil.copy2(ROOT / "trains" / "__init__.py", context / "trains" / "__init__.py")
        shutil.copytree(
            ROOT / "trains" / "runtime",
            context / "trains" / "runtime",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        (context / "Dockerfile").write_text("FROM pht-base:latest\nCOPY trains /opt/pht/trains\n")
        client.images.build(path=str(context), tag=tag, rm=True)
    yield tag
    for train_tag in BUILT:  # the trains' images built on it, then the base itself
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(train_tag, force=True)
    client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def researcher(sites: Researcher) -> Researcher:
    """The session's three stations (conftest ``sites``: the cohort sample as 'counts', the
    fedavg sample as 'cohort'), its aggregator station without data, and a researcher they
    all trust."""
    return sites


def renamed(folder: Path, name: str, dataset: str) -> Path:
    toml = folder / "train.toml"
    text = toml.read_text().replace('name = "', f'name = "{name}-', 1)
    toml.write_text(text.replace('datasets = ["cohort"]', f'datasets = ["{dataset}"]', 1))
    return folder


class BlobCopier:
    """Copies every sealed blob central stores for a train as it appears (central prunes
    consumed blobs): what a station could download when it runs the next hop."""

    def __init__(self, net: LocalNet, out: Path) -> None:
        self.net, self.out, self.train_id = net, out, ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            if not self.train_id:
                continue
            folder = self.net.central_dir / "blobs" / self.train_id
            for blob in folder.glob("output-*.sealed") if folder.is_dir() else []:
                target = self.out / blob.name
                if not target.exists():
                    with contextlib.suppress(OSError):  # pruned meanwhile
                        shutil.copyfile(blob, target)

    def __enter__(self) -> BlobCopier:
        self.out.mkdir(parents=True, exist_ok=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def opened_by(
    net: LocalNet, copies: Path, train_id: str, hop: int, reader: str
) -> dict[str, bytes]:
    """What ``reader`` finds in hop ``hop``'s sealed output, opened with its own key."""
    sealed = copies / f"output-{hop:05d}.sealed"
    archive = copies / f"output-{hop}.tar"
    key = net.stations[reader].identity.sealing
    open_file(sealed, archive, key, output_context(train_id, hop))
    unpacked = copies / f"hop-{hop}"
    state_codec.unpack(archive.read_bytes(), unpacked, 10 * 1024 * 1024)
    return {p.name: p.read_bytes() for p in unpacked.iterdir()}


def travel(
    researcher: Researcher, net: LocalNet, folder: Path, image: Any, tmp: Path, **route: Any
) -> tuple[dict[str, Any], str, Path]:
    copies = tmp / "blobs"
    with BlobCopier(net, copies) as copier:
        train_id = researcher.submit(folder, image, STATIONS, **route)
        copier.train_id = train_id
        status = researcher.wait(train_id, timeout_s=600, poll_s=0.2)
        assert status["status"] == "done", f"{status}\n{logs(net)}"
    researcher.result(train_id, tmp / "result")
    return read_published(tmp / "result"), train_id, copies  # what the release point let out


def test_secure_cohort_on_a_sequential_route(researcher, localnet, secure_base, tmp_path):
    folder = renamed(
        secure_copy(REFERENCE / "cohort", tmp_path / "train", levels=LEVELS), "secure", "counts"
    )
    _, tag = build_image(folder, localnet.registry, base=secure_base)
    BUILT.append(tag)
    state, train_id, copies = travel(
        researcher, localnet, folder, push_image(tag), tmp_path, rounds=1
    )

    # every released number equals pandas on the pooled rows (means and sds to 1e-9)
    assert_cohort_released_matches_pooled(state, sample("cohort"))

    # the curious second station opens what the first sealed to it
    seen = opened_by(localnet, copies, train_id, 0, STATIONS[1])
    assert seen["state.json"] == b'{"stations": 1}'
    parts = SecureParts.loads(seen[SECURE_FILE])
    for name, (_, ring) in parts.parts.items():
        with pytest.raises(RingOverflow):
            decode_sum(ring, parts.contributions)  # masked: no value in range, for any part
        assert name  # every part, counts and sums alike


def test_secure_fedavg_on_a_parallel_route(researcher, localnet, secure_base, tmp_path):
    folder = renamed(secure_copy(REFERENCE / "fedavg", tmp_path / "train"), "secure", "cohort")
    _, tag = build_image(folder, localnet.registry, base=secure_base)
    BUILT.append(tag)
    rounds = 4
    state, train_id, copies = travel(
        researcher,
        localnet,
        folder,
        push_image(tag),
        tmp_path,
        rounds=rounds,
        mode="parallel",
        aggregator=AGGREGATOR,
    )
    # the same rounds in-process, unmasked, under the same release rules: every released
    # number equal to the fixed-point precision
    plain = secure_copy(REFERENCE / "fedavg", tmp_path / "plain", secure=False)
    stops = stops_from_frames(sample("fedavg"), "cohort", tmp_path / "here")
    here = run_local(plain, stops, rounds, parallel=True).published
    assert here is not None
    assert set(by_name(state)) == set(by_name(here))
    for name, quantity in by_name(here).items():
        assert numbers(by_name(state)[name]) == pytest.approx(numbers(quantity), rel=1e-9), name

    # the curious aggregator opens a stop's partial of round 1 (hop 4: stop 0 of round 1)
    seen = opened_by(localnet, copies, train_id, 4, AGGREGATOR)
    partial = SecureParts.loads(seen[SECURE_FILE])
    with pytest.raises(RingOverflow):
        decode_sum(partial.parts["n"][1], partial.contributions)
    partial_state = json.loads(seen["state.json"])  # the global model it started from, no more
    assert "n" not in partial_state and "evaluation" not in partial_state


def numbers(value: Any) -> list[float]:
    """Every number in a released quantity, in order (labels and names left out; and the
    smallest site's rows, which a masked aggregator knows only as min_rows)."""
    if isinstance(value, dict):
        return [x for key in sorted(value) if key != "site_min_n" for x in numbers(value[key])]
    if isinstance(value, list):
        return [x for item in value for x in numbers(item)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


def logs(net: LocalNet) -> str:
    parts = []
    for name in [*STATIONS, AGGREGATOR]:
        station = net.stations[name]
        if station.log.exists():
            parts.append(f"--- {name}\n{station.log.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)
