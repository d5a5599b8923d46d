"""The hop's input and data, copied into Docker volumes with random names.

A bind mount of the station's work folder would show its host path (for example
``/var/lib/pht/work/hop-3-abc/input``) in the container's ``/proc/self/mountinfo``: the
mount's root is the path of the folder on the host's filesystem. A Docker volume shows
only Docker's own volume path and the volume's random name. The folders are streamed
into the volumes as a tar through a *loader* container that is created but never
started (so no code of the image runs while they are writable); the train's and the
holder's containers mount them read-only. The copy costs one sequential write of the
input and data on Docker's disk; memory stays flat (1 MiB chunks).
"""

from __future__ import annotations

import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

from trains.errors import PhtError

CHUNK = 1024 * 1024
BLOCK = 512


class InputChanged(PhtError):
    """A file of the hop's work folder changed while it was being copied."""


def tar_stream(folder: Path) -> Iterator[bytes]:
    """A tar of ``folder``'s plain files and folders, owned by root, with their permission
    bits (the station made them readable; the read-only mount is what stops writes)."""
    for path in sorted(folder.rglob("*")):
        info = tarfile.TarInfo(path.relative_to(folder).as_posix())
        info.uid = info.gid = 0
        info.mtime = 0
        mode = path.lstat().st_mode
        info.mode = stat.S_IMODE(mode) & 0o777  # no setuid, setgid or sticky bit
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        elif stat.S_ISREG(mode):
            info.size = path.lstat().st_size
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            yield from _content(path, info.size)
    yield b"\0" * (2 * BLOCK)


def _content(path: Path, size: int) -> Iterator[bytes]:
    left = size
    with path.open("rb") as source:
        while left > 0:
            chunk = source.read(min(CHUNK, left))
            if not chunk:
                raise InputChanged(f"{path.name} shrank while it was copied for the train")
            left -= len(chunk)
            yield chunk
    if size % BLOCK:
        yield b"\0" * (BLOCK - size % BLOCK)
