"""A state is a folder of declared, plain files; on the wire it is a deterministic tar.

Only regular files with safe relative names travel. Links, devices, absolute paths and
``..`` are refused on both packing and unpacking, and nothing is ever unpickled: the
payload formats a train may use are JSON, CSV, Parquet, NPZ (without pickles) and PNG.

An archive comes from another party (the previous station, the researcher), so unpacking
is bounded and every refusal is a :class:`StateInvalid`, never an ``OSError``: at most
``MAX_ENTRIES`` files, ``MAX_DEPTH`` folders deep, ``MAX_NAME`` bytes per name part and
``MAX_PATH`` per name; no name twice (however spelled), no file under a file or over a
folder; tar extension headers (pax, GNU long names) of at most ``MAX_HEADER`` bytes, checked
before they are read, since tarfile reads them whole into memory.

Every archive a station packs holds one reserved member, ``.pht/nonce``: 32 random bytes.
Receipts commit to a state's plaintext by the sha256 of its archive
(``trains.receipt.HopPredicate.output_commitment``): the nonce makes that digest useless
to central, which sees receipts but could otherwise try every small state against it. The
``.pht/`` prefix is the codec's: a train can neither write nor read a name under it (it is
refused when packing and stripped when unpacking), and it is no declared output.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from trains.errors import StateInvalid, StateTooLarge

ALLOWED_SUFFIXES = {".json", ".csv", ".parquet", ".npz", ".npy", ".png", ".txt", ".md"}
MAX_ENTRIES = 10_000  # files in one state
MAX_DEPTH = 16  # folders above a file
MAX_NAME = 255  # bytes in one part of a name (what file systems allow)
MAX_PATH = 1024  # bytes in a whole name
MAX_HEADER = 64 * 1024  # bytes in one pax or GNU long-name header
RESERVED = ".pht/"  # names under it belong to the codec, never to a train
NONCE = RESERVED + "nonce"  # 32 random bytes in every packed state (see above)
NONCE_BYTES = 32
_PIECE = 1 << 20  # bytes per read and write when packing and unpacking
_ENCODING, _ERRORS = "utf-8", "surrogateescape"  # tarfile's own on this platform
_END_BLOCK = bytes(tarfile.BLOCKSIZE)
_MAX_CHAIN = 8  # extension headers before one member (we write at most one)
_EXTENSION_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_LONG_NAME_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


def _check_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if name.startswith(RESERVED) or (path.parts and path.parts[0] == RESERVED.rstrip("/")):
        raise StateInvalid(f"state file name {name!r} is under {RESERVED}, reserved for pht")
    if path.is_absolute() or ".." in path.parts or name in ("", "."):
        raise StateInvalid(f"state file name {name!r} is not a plain relative path")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in name):
        raise StateInvalid(f"state file name {name!r} holds control or format characters")
    if len(path.parts) > MAX_DEPTH + 1:
        raise StateInvalid(f"state file {name!r} is nested deeper than {MAX_DEPTH} folders")
    encoded = os.fsencode(name)
    if len(encoded) > MAX_PATH or any(len(os.fsencode(p)) > MAX_NAME for p in path.parts):
        raise StateInvalid(
            f"state file name {name[:80]!r}... is too long (at most {MAX_NAME} bytes a part, "
            f"{MAX_PATH} in all)"
        )
    if path.suffix.lower() not in ALLOWED_SUFFIXES:
        raise StateInvalid(
            f"state file {name!r} has a type a state may not carry; "
            f"use one of {sorted(ALLOWED_SUFFIXES)}"
        )
    return path


def list_state_files(folder: Path) -> list[str]:
    """Relative names of the regular files under ``folder``; anything else is refused, and
    so is a tree of more than MAX_ENTRIES entries or deeper than MAX_DEPTH (a train writes
    this folder: it is walked without recursion and without listing it whole first)."""
    names, seen = [], 0
    stack: list[tuple[Path, int]] = [(folder, 0)]
    while stack:
        current, depth = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                seen += 1
                rel = Path(entry.path).relative_to(folder).as_posix()
                if seen > MAX_ENTRIES:
                    raise StateInvalid(f"the state holds more than {MAX_ENTRIES} entries")
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    if depth >= MAX_DEPTH:
                        raise StateInvalid(f"{rel} is nested deeper than {MAX_DEPTH} folders")
                    stack.append((Path(entry.path), depth + 1))
                elif stat.S_ISREG(mode):
                    names.append(rel)
                else:
                    raise StateInvalid(
                        f"{rel} is not a regular file (links and devices never travel)"
                    )
    return sorted(names)


def pack(folder: Path, files: Iterable[str], max_bytes: int) -> bytes:
    """In-memory form of :func:`pack_to`, for small states and tests."""
    buffer = io.BytesIO()
    pack_to(folder, files, max_bytes, buffer)
    return buffer.getvalue()


def pack_to(folder: Path, files: Iterable[str], max_bytes: int, target: BinaryIO) -> None:
    """Tar a fresh nonce and exactly ``files`` from ``folder`` into ``target`` (streamed):
    sorted, owner 0, mtime 0, so equal folders give equal bytes but for the nonce.

    The bytes are those ``tarfile`` writes (pax headers from ``TarInfo.tobuf``, 512-byte
    blocks, a 10240-byte record at the end); the contents are read in 1 MiB pieces, or
    straight into a sealing writer's buffer (``write_from``) when ``target`` is one."""
    written = 0

    def emit(data: bytes | memoryview) -> None:
        nonlocal written
        target.write(data)
        written += len(data)

    nonce = tarfile.TarInfo(NONCE)
    nonce.size, nonce.mode, nonce.mtime = NONCE_BYTES, 0o644, 0
    emit(nonce.tobuf(tarfile.PAX_FORMAT, _ENCODING, _ERRORS))
    emit(os.urandom(NONCE_BYTES) + tarfile.NUL * (tarfile.BLOCKSIZE - NONCE_BYTES))
    total = 0
    for name in sorted(set(files)):
        _check_name(name)
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise StateInvalid(f"{name} is missing or is not a regular file")
        with path.open("rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            total += size
            if total > max_bytes:
                raise StateTooLarge(
                    f"the state exceeds {max_bytes} bytes at {name}; write less or raise the cap"
                )
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o644, 0
            emit(info.tobuf(tarfile.PAX_FORMAT, _ENCODING, _ERRORS))
            _copy_content(handle, size, target)
        written += size
        if size % tarfile.BLOCKSIZE:
            emit(tarfile.NUL * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))
    emit(tarfile.NUL * (2 * tarfile.BLOCKSIZE))  # the end of the archive, as tarfile writes
    if written % tarfile.RECORDSIZE:
        emit(tarfile.NUL * (tarfile.RECORDSIZE - written % tarfile.RECORDSIZE))


def _copy_content(source: BinaryIO, size: int, target: BinaryIO) -> None:
    """Exactly ``size`` bytes of ``source`` to ``target``; a file that shrank is refused."""
    write_from = getattr(target, "write_from", None)
    if write_from is not None:
        write_from(source, size)
        return
    buffer = memoryview(bytearray(min(size, _PIECE) or 1))
    left = size
    while left > 0:
        got = source.readinto(buffer[: min(left, len(buffer))])  # type: ignore[attr-defined]
        if not got:
            raise StateInvalid("a file of the state shrank while it was packed")
        target.write(buffer[:got])
        left -= got


def unpack(archive: bytes, folder: Path, max_bytes: int) -> list[str]:
    """In-memory form of :func:`unpack_from`."""
    return unpack_from(io.BytesIO(archive), folder, max_bytes)


class _BoundedInfo(tarfile.TarInfo):
    """Refuses an extension header larger than MAX_HEADER before tarfile reads it whole."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENSION_TYPES + _LONG_NAME_TYPES and self.size > MAX_HEADER:
            raise StateInvalid(
                f"state archive has a tar header of {self.size} bytes, above {MAX_HEADER}"
            )
        return super()._proc_member(archive)  # type: ignore[misc,no-any-return]


def unpack_from(source: BinaryIO, folder: Path, max_bytes: int) -> list[str]:
    """Extract a state archive (streamed) into ``folder``, refusing anything but plain
    files with names that neither repeat nor collide (see the bounds above). The nonce
    is checked and left out: the folder holds the state's files only.

    Headers are parsed by ``tarfile`` (:func:`_next_member`); a member's content is read
    from ``source`` straight into one buffer and written out, without tarfile's stream
    copies. Reading stops at the archive's end marker."""
    names: list[str] = []
    files: set[str] = set()
    folders: set[PurePosixPath] = set()
    total, nonces = 0, 0
    folder.mkdir(parents=True, exist_ok=True)
    buffer = memoryview(bytearray(_PIECE))
    try:
        while (member := _next_member(source, first=not (names or nonces))) is not None:
            if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                raise StateInvalid(f"state archive entry {member.name!r} is not a regular file")
            padded = -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            if member.name == NONCE and member.size == NONCE_BYTES and not nonces:
                nonces += 1
                _read_exact(source, padded)
                continue
            rel = _check_name(member.name)
            _check_place(rel, files, folders)
            total += member.size
            if total > max_bytes:
                raise StateTooLarge(f"the state archive unpacks to more than {max_bytes} bytes")
            target = folder.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("xb") as out:
                left = member.size
                while left > 0:
                    got = source.readinto(buffer[: min(left, _PIECE)])  # type: ignore[attr-defined]
                    if not got:
                        raise StateInvalid(f"state archive entry {member.name!r} is cut short")
                    out.write(buffer[:got])
                    left -= got
            _read_exact(source, padded - member.size)
            names.append(rel.as_posix())
            files.add(rel.as_posix())
    except (tarfile.TarError, EOFError, UnicodeError) as exc:
        raise StateInvalid(
            f"state archive is not a valid tar file ({type(exc).__name__})"
        ) from None
    return names


def _next_member(source: BinaryIO, first: bool) -> tarfile.TarInfo | None:
    """The next member's header, its extension headers (pax, GNU long names: each at most
    MAX_HEADER bytes, checked before it is read, at most _MAX_CHAIN of them) applied by
    tarfile; None at the end marker."""
    chain = bytearray()
    for _ in range(_MAX_CHAIN):
        block = _read_exact(source, tarfile.BLOCKSIZE, short_ok=True)
        if len(block) < tarfile.BLOCKSIZE and not chain and not first:
            return None  # no end marker: tarfile ends the archive here too
        if block == _END_BLOCK:  # a block of zeros: the end marker
            if chain:
                raise StateInvalid("state archive ends inside a member's headers")
            return None
        info = _BoundedInfo.frombuf(block, _ENCODING, _ERRORS)
        chain += block
        if info.type == tarfile.XGLTYPE:
            raise StateInvalid("state archive has a global pax header; states never do")
        if info.type not in _EXTENSION_TYPES + _LONG_NAME_TYPES:
            if len(chain) == tarfile.BLOCKSIZE:
                return info
            with tarfile.open(fileobj=io.BytesIO(chain), mode="r|", tarinfo=_BoundedInfo) as tar:
                member = tar.next()
            if member is None:
                raise StateInvalid("state archive has extension headers but no member")
            return member
        if info.size > MAX_HEADER:
            raise StateInvalid(
                f"state archive has a tar header of {info.size} bytes, above {MAX_HEADER}"
            )
        chain += _read_exact(source, -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE)
    raise StateInvalid(f"state archive has more than {_MAX_CHAIN} headers for one member")


def _read_exact(source: BinaryIO, size: int, short_ok: bool = False) -> bytes:
    """``size`` bytes of ``source``; fewer only at its end and only if ``short_ok``."""
    data = source.read(size)
    while len(data) < size and (more := source.read(size - len(data))):
        data += more
    if len(data) < size and not short_ok:
        raise StateInvalid("state archive is cut short")
    return data


def _check_place(rel: PurePosixPath, files: set[str], folders: set[PurePosixPath]) -> None:
    """A new file may neither repeat a name, nor lie under a file, nor be a folder."""
    if len(files) >= MAX_ENTRIES:
        raise StateInvalid(f"state archive holds more than {MAX_ENTRIES} files")
    name = rel.as_posix()
    if name in files:
        raise StateInvalid(f"state archive holds {name!r} twice")
    if rel in folders:
        raise StateInvalid(f"state archive entry {name!r} collides with a folder of that name")
    for parent in rel.parents:
        if parent.as_posix() in files:
            raise StateInvalid(f"state archive entry {name!r} lies under the file {str(parent)!r}")
        folders.add(parent)


def check_state_name(name: str) -> None:
    """Refuse (StateInvalid) a file name no state may hold; see the module's bounds."""
    _check_name(name)
