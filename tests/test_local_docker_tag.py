"""``pht-train test --in-docker`` on a shared Docker daemon: two folders with the same train
name and version but different code build differently tagged images, each hop runs its own
folder's code even when both images exist at once, and each image is removed after its run."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from train_builder.local_hop import DockerHop
from train_builder.local_run import LocalStop, run_local
from train_builder.templates import scaffold
from trains.runtime.core import Context
from trains.train_spec import load_train_spec

pytestmark = pytest.mark.docker

SAMPLE = Path(__file__).resolve().parents[1] / "trains" / "reference" / "cohort" / "sample"


def train_saying(folder: Path, name: str, word: str) -> Path:
    """A cohort train named ``name`` (version 0.1.0) whose every state says ``word``."""
    scaffold(folder, "cohort")
    toml = folder / "train.toml"
    text = re.sub(r'(?m)^name = ".*"$', f'name = "{name}"', toml.read_text(), count=1)
    toml.write_text(text)
    (folder / "train.py").write_text(
        f"def local(data, state, ctx):\n    return {{'said': {word!r}}}\n\n"
        "def finalize(state, ctx):\n    return state\n"
    )
    return folder


def run_one_hop(hop: DockerHop, folder: Path, work: Path) -> dict[str, object]:
    dirs = [work / d for d in ("input", "data", "output")]
    for d in dirs:
        d.mkdir(parents=True)
    (dirs[1] / "cohort").mkdir()
    (dirs[1] / "cohort" / "data.csv").write_bytes((SAMPLE / "hospital-a.csv").read_bytes())
    ctx = Context(station="hospital-a", is_last=False)
    hop.run(ctx, dirs[0], dirs[1], dirs[2], load_train_spec(folder))
    return dict(json.loads((dirs[2] / "state.json").read_text()))


def exists(tag: str) -> bool:
    try:
        docker.from_env().images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def test_same_name_and_version_in_two_folders_each_run_their_own_code(docker_required, tmp_path):
    name = f"tagtest-{uuid.uuid4().hex[:6]}"
    a = train_saying(tmp_path / "alice" / "train", name, "alice's code")
    b = train_saying(tmp_path / "bob" / "train", name, "bob's code")
    hops = [DockerHop(a, None, None), DockerHop(b, None, None)]  # both built before either runs
    try:
        assert hops[0].tag != hops[1].tag
        assert all(h.tag.startswith(f"pht-local/pht/{name}:0.1.0-") for h in hops)
        assert run_one_hop(hops[0], a, tmp_path / "run-a") == {"said": "alice's code"}
        assert run_one_hop(hops[1], b, tmp_path / "run-b") == {"said": "bob's code"}
    finally:
        for hop in hops:
            hop.close()
    assert not any(exists(h.tag) for h in hops)


def test_a_local_run_in_docker_leaves_no_image(docker_required, tmp_path, monkeypatch):
    name = f"tagtest-{uuid.uuid4().hex[:6]}"
    folder = train_saying(tmp_path / "train", name, "mine")
    tags: list[str] = []
    close = DockerHop.close

    def remember(self: DockerHop) -> None:
        tags.append(self.tag)
        close(self)

    monkeypatch.setattr(DockerHop, "close", remember)  # only to learn the tag; close runs
    stops = [LocalStop("hospital-a", {"cohort": SAMPLE / "hospital-a.csv"})]
    result = run_local(folder, stops, in_docker=True)
    assert result.state == {"said": "mine"}
    assert len(tags) == 1 and not exists(tags[0])
