"""Pulling a train image with deadlines and a size cap, and the checks on what was pulled.

Docker's client library waits for a pull without any timeout, so a registry that answers
``/v2/`` and then stalls on the manifest held a hop, and the station, for ever. Here the
pull is Docker Engine's own (``POST /images/create``, by digest, so Docker checks the
content), read as a stream of progress lines with two deadlines:

* ``stall_s``: no progress line from Docker for this long (a stalled registry) ends it;
* ``timeout_s``: the whole pull, however slowly it trickles, ends at this deadline;

and a cap, ``max_image_mb``: the layers' declared sizes and the bytes Docker reports as
downloaded are summed while the pull runs; going over ends it. Ending a pull closes the
connection to Docker Engine, which cancels the download. After the pull, the image's
unpacked size must be within the same cap (an image over it is removed again) and the
image must declare no ``VOLUME`` (see ``image_config``).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import docker.errors
import requests.exceptions

from trains.errors import ImageError
from trains.manifest import Image

MIB = 1024 * 1024
_MESSAGE = 300  # characters of Docker's or the registry's own error text kept


@dataclass(frozen=True)
class PullLimits:
    """Station-wide bounds of every pull (``station.toml``: ``[station] pull_timeout_s``,
    ``pull_stall_s``; ``[policy] max_image_mb``)."""

    timeout_s: float = 600.0
    stall_s: float = 60.0
    max_image_mb: int = 4096


def pull(client: Any, image: Image, limits: PullLimits) -> str:
    """Pull ``repository@digest`` within ``limits``; return the image id.

    An image Docker already holds under that digest is not asked of the registry again
    (Docker checked its content against the digest when it was pulled; the digest names
    those bytes for ever): it gets the same checks as a fresh pull (``checked``)."""
    if (held := present(client, image, limits)) is not None:
        return held
    api = client.api
    cap = limits.max_image_mb * MIB
    deadline = time.monotonic() + limits.timeout_s
    try:
        response = api._post(
            api._url("/images/create"),
            params={"fromImage": image.repository, "tag": image.digest},
            stream=True,
            timeout=(30, limits.stall_s),
        )
    except requests.exceptions.ReadTimeout:
        raise ImageError(_stalled(image, limits)) from None
    try:
        api._raise_for_status(response)
        declared: dict[str, int] = {}
        downloaded: dict[str, int] = {}
        for line in response.iter_lines():
            if time.monotonic() > deadline:
                raise ImageError(
                    f"pulling {image.reference} took longer than the station's "
                    f"pull_timeout_s of {limits.timeout_s:g}s; it was stopped"
                )
            _progress(line, image, declared, downloaded)
            if max(sum(declared.values()), sum(downloaded.values())) > cap:
                raise ImageError(_too_large(image, limits))
    except docker.errors.APIError as exc:
        raise ImageError(f"cannot pull {image.reference}: {_short(exc.explanation)}") from None
    except requests.exceptions.Timeout:
        raise ImageError(_stalled(image, limits)) from None
    except requests.exceptions.ConnectionError as exc:
        # requests words a read that timed out mid-stream as a ConnectionError
        if "timed out" not in str(exc).lower():
            raise  # Docker Engine went away: the hop is deferred (station.hop)
        raise ImageError(_stalled(image, limits)) from None
    finally:
        response.close()  # Docker Engine cancels a pull whose client went away
    return checked(client, image, limits)


def present(client: Any, image: Image, limits: PullLimits) -> str | None:
    """The id of the image if Docker holds it under the pinned digest (checked), else None."""
    try:
        held = client.images.get(image.reference)
    except docker.errors.ImageNotFound:
        return None
    return _check(client, held, image, limits)


def checked(client: Any, image: Image, limits: PullLimits) -> str:
    """The pulled image carries the pinned digest, fits the cap and declares no volume."""
    try:
        pulled = client.images.get(image.reference)
    except docker.errors.ImageNotFound:
        raise ImageError(f"cannot pull {image.reference}: Docker did not keep it") from None
    return _check(client, pulled, image, limits)


def _check(client: Any, pulled: Any, image: Image, limits: PullLimits) -> str:
    digests = pulled.attrs.get("RepoDigests") or []
    if image.reference not in digests:
        raise ImageError(f"pulled image does not carry digest {image.reference}: {digests}")
    size = int(pulled.attrs.get("Size") or 0)
    try:
        if size > limits.max_image_mb * MIB:
            raise ImageError(_too_large(image, limits, f" (unpacked: {size // MIB} MB)"))
        image_config(pulled.attrs, image.reference)
    except ImageError:
        with contextlib.suppress(docker.errors.APIError):  # in use by a run: kept
            client.images.remove(image.reference)  # this reference, not others' tags
        raise
    return str(pulled.id)


def image_config(attrs: dict[str, Any], name: str) -> list[str]:
    """Refuse an image that declares volumes; return the names of its ENV variables.

    A declared ``VOLUME`` makes Docker create an anonymous volume on the host's disk,
    writable by the train and outside every cap, for each container of the image.
    """
    config = attrs.get("Config") or {}
    volumes = sorted(config.get("Volumes") or {})
    if volumes:
        raise ImageError(
            f"image {name} declares VOLUME {', '.join(volumes)[:_MESSAGE]}; a train may not "
            "bring volumes (it writes to /pht/output, and /tmp for scratch): remove the "
            "VOLUME line from its image"
        )
    return [entry.partition("=")[0] for entry in config.get("Env") or []]


def _progress(
    raw: bytes, image: Image, declared: dict[str, int], downloaded: dict[str, int]
) -> None:
    """Account one progress line of Docker's pull; raise on an error line."""
    try:
        line = json.loads(raw)
    except ValueError:
        return
    if not isinstance(line, dict):
        return
    if "error" in line:
        raise ImageError(f"cannot pull {image.reference}: {_short(str(line['error']))}")
    detail = line.get("progressDetail")
    layer = str(line.get("id", ""))
    if line.get("status") != "Downloading" or not isinstance(detail, dict):
        return
    current, total = detail.get("current"), detail.get("total")
    if isinstance(total, int) and total > 0:
        declared[layer] = total
    if isinstance(current, int):
        downloaded[layer] = max(current, downloaded.get(layer, 0))


def _stalled(image: Image, limits: PullLimits) -> str:
    return (
        f"pulling {image.reference} stalled: no progress for the station's pull_stall_s of "
        f"{limits.stall_s:g}s (is the registry up and answering?); it was stopped"
    )


def _too_large(image: Image, limits: PullLimits, detail: str = "") -> str:
    return (
        f"image {image.reference} is larger than this station's max_image_mb of "
        f"{limits.max_image_mb}{detail}; it was not kept"
    )


def _short(text: str | None) -> str:
    return (text or "")[:_MESSAGE]
