"""Build a train image FROM the local base image and push it; from then on it is a digest.

A train may bring a ``requirements.txt``; its packages are installed during the build from
an offline wheelhouse folder (``pip install --no-index --find-links``) with the build's
network switched off, in a separate stage so the wheels themselves do not ship.
"""

from __future__ import annotations

import ensurepip
import shutil
import tempfile
from pathlib import Path

import docker
import docker.errors

from trains.errors import ConfigError, ImageError
from trains.manifest import Image
from trains.train_spec import TrainSpec, load_train_spec

DEFAULT_BASE = "pht-base:latest"
IMAGE_FILE = ".pht-image.json"  # the last pushed image of a train folder, by digest
DOCKERFILE = """\
FROM {base}
LABEL org.pht.train.name="{name}" org.pht.train.version="{version}"
COPY --chown=0:0 train/ /opt/train/
"""
REQUIREMENTS = "requirements.txt"
DEPS_STAGE = """\
FROM {base} AS deps
USER 0:0
COPY wheelhouse/ /wheelhouse/
COPY pip/ /pip/
COPY train/requirements.txt /requirements.txt
RUN python3 /pip/{pip_wheel}/pip install --no-index --find-links /wheelhouse \\
    --no-cache-dir --disable-pip-version-check --no-compile --target /deps -r /requirements.txt

"""
# on the runtime's path: the station sets PYTHONPATH=/opt/pht:/opt/pht-deps in every
# container (station/image_override.py), whatever the image's own ENV says
WITH_DEPS = """\
COPY --from=deps --chown=0:0 /deps/ /opt/pht-deps/
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


def _pip_wheel(wheelhouse: Path) -> Path:
    """A pip wheel to run the install with: the wheelhouse's own, else this Python's."""
    bundled = Path(ensurepip.__file__).parent / "_bundled"
    for place in (wheelhouse, bundled, Path("/usr/share/python-wheels")):
        found = sorted(place.glob("pip-*.whl"))
        if found:
            return found[-1]
    raise ImageError(
        f"no pip wheel to install requirements.txt with: put one in {wheelhouse} "
        "(e.g. 'pip download pip -d WHEELHOUSE' on a machine with network)"
    )


def build_image(
    folder: Path,
    registry: str,
    base: str = DEFAULT_BASE,
    wheelhouse: Path | None = None,
    tag: str | None = None,
) -> tuple[TrainSpec, str]:
    """Build ``<registry>/pht/<name>:<version>`` (or ``tag``) from the train folder; return
    (spec, tag)."""
    spec = load_train_spec(folder)
    requirements = folder / REQUIREMENTS
    if requirements.is_file() and wheelhouse is None:
        raise ImageError(
            f"{requirements} lists packages to install, but the build runs without network: "
            "pass --wheelhouse DIR, a folder holding their wheels "
            f"('pip download -r {requirements} -d DIR' on a machine with network)"
        )
    if wheelhouse is not None and not wheelhouse.is_dir():
        raise ImageError(f"wheelhouse {wheelhouse} is not a folder")
    client = _client()
    try:
        client.images.get(base)
    except docker.errors.ImageNotFound:
        raise ImageError(
            f"base image {base} is missing; build it with compose/base/build-base.sh"
        ) from None
    tag = tag or f"{registry}/pht/{spec.train.name}:{spec.train.version}"
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        code = context / "train"
        code.mkdir()
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in (".py", ".toml"):
                shutil.copy2(path, code / path.name)
        dockerfile = DOCKERFILE.format(base=base, name=spec.train.name, version=spec.train.version)
        if requirements.is_file() and wheelhouse is not None:
            shutil.copy2(requirements, code / REQUIREMENTS)
            shutil.copytree(wheelhouse, context / "wheelhouse")
            pip = _pip_wheel(wheelhouse)
            (context / "pip").mkdir()
            shutil.copy2(pip, context / "pip" / pip.name)
            head, _, copy_code = dockerfile.rpartition("COPY")
            dockerfile = (
                DEPS_STAGE.format(base=base, pip_wheel=pip.name)
                + head
                + WITH_DEPS
                + "COPY"
                + copy_code
            )
        (context / "Dockerfile").write_text(dockerfile)
        try:
            client.images.build(
                path=str(context), tag=tag, rm=True, forcerm=True, pull=False, network_mode="none"
            )
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


def write_image_file(folder: Path, image: Image) -> None:
    (folder / IMAGE_FILE).write_text(image.model_dump_json(indent=2) + "\n")


def read_image_file(folder: Path) -> Image:
    """The image ``pht-train build`` last pushed for this folder."""
    try:
        return Image.model_validate_json((folder / IMAGE_FILE).read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{folder} has no pushed image yet; run 'pht-train build {folder}'"
        ) from None
