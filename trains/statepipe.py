"""A state's folder to a sealed file and back, in one pass each: tar and seal in one pipe,
open and untar in one pipe, the digests a receipt needs taken on the way.

``pack_and_seal`` = :func:`trains.state_codec.pack_to` into a sealing writer: the files'
bytes are read straight into the cipher's buffer, and no archive file is written.
``open_and_unpack`` = :func:`trains.state_codec.unpack_from` reading an opening reader:
every chunk is authenticated before tarfile sees a byte of it, and the rest of the
payload after the archive's end is read too, so a cut stream still fails and the
digests cover every byte. The sealed format is :mod:`trains.sealing`'s, unchanged.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from trains.keys import PublicIdentity
from trains.sealing import (
    Digests,
    Opened,
    check_recipients,
    read_header_from,
    start_open,
    start_seal,
)
from trains.sealstream import sha256, sha256_if_wanted
from trains.state_codec import pack_to, unpack_from


def pack_and_seal(
    folder: Path,
    files: Iterable[str],
    max_bytes: int,
    target: Path,
    recipients: Sequence[PublicIdentity],
    context: str,
) -> Digests:
    """Pack ``files`` of ``folder`` (as :func:`pack_to`) sealed to ``recipients`` into
    ``target``; return the archive's digest (the receipt's commitment) and the sealed
    file's. On failure ``target`` is removed (a half-sealed file never stays)."""
    try:
        try:
            out = target.open("wb", buffering=0)  # the writer batches; errors surface here
        except OSError as exc:
            raise SinkError(f"cannot write the sealed state: {exc.strerror}") from exc
        with out:
            writer = start_seal(cast(BinaryIO, _Sink(out)), recipients, context)
            pack_to(folder, files, max_bytes, writer)  # type: ignore[arg-type]
            writer.close()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return Digests(sha256(writer.plain), sha256(writer.sealed))


class SinkError(OSError):
    """Writing the sealed file failed (the station's disk: full, gone, not writable), as
    opposed to reading what was packed: the hop's caller must not blame the train."""


class _Sink:
    """The sealed file's writes, their failures raised as :class:`SinkError`."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):  # an unbuffered write may take part of it
                done += self.out.write(view[done:]) or 0
        except OSError as exc:
            raise SinkError(f"cannot write the sealed state: {exc.strerror}") from exc
        return done


def open_and_unpack(
    sealed: Path,
    folder: Path,
    max_bytes: int,
    key: X25519PrivateKey,
    context: str,
    hash_sealed: bool = True,
) -> tuple[Opened, list[str]]:
    """Open ``sealed`` with ``key`` and unpack its archive into ``folder`` (as
    :func:`unpack_from`, with its bounds); return the digests of the archive and of the
    sealed file (None unless ``hash_sealed``: a station took it while downloading), and
    the names unpacked. On any failure (a chunk that does not
    authenticate, an archive refused) ``folder`` is removed with whatever it holds."""
    with sealed.open("rb", buffering=0) as source:
        return open_and_unpack_from(source, folder, max_bytes, key, context, hash_sealed)


def open_and_unpack_from(
    source: BinaryIO,
    folder: Path,
    max_bytes: int,
    key: X25519PrivateKey,
    context: str,
    hash_sealed: bool = True,
    sealed_to: tuple[Sequence[PublicIdentity], str] | None = None,
) -> tuple[Opened, list[str]]:
    """:func:`open_and_unpack` reading the sealed bytes from ``source`` (a file, or a
    download as it arrives). ``sealed_to`` = (readers, what): the header must be wrapped
    for exactly those readers (:func:`trains.sealing.check_sealed_to`), checked before
    anything is opened or ``folder`` touched. On any failure ``folder`` is removed."""
    if sealed_to is not None:
        header, prefix = read_header_from(source)
        check_recipients([w.recipient for w in header.recipients], *sealed_to)
        source = cast(BinaryIO, _Replay(prefix, source))
    try:
        reader = start_open(source, key, context, hash_sealed)
        names = unpack_from(reader, folder, max_bytes)  # type: ignore[arg-type]
        reader.finish()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Opened(sha256(reader.plain), sha256_if_wanted(reader.sealed)), names


class _Replay:
    """``source`` with the header bytes already read from it put back in front."""

    def __init__(self, prefix: bytes, source: BinaryIO) -> None:
        self._prefix, self._source = memoryview(prefix), source

    def read(self, size: int = -1) -> bytes:
        if not self._prefix:
            return self._source.read(size)
        n = len(self._prefix) if size < 0 else min(size, len(self._prefix))
        head, self._prefix = self._prefix[:n].tobytes(), self._prefix[n:]
        return head

    def readinto(self, buffer: memoryview) -> int:
        if not self._prefix:
            return self._source.readinto(buffer)  # type: ignore[attr-defined, no-any-return]
        n = min(len(buffer), len(self._prefix))
        buffer[:n] = self._prefix[:n]
        self._prefix = self._prefix[n:]
        return n


@dataclass(frozen=True)
class Resealed:
    """A state opened and sealed again, byte for byte, in one pass."""

    opened: Opened  # the plaintext's digest (and the sealed input's, if it was asked for)
    sealed: str  # sha256 of the new sealed file
    head: bytes  # the plaintext's first ``head_bytes`` + 1 bytes at most


def open_and_reseal(
    sealed: Path,
    key: X25519PrivateKey,
    context: str,
    target: Path,
    recipients: Sequence[PublicIdentity],
    to_context: str,
    head_bytes: int = 0,
    hash_sealed: bool = True,
) -> Resealed:
    """Open ``sealed`` with ``key`` and seal its plaintext, unchanged, to ``recipients``
    under ``to_context`` into ``target``, in one pass (no plaintext file; a state passed on
    as read). Each chunk is authenticated before a byte of it is sealed again; on any
    failure ``target`` is removed, so a stream that fails late leaves nothing. The first
    ``head_bytes`` + 1 bytes of the plaintext are kept (enough to tell a small archive
    from a larger one and to read a small one)."""
    head = bytearray()

    class _Tee:
        def write(self, data: memoryview) -> int:
            if len(head) <= head_bytes:
                head.extend(data[: head_bytes + 1 - len(head)])
            return writer.write(data)

    try:
        with sealed.open("rb", buffering=0) as source, target.open("wb") as out:
            reader = start_open(source, key, context, hash_sealed)
            # the reader already hashes the plaintext: the writer need not again
            writer = start_seal(out, recipients, to_context, hash_plain=False)
            reader.copy_to(_Tee())  # type: ignore[arg-type]
            writer.close()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    opened = Opened(sha256(reader.plain), sha256_if_wanted(reader.sealed))
    return Resealed(opened, sha256(writer.sealed), bytes(head))
