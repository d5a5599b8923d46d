"""The Docker side of a hop's volumes: created at once, filled, copied out.

``runner.py`` decides which path is used; this module holds the round trips to Docker's
API for both: the volumes' creation (concurrent), the archive path's loader (a container
created, never started, that takes the input and data as tars) and the choice between the
direct copy-out (``volume_dir.copy_tree``) and the archive one (``output_volume``).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from docker.types import Mount

from station import volume_dir
from station.input_volume import tar_stream
from station.output_volume import MIB, OUTPUT_SLACK, SandboxError, archive_bound, copy_output


def create(
    client: Any, pool: ThreadPoolExecutor, run_id: str, labels: dict[str, str], tmpfs: str
) -> list[Future[Any]]:
    """Start creating the output tmpfs volume and the input and data volumes, at once
    (each is a round trip to Docker); join them with :func:`joined`."""
    output = pool.submit(
        client.volumes.create,
        name=f"pht-output-{run_id}",
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": tmpfs},
        labels=labels,
    )
    return [
        output,
        *(
            pool.submit(client.volumes.create, name=f"pht-{kind}-{run_id}", labels=labels)
            for kind in ("input", "data")
        ),
    ]


def joined(creating: list[Future[Any]], made: list[Any]) -> list[Any]:
    """The volumes, each recorded in ``made`` (for removal) before any error is raised."""
    volumes = []
    for future in creating:  # every one joined, so none is left unrecorded
        with contextlib.suppress(Exception):
            volumes.append(future.result())
    made.extend(volumes)
    for future in creating:
        future.result()  # raises what creating a volume raised
    return volumes


def folder(volume: Any, volumes_root: Path | None) -> Path | None:
    """The volume's host folder when the direct path is proven (``volumes_root``)."""
    if volumes_root is None:
        return None
    return volume_dir.volume_folder(volume.attrs, volumes_root)


def fill(
    client: Any,
    volumes_root: Path | None,
    loader: tuple[str, str, dict[str, Any]],
    made: list[Any],
    inputs: list[Any],
    folders: dict[str, Path],
) -> None:
    """Copy the input and data into their volumes while no container mounts them:
    directly when this process sees their folders, else through a loader container
    created but never started (``loader``: run id, image, container configuration).
    Either way nothing of the image runs while they are writable; the train's container
    mounts them read-only."""
    targets = [folder(volume, volumes_root) for volume in inputs]
    if all(target is not None for target in targets):
        for source, target in zip(folders.values(), targets, strict=True):
            assert target is not None
            try:
                volume_dir.fill(source, target)
            except OSError as exc:  # the OS's reason only: names came from a train
                raise SandboxError(
                    f"could not fill the hop's {source.name} volume: {exc.strerror}"
                ) from None
        return
    load(client, *loader, made, inputs, folders)


def load(
    client: Any,
    run_id: str,
    image_id: str,
    create: dict[str, Any],
    made: list[Any],
    inputs: list[Any],
    folders: dict[str, Path],
) -> None:
    """The archive path: the folders streamed as tars through a loader container that is
    created but never started, so no code of the image runs while they are writable."""
    loader = client.containers.create(
        image_id,
        name=f"pht-load-{run_id}",
        entrypoint=["true"],
        mounts=[
            Mount(t, v.name, type="volume", no_copy=True)
            for t, v in zip(folders, inputs, strict=True)
        ],
        **create,
    )
    made.append(loader)
    for mount, folder in folders.items():
        if not folder.is_dir():
            raise SandboxError(f"the hop's folder {folder.name} is missing")
        if not loader.put_archive(mount, tar_stream(folder)):
            raise SandboxError(f"Docker did not take the hop's {folder.name} folder")
    loader.remove(v=True)
    made.remove(loader)


def copy_out(
    holder: Any,
    folder: Path | None,
    output_dir: Path,
    max_output_mb: int,
    inodes: int,
    keep: bool,
) -> tuple[int, bool]:
    """The output volume's plain files: read directly from ``folder`` when it is the
    holder's tmpfs as this process sees it (its size and inode count are the volume's),
    else streamed as a tar through Docker's API. Both refuse the same things."""
    cap = max_output_mb * MIB
    if folder is not None and volume_dir.is_tmpfs_of(folder, cap + OUTPUT_SLACK, inodes):
        return volume_dir.copy_tree(folder, output_dir, cap, keep, inodes)
    return copy_output(holder, output_dir, cap, keep, archive_bound(max_output_mb, inodes))
