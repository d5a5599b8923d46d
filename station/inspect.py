"""What an admin reads before approving: the train's own files, taken out of its image.

The image is pulled by the digest the researcher signed (only from an allowed registry,
within the station's pull limits, as for a run), a container is *created* (never started)
and ``/opt/train`` is copied out of it with Docker's archive API, so the code shown is
exactly the code that would run. Every file is listed; one that is not text source
(compiled, binary, a link) is flagged NOT SHOWN with its size: the runtime refuses compiled
modules, and the admin should refuse anything unexplained.
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
COMPILED_SUFFIXES = (".pyc", ".pyo", ".so", ".pyd")  # the runtime refuses to run these
NOT_SHOWN = "NOT SHOWN"
REVIEW = "this is not source you can read here: refuse the train unless you know why it is there"


def train_files(runner: DockerRunner, image: Image, config: StationConfig) -> dict[str, str]:
    """``{relative name: text}`` of every file under /opt/train in ``image`` (``listing``)."""
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
    return listing(archive)


def not_shown(text: str) -> bool:
    """True for the placeholder of a file ``listing`` lists but does not show."""
    return text.startswith(NOT_SHOWN)


def listing(archive: bytes) -> dict[str, str]:
    """``{relative name: text}`` of EVERY file in a tar of /opt/train: text files as they
    are; a file that is not shown (compiled, binary, a link) as a flagged placeholder with
    its size, so nothing that could run is invisible to the admin."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for member in tar:
            if member.isdir():
                continue
            name = member.name.split("/", 1)[-1]  # drop the leading "train/"
            if not member.isfile():
                target = f" to {member.linkname}" if member.linkname else ""
                files[name] = f"{NOT_SHOWN}: a link or special file{target}; {REVIEW}"
                continue
            if member.size > MAX_FILE_BYTES:
                files[name] = f"{NOT_SHOWN}: {member.size} bytes, too large to show; {REVIEW}"
                continue
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else b""
            if name.endswith(COMPILED_SUFFIXES) or "__pycache__/" in f"/{name}":
                kind = "compiled or binary module"
            elif not name.endswith(SHOWN_SUFFIXES):
                kind = "not a source or text file"
            else:
                files[name] = data.decode("utf-8", errors="replace")
                continue
            files[name] = f"{NOT_SHOWN}: {member.size} bytes, {kind}; {REVIEW}"
    return dict(sorted(files.items()))
