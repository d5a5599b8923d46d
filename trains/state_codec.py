"""A state is a folder of declared, plain files; on the wire it is a deterministic tar.

Only regular files with safe relative names travel. Links, devices, absolute paths and
``..`` are refused on both packing and unpacking, and nothing is ever unpickled: the
payload formats a train may use are JSON, CSV, Parquet, NPZ (without pickles) and PNG.
"""

from __future__ import annotations

import io
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from trains.errors import StateInvalid, StateTooLarge

ALLOWED_SUFFIXES = {".json", ".csv", ".parquet", ".npz", ".npy", ".png", ".txt", ".md"}


def _check_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name in ("", "."):
        raise StateInvalid(f"state file name {name!r} is not a plain relative path")
    if path.suffix.lower() not in ALLOWED_SUFFIXES:
        raise StateInvalid(
            f"state file {name!r} has a type a state may not carry; "
            f"use one of {sorted(ALLOWED_SUFFIXES)}"
        )
    return path


def list_state_files(folder: Path) -> list[str]:
    """Relative names of the regular files under ``folder``; anything else is refused."""
    names = []
    for path in sorted(folder.rglob("*")):
        mode = path.lstat().st_mode
        rel = path.relative_to(folder).as_posix()
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise StateInvalid(f"{rel} is not a regular file (links and devices never travel)")
        names.append(rel)
    return names


def pack(folder: Path, files: Iterable[str], max_bytes: int) -> bytes:
    """In-memory form of :func:`pack_to`, for small states and tests."""
    buffer = io.BytesIO()
    pack_to(folder, files, max_bytes, buffer)
    return buffer.getvalue()


def pack_to(folder: Path, files: Iterable[str], max_bytes: int, target: BinaryIO) -> None:
    """Tar exactly ``files`` from ``folder`` into ``target`` (streamed): sorted, owner 0,
    mtime 0, so equal folders give equal bytes."""
    total = 0
    with tarfile.open(fileobj=target, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(set(files)):
            _check_name(name)
            path = folder / name
            if path.is_symlink() or not path.is_file():
                raise StateInvalid(f"{name} is missing or is not a regular file")
            size = path.stat().st_size
            total += size
            if total > max_bytes:
                raise StateTooLarge(
                    f"the state exceeds {max_bytes} bytes at {name}; write less or raise the cap"
                )
            info = tarfile.TarInfo(name)
            info.size = size
            info.mode = 0o644
            info.mtime = 0
            with path.open("rb") as handle:
                tar.addfile(info, handle)


def unpack(archive: bytes, folder: Path, max_bytes: int) -> list[str]:
    """In-memory form of :func:`unpack_from`."""
    return unpack_from(io.BytesIO(archive), folder, max_bytes)


def unpack_from(source: BinaryIO, folder: Path, max_bytes: int) -> list[str]:
    """Extract a state archive (streamed) into ``folder``, refusing anything but plain
    files."""
    names = []
    total = 0
    folder.mkdir(parents=True, exist_ok=True)
    try:
        tar = tarfile.open(fileobj=source, mode="r|")  # noqa: SIM115 - closed below
    except tarfile.TarError as exc:
        raise StateInvalid(f"state archive is not a tar file: {exc}") from None
    with tar:
        for member in tar:
            if not member.isfile():
                raise StateInvalid(f"state archive entry {member.name!r} is not a regular file")
            rel = _check_name(member.name)
            total += member.size
            if total > max_bytes:
                raise StateTooLarge(f"the state archive unpacks to more than {max_bytes} bytes")
            target = folder.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            content = tar.extractfile(member)
            if content is None:
                raise StateInvalid(f"state archive entry {member.name!r} has no content")
            with content, target.open("wb") as out:
                while chunk := content.read(1 << 20):
                    out.write(chunk)
            names.append(rel.as_posix())
    return names
