"""What a dead daemon's runs may have left in Docker, found by the runner id they carry.

A run's containers and volumes carry the label ``pht.runner=<id>`` of the daemon that made
them, and their removal may go on after the hop (``defer_cleanup``). The daemon notes its id
in ``state/runner`` (one id per line, written atomically: a torn id would match no label),
and the next daemon removes whatever those ids label. An id whose removal failed (Docker
away at the restart) stays noted for the restart after.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

RUNNER_FILE = "runner"  # the Docker label of this daemon's runs (pht.runner)
MAX_IDS = 1000

log = logging.getLogger("pht.station")


def noted(root: Path) -> list[str]:
    """The runner ids whose containers may still exist."""
    try:
        text = (root / RUNNER_FILE).read_text()
    except FileNotFoundError:
        return []
    return [line.strip()[:64] for line in text.splitlines() if line.strip()][:MAX_IDS]


def note(root: Path, ids: list[str]) -> None:
    """Replace the noted ids with ``ids`` (none: the file goes)."""
    path = root / RUNNER_FILE
    if not ids:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{RUNNER_FILE}.tmp")
    with tmp.open("w") as handle:
        handle.write("".join(f"{i}\n" for i in dict.fromkeys(ids)))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def remove(runner_id: str) -> bool:
    """Remove the containers and volumes labelled with ``runner_id``; False: Docker did not
    let them be removed (the caller keeps the id for later)."""
    import docker
    import docker.errors

    label = f"pht.runner={runner_id}"
    try:
        client = docker.from_env(timeout=30)
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True, v=True)
        for volume in client.volumes.list(filters={"label": label}):
            volume.remove(force=True)
    except docker.errors.DockerException as exc:
        log.warning("could not remove the containers of an interrupted run (%s)", exc)
        return False
    return True
