"""What an admin reads before approving: the train's own files, taken out of its image.

The image is pulled by the digest the researcher signed (only from an allowed registry,
within the station's pull limits, as for a run), a container is *created* (never started)
and ``/opt/train`` is copied out of it with Docker's archive API, so the code shown is
exactly the code that would run.
"""

from __future__ import annotations

import io
import tarfile
from typing import TYPE_CHECKING

from station.registry import check_registry
from trains.errors import ImageError
from trains.manifest import Image

if TYPE_CHECKING:
    from station.config import StationConfig
    from station.runner import DockerRunner

TRAIN_DIR = "/opt/train"
SHOWN_SUFFIXES = (".toml", ".py", ".md", ".txt")
MAX_FILE_BYTES = 256 * 1024


def train_files(runner: DockerRunner, image: Image, config: StationConfig) -> dict[str, str]:
    """``{relative name: text}`` of the readable files under /opt/train in ``image``."""
    import docker.errors

    check_registry(image.repository, config.policy.allowed_registries)  # also when refused
    image_id = runner.pull(image, config.pull_limits)
    try:
        container = runner.client.containers.create(
            image_id, network_mode="none", labels={"pht": "inspect"}
        )
    except docker.errors.APIError as exc:
        raise ImageError(f"cannot create a container of {image.reference}: {exc}") from None
    try:
        try:
            stream, _ = container.get_archive(TRAIN_DIR)
        except docker.errors.NotFound:
            raise ImageError(f"{image.reference} has no {TRAIN_DIR}; it is not a train") from None
        archive = b"".join(stream)
    finally:
        container.remove(force=True, v=True)  # with any anonymous volume
    files = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(SHOWN_SUFFIXES):
                continue
            name = member.name.split("/", 1)[-1]  # drop the leading "train/"
            if member.size > MAX_FILE_BYTES:
                files[name] = f"({member.size} bytes; too large to show here)"
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                files[name] = handle.read().decode("utf-8", errors="replace")
    return dict(sorted(files.items()))
