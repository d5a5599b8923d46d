"""The direct path: a hop's volumes read and written as folders of the station's host.

A local-driver Docker volume's data is a host folder (its ``Mountpoint``); the output
tmpfs is mounted there while the holder runs. When the station runs on the Docker host
(the demo, a package install) it fills the input and data volumes and reads the output
volume through that folder at disk speed instead of streaming tars through Docker's API.
``runner.py`` falls back to the archive path (``input_volume.py``, ``output_volume.py``)
when the folder is not this process's view of the volume, e.g. a station under compose
talking to the Docker socket of another mount namespace.

The output folder was written by the train: untrusted. Everything in it is opened relative
to a directory fd with ``O_NOFOLLOW`` (never following a link, also not one swapped in
between a listing and the open), checked with ``fstat`` on the fd that is then read, and
only regular files and folders are copied, within the same bounds as the archive path:
the byte cap, the inode bound, the names ``_safe_relative`` allows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors

from station.input_volume import InputChanged
from station.output_volume import MAX_DEPTH, MIB, SandboxError, check_path, undo

# opening an entry of the train's output: never follow a link, never block on a fifo
_OPEN_ENTRY = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
# what opening a link, a socket or a device (the tmpfs is nodev) gives: skipped, like the
# archive path drops them
_NOT_PLAIN = {errno.ELOOP, errno.ENXIO, errno.EACCES, errno.EPERM, errno.ENODEV}
PROBE_NAME = "pht-direct-probe"


def volume_folder(attrs: dict[str, Any], volumes_root: Path) -> Path | None:
    """The host folder of a local volume, if it is a folder directly under the proven
    ``volumes_root`` (``<root>/<name>/_data``) and visible here; else None."""
    mountpoint = attrs.get("Mountpoint")
    name = attrs.get("Name")
    if attrs.get("Driver") != "local" or not isinstance(mountpoint, str) or not name:
        return None
    folder = Path(mountpoint)
    if folder != volumes_root / str(name) / "_data":
        return None
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return None
    except OSError:
        return None
    return folder


def probe(client: Any, image_id: str, create: dict[str, Any]) -> Path | None:
    """Prove that this process sees Docker's volumes as Docker does; their root or None.

    A random marker is written into a fresh volume's folder here and must come back
    through Docker's API (``get_archive`` of a container that is created, never started):
    a same-named folder of another mount namespace would not show it. ``create`` is the
    locked-down container configuration of the caller.
    """
    name = f"pht-probe-{uuid.uuid4().hex[:12]}"
    marker = uuid.uuid4().hex.encode()
    volume = client.volumes.create(name=name, labels=create.get("labels"))
    container = None
    try:
        attrs = volume.attrs
        mountpoint = attrs.get("Mountpoint")
        if attrs.get("Driver") != "local" or not isinstance(mountpoint, str):
            return None
        root = Path(mountpoint).parent.parent
        folder = volume_folder(attrs, root)
        if folder is None:
            return None
        try:  # fill() gives root its files: a station that cannot, keeps the archive path
            (folder / PROBE_NAME).write_bytes(marker)
            os.chown(folder / PROBE_NAME, 0, 0)
        except OSError:
            return None
        from docker.types import Mount

        container = client.containers.create(
            image_id,
            name=name,
            entrypoint=["true"],
            mounts=[Mount("/probe", name, type="volume", read_only=True, no_copy=True)],
            **create,
        )
        try:
            stream, _ = container.get_archive(f"/probe/{PROBE_NAME}")
            seen = b"".join(stream)
        except docker.errors.NotFound:  # Docker's volume is not the folder written here
            return None
        return root if marker in seen and len(seen) < MIB else None
    finally:
        # a probe left behind is labelled with its run: the next cleanup of leftovers takes it
        with contextlib.suppress(docker.errors.APIError):
            if container is not None:
                container.remove(force=True)
            volume.remove(force=True)


def fill(folder: Path, target: Path) -> None:
    """Copy ``folder``'s plain files and folders into the volume folder ``target``, owned
    by root, with their permission bits (no setuid, setgid or sticky bit), mtime 0: what
    the archive path's tar gives. Nothing of the image runs while this writes."""
    if not folder.is_dir():
        raise SandboxError(f"the hop's folder {folder.name} is missing")
    root = os.open(target, _OPEN_DIR)
    try:
        _fill_dir(folder, root)
    finally:
        os.close(root)


def _fill_dir(source: Path, target_fd: int) -> None:
    entries = sorted(os.scandir(source), key=lambda e: e.name)
    for entry in entries:
        mode = entry.stat(follow_symlinks=False).st_mode
        bits = stat.S_IMODE(mode) & 0o777
        if stat.S_ISDIR(mode):
            os.mkdir(entry.name, 0o700, dir_fd=target_fd)
            sub = os.open(entry.name, _OPEN_DIR, dir_fd=target_fd)
            try:
                _fill_dir(Path(entry.path), sub)
                _own(sub, bits)
            finally:
                os.close(sub)
        elif stat.S_ISREG(mode):
            _fill_file(Path(entry.path), entry.name, target_fd, bits)


def _fill_file(source: Path, name: str, target_fd: int, bits: int) -> None:
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        size = os.fstat(src).st_size
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.open(name, flags, 0o600, dir_fd=target_fd)
        try:
            if _copy_range(src, dst, size) < size:
                raise InputChanged(f"{source.name} shrank while it was copied for the train")
            _own(dst, bits)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _own(fd: int, bits: int) -> None:
    os.fchown(fd, 0, 0)
    os.fchmod(fd, bits)
    os.utime(fd, (0, 0))


def _copy_range(src: int, dst: int, size: int) -> int:
    """Up to ``size`` bytes from ``src``'s start, in the kernel (an in-kernel copy or a
    reflink where the filesystem can); the bytes copied, fewer if the source shrank."""
    done = 0
    while done < size:
        step = min(size - done, 1 << 30)
        try:
            moved = os.copy_file_range(src, dst, step, done, done)
        except OSError as exc:  # across filesystems: sendfile does it
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            os.lseek(dst, done, os.SEEK_SET)
            moved = os.sendfile(dst, src, done, step)
        if moved == 0:
            break
        done += moved
    return done


def is_tmpfs_of(folder: Path, size: int, inodes: int) -> bool:
    """Whether ``folder`` is a mount of its own with exactly the output tmpfs's size and
    inode count: the holder's mount is visible here, not an empty folder beneath it."""
    try:
        own, parent = os.lstat(folder), os.lstat(folder.parent)
        fs = os.statvfs(folder)
    except OSError:
        return False
    page = 4096
    expected = -(-size // page) * page
    return (
        stat.S_ISDIR(own.st_mode)
        and own.st_dev != parent.st_dev
        and fs.f_blocks * fs.f_frsize == expected
        and fs.f_files == inodes
    )


def copy_tree(
    folder: Path, output_dir: Path, cap: int, keep: bool, entries: int
) -> tuple[int, bool]:
    """The direct twin of ``output_volume.copy_output``: the same result, the same refusals.

    Returns the bytes of regular-file content and whether they exceed ``cap``; then
    nothing is written. At most ``entries`` files and folders are looked at (the tmpfs's
    inode count); more is refused like an archive over its bound.
    """
    written: list[Path] = []
    try:
        return _copy_walk(folder, output_dir, cap, keep, entries, written)
    except BaseException:  # as on the archive path: an OSError goes to the hop's log only
        undo(written)
        raise


def _copy_walk(
    folder: Path, output_dir: Path, cap: int, keep: bool, entries: int, written: list[Path]
) -> tuple[int, bool]:
    root = os.open(folder, _OPEN_DIR)
    walk = _Walk(cap, entries)
    try:
        for fd, parts, kind, size in walk.entries(root, ()):
            try:
                check_path(parts)
                target = output_dir.joinpath(*parts)
                if walk.total > cap:
                    undo(written)
                    written.clear()
                    return walk.total, True
                if not keep:
                    continue
                if kind == "dir" and not target.is_dir():
                    written.append(target)  # before it exists: a failure halfway undoes it
                    target.mkdir(mode=0o755)
                elif kind == "file" and target.parent.is_dir() and not target.exists():
                    written.append(target)
                    _copy_out(fd, target, size)
            finally:
                if kind == "file":
                    os.close(fd)
    finally:
        walk.close()
        os.close(root)
    return walk.total, False


_Entry = tuple[int, tuple[str, ...], str, int]


class _Walk:
    """Depth-first, in name order (Docker's tar order), through open directory fds."""

    def __init__(self, cap: int, entries: int) -> None:
        self.total = 0
        self._left = entries
        self._cap = cap
        self._open: list[int] = []
        self._seen: set[tuple[int, int]] = set()  # hard links: only the first one counts

    def entries(self, dir_fd: int, parts: tuple[str, ...]) -> Iterator[_Entry]:
        """(fd, relative parts, "file" or "dir", size) of every plain entry under ``dir_fd``."""
        with os.scandir(dir_fd) as listing:
            names = sorted((e.name for e in listing), key=os.fsencode)
        for name in names:
            self._left -= 1
            if self._left < 0:
                raise SandboxError("the train's output holds more entries than its cap allows")
            try:
                fd = os.open(name, _OPEN_ENTRY, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in _NOT_PLAIN or exc.errno == errno.ENOENT:
                    continue
                raise
            info = os.fstat(fd)
            if len(parts) >= MAX_DEPTH:
                os.close(fd)
                raise SandboxError(f"the train's output is nested deeper than {MAX_DEPTH} folders")
            if stat.S_ISDIR(info.st_mode):
                self._open.append(fd)
                yield fd, (*parts, name), "dir", 0
                yield from self.entries(fd, (*parts, name))
                self._open.remove(fd)
                os.close(fd)
            elif stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in self._seen:
                self._seen.add((info.st_dev, info.st_ino))
                self.total += info.st_size
                yield fd, (*parts, name), "file", info.st_size
                if self.total > self._cap:
                    return
            else:
                os.close(fd)

    def close(self) -> None:
        for fd in self._open:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._open.clear()


def _copy_out(fd: int, target: Path, size: int) -> None:
    """The file behind ``fd``, up to the ``size`` it had when it was counted: the station
    reads no more than it counted, also of a file that grows while it is read."""
    os.set_blocking(fd, True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    sink = os.open(target, flags, 0o644)
    try:
        _copy_range(fd, sink, size)
        os.fchmod(sink, 0o644)
    finally:
        os.close(sink)
