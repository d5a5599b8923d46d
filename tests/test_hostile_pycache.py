"""A harmless train.py with a __pycache__ .pyc compiled from other code (security review,
HIGH 1): the admin reviews the source, the station must never run the .pyc.

The image is built FROM pht-base:latest (as tests/test_hostile_images.py does) and run
through the real ``DockerRunner.run``: the hop fails with the contract sentence and the
other code leaves no trace in the output.
"""

from __future__ import annotations

import contextlib
import io
import json
import py_compile
import tarfile
import uuid
from pathlib import Path

import pytest

from station.runner import DockerRunner, SandboxLimits
from trains.manifest import Resources
from trains.runtime.refusal import CONTRACT_BROKEN, CONTRACT_EXIT

pytestmark = pytest.mark.docker

HARMLESS = "def local(data, state, ctx):\n    return {'ran': 'reviewed source'}\n"
OTHER = "def local(data, state, ctx):\n    return {'ran': 'hidden pyc'}\n"
TOML = """\
datasets = []
outputs = ["state.json"]

[train]
name = "pyc"
version = "0.1.0"
description = "a harmless train.py beside a .pyc of other code"
"""


def _pyc(tmp_path: Path) -> bytes:
    """OTHER compiled as the base image's Python 3.11 would cache train.py (unchecked hash:
    the loader never compares it with the source)."""
    source = tmp_path / "train.py"
    source.write_text(OTHER)
    target = tmp_path / "train.pyc"
    py_compile.compile(
        str(source),
        cfile=str(target),
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    return target.read_bytes()


def test_shipped_pyc_is_refused_and_never_runs(docker_required, tmp_path: Path) -> None:
    import docker

    client = docker.from_env(timeout=300)
    tag = f"pht-hostile-pyc-{uuid.uuid4().hex[:8]}:test"
    files = {
        "Dockerfile": "FROM pht-base:latest\nUSER 0:0\nCOPY --chown=0:0 train/ /opt/train/\n"
        "USER 10001:10001\n",
        "train/train.py": HARMLESS.encode(),
        "train/train.toml": TOML.encode(),
        "train/__pycache__/train.cpython-311.pyc": _pyc(tmp_path),
    }
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, body in files.items():
            data = body.encode() if isinstance(body, str) else body
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    work = tmp_path / "hop"
    dirs = {n: work / n for n in ("input", "data", "output")}
    for folder in dirs.values():
        folder.mkdir(parents=True)
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        result = DockerRunner(SandboxLimits(pids=64, tmp_mb=16, shm_mb=8)).run(
            str(image.id),
            input_dir=dirs["input"],
            data_dir=dirs["data"],
            output_dir=dirs["output"],
            env={"PHT_MODE": "local", "PHT_STATION": "s", "PHT_ROUND": "0", "PHT_HOP": "0"},
            resources=Resources(memory_mb=128, cpus=0.5, timeout_s=60, max_output_mb=8),
        )
    finally:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag)
    state = dirs["output"] / "state.json"
    ran = json.loads(state.read_text()) if state.is_file() else None
    assert ran != {"ran": "hidden pyc"}, "the station ran the .pyc, not the reviewed source"
    assert result.exit_code == CONTRACT_EXIT, result.exit_code
    assert result.failure(None) == CONTRACT_BROKEN
    assert ran is None  # nothing else ran either
