"""Sealed states on disk, streamed in and out in chunks, never read whole into memory.

An upload is written to a file of its own and hashed while it streams (an
:class:`Upload`). It becomes the named blob only when it is published, and only the
transaction that records its digest publishes it, under the train's lock: so the blob a
hop or the researcher reads is always the one whose digest central recorded, whatever
other uploads for the same name race it.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from trains.errors import StateTooLarge
from trains.manifest import TRAIN_ID_PATTERN
from trains.sealstream import Hashing

_TRAIN = re.compile(TRAIN_ID_PATTERN)
PIECE = 1 << 20  # bytes hashed and written at a time
_BLOB = re.compile(r"^(initial|output-[0-9]{5,6})\.sealed$")


@dataclass(frozen=True)
class Upload:
    """Bytes received and hashed (``digest``), held at ``path`` until published as
    ``target``."""

    path: Path
    target: Path
    digest: str

    def publish(self) -> bool:
        """Make these bytes the blob ``target`` (atomically). False if the upload is gone
        (pruned): the caller refuses."""
        try:
            os.replace(self.path, self.target)
        except FileNotFoundError:
            return False
        return True

    def discard(self) -> None:
        """Forget a staged upload that was not published (a no-op once it was)."""
        if self.path.name.endswith(".part"):
            self.path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def folder(self, train_id: str) -> Path:
        if not _TRAIN.fullmatch(train_id):
            raise ValueError("a train's blobs are filed under its id, a UUID")
        return self.root / train_id

    def path(self, train_id: str, name: str) -> Path:
        if not _BLOB.fullmatch(name):
            raise ValueError("a blob is named by the hop that wrote it")
        return self.folder(train_id) / name

    async def stage(
        self, train_id: str, name: str, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> Upload:
        """Stream ``chunks`` to a file of this upload's own, hashing as it goes."""
        target = self.path(train_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{uuid.uuid4().hex}.part")  # unique per upload
        # hashed in a thread of its own (hashlib lets go of the GIL), in 1 MiB pieces, so
        # the event loop goes on receiving meanwhile; bytes pieces never change under it
        digest = Hashing()
        size = 0
        pending: list[bytes] = []
        held = 0
        try:
            with tmp.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise StateTooLarge(f"upload exceeds the limit of {max_bytes} bytes")
                    pending.append(chunk)
                    held += len(chunk)
                    if held >= PIECE:
                        _absorb(pending, digest, out)
                        pending, held = [], 0
                _absorb(pending, digest, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            digest.close()
        return Upload(tmp, target, "sha256:" + digest.hexdigest())

    def usage(self, train_id: str) -> int:
        """Bytes a train's blobs take (its per-train quota counts these; uploads still
        streaming are not)."""
        folder = self.folder(train_id)
        if not folder.is_dir():
            return 0
        return sum(_size(p) for p in folder.iterdir() if not p.name.startswith("."))

    def prune(self, train_id: str, keep: set[str]) -> int:
        """Delete a train's blobs (and partial uploads) except ``keep``; return bytes."""
        folder = self.folder(train_id)
        if not folder.is_dir():
            return 0
        freed = 0
        for blob in folder.iterdir():
            if blob.name not in keep:
                freed += _size(blob)
                blob.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # an upload that arrived meanwhile keeps it
            folder.rmdir()
        return freed


def _absorb(pending: list[bytes], digest: Hashing, out: BinaryIO) -> None:
    piece = b"".join(pending)
    digest.update(memoryview(piece))
    out.write(piece)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # published, discarded or pruned meanwhile
        return 0
