"""Build a train image FROM the local base image and push it; from then on it is a digest."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import docker
import docker.errors

from trains.errors import ImageError
from trains.manifest import Image
from trains.train_spec import TrainSpec, load_train_spec

DEFAULT_BASE = "pht-base:latest"
DOCKERFILE = """\
FROM {base}
LABEL org.pht.train.name="{name}" org.pht.train.version="{version}"
COPY --chown=0:0 train/ /opt/train/
"""


def _client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise ImageError(
            f"cannot reach Docker Engine ({exc}); run scripts/setup.sh or start dockerd"
        ) from None


def build_image(folder: Path, registry: str, base: str = DEFAULT_BASE) -> tuple[TrainSpec, str]:
    """Build ``<registry>/pht/<name>:<version>`` from the train folder; return (spec, tag)."""
    spec = load_train_spec(folder)
    client = _client()
    try:
        client.images.get(base)
    except docker.errors.ImageNotFound:
        raise ImageError(
            f"base image {base} is missing; build it with compose/base/build-base.sh"
        ) from None
    tag = f"{registry}/pht/{spec.train.name}:{spec.train.version}"
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        code = context / "train"
        code.mkdir()
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in (".py", ".toml"):
                shutil.copy2(path, code / path.name)
        (context / "Dockerfile").write_text(
            DOCKERFILE.format(base=base, name=spec.train.name, version=spec.train.version)
        )
        try:
            client.images.build(path=str(context), tag=tag, rm=True, pull=False)
        except docker.errors.BuildError as exc:
            lines = "".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)
            raise ImageError(f"building {tag} failed: {exc.msg}\n{lines[-2000:]}") from None
    return spec, tag


def push_image(tag: str) -> Image:
    """Push ``tag`` and return the repository and manifest digest the registry reports."""
    client = _client()
    repository, _, version = tag.rpartition(":")
    digest = None
    try:
        for line in client.images.push(repository, tag=version, stream=True, decode=True):
            if "error" in line:
                raise ImageError(f"pushing {tag} failed: {line['error']}")
            aux = line.get("aux") or {}
            digest = aux.get("Digest", digest)
    except docker.errors.APIError as exc:
        raise ImageError(f"pushing {tag} failed: {exc.explanation}; is the registry up?") from None
    if digest is None:
        raise ImageError(f"the registry did not report a digest for {tag}")
    return Image(repository=repository, digest=digest)
