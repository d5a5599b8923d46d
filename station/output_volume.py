"""The hop's output folder: a size-capped tmpfs volume, and the bounded copy out of it.

A train that floods ``/pht/output`` hits ENOSPC inside its container instead of filling
the station's disk: the volume is a tmpfs of the cap (plus a little, so going over is
visible) with an inode limit. A tmpfs vanishes when the last container using it stops, so
the runner (``runner.py``) starts a second, equally locked-down *holder* container that
keeps it mounted until the output has been streamed out with ``get_archive``: read only up
to a bound, written only when the run succeeded, plain files and folders only.
"""

from __future__ import annotations

import errno
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from docker.types import Mount

from trains.errors import PhtError

OUTPUT_PATH = "/pht/output"
MIB = 1024 * 1024
# The output tmpfs is one MiB larger than the cap, so "wrote more than the cap" is visible.
OUTPUT_SLACK = MIB
# folders nested deeper than this are refused by both copy-outs (the direct one walks with
# one open fd and one frame per level; no train needs more)
MAX_DEPTH = 128
# a path inside the output, in bytes: well past any real output's, well inside what the
# station's output folder can take (PATH_MAX 4096 with the folder's own path in front;
# Docker's archive quietly stops short of it, the direct walk would fail)
MAX_PATH_BYTES = 1024


class SandboxError(PhtError):
    """Docker refused to set up or tear down a hop's sandbox."""


def volume_options(max_output_mb: int, inodes: int, uid: int) -> str:
    """The tmpfs mount options of the output volume, owned by the container's user."""
    size = max_output_mb * MIB + OUTPUT_SLACK
    return f"size={size},nr_inodes={inodes},uid={uid},gid={uid},mode=0700,noexec,nosuid,nodev"


def archive_bound(max_output_mb: int, inodes: int) -> int:
    """The most bytes a tar of the output tmpfs can take: data plus headers per inode."""
    size = max_output_mb * MIB + OUTPUT_SLACK
    return size + inodes * 3 * 512 + MIB


def output_mount(volume: str, read_only: bool) -> Mount:
    """The output volume at ``/pht/output``: writable for the train, read-only for the holder."""
    # nocopy: whatever the image holds at /pht/output does not seed the volume
    return Mount(OUTPUT_PATH, volume, type="volume", read_only=read_only, no_copy=True)


def copy_output(
    holder: Any, output_dir: Path, cap: int, keep: bool, bound: int
) -> tuple[int, bool]:
    """Stream the output volume's tar from the holder; write it only when ``keep``.

    Returns the bytes of file content and whether they exceed ``cap``; then nothing is
    written (the rest is not even read). Only plain files and folders are copied; links
    and devices are dropped.
    """
    stream, _ = holder.get_archive(f"{OUTPUT_PATH}/.")
    reader = _BoundedStream(stream, bound)
    written: list[Path] = []
    try:
        return _copy_members(reader, output_dir, cap, keep, written)
    except BaseException:
        # an OSError (which names the path) goes on as it is: ``station.outcome.contained``
        # puts it in the hop's log and fails the hop with a fixed sentence
        undo(written)
        raise


def undo(written: list[Path]) -> None:
    """Remove what a copy-out wrote, files before their folders."""
    for path in reversed(written):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)  # the last may not have been made


def check_path(parts: tuple[str, ...]) -> None:
    """Refuse a path inside the output nested or named beyond the bounds (both paths).

    A path too long is refused as the OS refuses one (ENAMETOOLONG, naming it): its names
    are the train's, so they go to the hop's log only (``station.outcome.contained``)."""
    if len(parts) > MAX_DEPTH:
        raise SandboxError(f"the train's output is nested deeper than {MAX_DEPTH} folders")
    if sum(len(part.encode(errors="surrogateescape")) + 1 for part in parts) > MAX_PATH_BYTES:
        raise OSError(
            errno.ENAMETOOLONG,
            f"a path in the train's output is longer than {MAX_PATH_BYTES} bytes",
            "/".join(parts),
        )


def _copy_members(
    reader: io.RawIOBase, output_dir: Path, cap: int, keep: bool, written: list[Path]
) -> tuple[int, bool]:
    total = 0
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            total += member.size if member.isfile() else 0
            if total > cap:
                undo(written)
                written.clear()
                return total, True
            relative = _safe_relative(member.name)
            if relative is not None:
                check_path(relative.parts)
            if not keep or relative is None:
                continue
            target = output_dir.joinpath(*relative.parts)
            if member.isdir() and not target.is_dir():
                written.append(target)  # before it exists: a failure halfway undoes it too
                target.mkdir(mode=0o755)
            elif member.isfile() and target.parent.is_dir() and not target.exists():
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has content
                written.append(target)
                with target.open("wb") as sink:
                    while chunk := source.read(MIB):
                        sink.write(chunk)
                target.chmod(0o644)
    return total, False


def _safe_relative(name: str) -> PurePosixPath | None:
    """A member's path inside the output folder, or None for the root or anything odd."""
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p not in (".", "")]
    if path.is_absolute() or not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


class _BoundedStream(io.RawIOBase):
    """A file over Docker's chunk iterator that refuses to read past ``bound`` bytes."""

    def __init__(self, chunks: Iterator[bytes], bound: int) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._left = bound

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left -= len(chunk)
            if self._left < 0:
                raise SandboxError("the train's output archive is larger than its cap allows")
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size
