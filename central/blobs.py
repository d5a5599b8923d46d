"""Sealed states on disk, streamed in and out in chunks, never read whole into memory."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from trains.errors import StateTooLarge
from trains.manifest import TRAIN_ID_PATTERN

_TRAIN = re.compile(TRAIN_ID_PATTERN)
_BLOB = re.compile(r"^(initial|output-[0-9]{5,6})\.sealed$")


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

    async def write(
        self, train_id: str, name: str, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> tuple[Path, str]:
        """Stream ``chunks`` to a temporary file, hashing as it goes; return (tmp, digest).

        The caller decides with the digest whether to :meth:`commit` or :meth:`discard`.
        """
        target = self.path(train_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{os.getpid()}.{id(chunks)}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            with tmp.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise StateTooLarge(f"upload exceeds the limit of {max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, "sha256:" + digest.hexdigest()

    def commit(self, tmp: Path, train_id: str, name: str) -> None:
        os.replace(tmp, self.path(train_id, name))

    @staticmethod
    def discard(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)

    def usage(self, train_id: str) -> int:
        """Bytes a train's committed blobs take (its per-train quota counts these)."""
        folder = self.folder(train_id)
        if not folder.is_dir():
            return 0
        return sum(p.stat().st_size for p in folder.iterdir() if not p.name.startswith("."))

    def prune(self, train_id: str, keep: set[str]) -> int:
        """Delete a train's blobs (and stale partial uploads) except ``keep``; return bytes."""
        folder = self.folder(train_id)
        if not folder.is_dir():
            return 0
        freed = 0
        for blob in folder.iterdir():
            if blob.name not in keep:
                freed += blob.stat().st_size
                blob.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()
        return freed
