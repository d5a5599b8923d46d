"""Sealed states on disk, streamed in and out in chunks, never read whole into memory."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from trains.errors import StateTooLarge

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, train_id: str, name: str) -> Path:
        if not (_SAFE.match(train_id) and _SAFE.match(name)):
            raise ValueError("blob names are plain identifiers")
        return self.root / train_id / name

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
        folder = self.path(train_id, "x").parent
        if not folder.is_dir():
            return 0
        return sum(p.stat().st_size for p in folder.iterdir() if not p.name.startswith("."))

    def prune(self, train_id: str, keep: set[str]) -> int:
        """Delete a train's blobs (and stale partial uploads) except ``keep``; return bytes."""
        folder = self.path(train_id, "x").parent
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
