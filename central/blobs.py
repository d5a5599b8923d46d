"""Sealed states on disk, streamed in and out in chunks, never read whole into memory.

An upload is written to a file of its own and hashed while it streams (an
:class:`Upload`). It becomes the named blob only when it is published, and only the
transaction that records its digest publishes it, under the train's lock: so the blob a
hop or the researcher reads is always the one whose digest central recorded, whatever
other uploads for the same name race it. An output uploaded on its own
(``PUT .../output``, completed later) waits as a *pending* blob named by its digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from trains.errors import StateTooLarge

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


@dataclass(frozen=True)
class Upload:
    """Bytes received and hashed (``digest``), held at ``path`` until published as
    ``target``."""

    path: Path
    target: Path
    digest: str

    def publish(self) -> bool:
        """Make these bytes the blob ``target`` (atomically); drop other pending versions
        of it. False if the upload is gone (replaced, pruned): the caller refuses."""
        try:
            os.replace(self.path, self.target)
        except FileNotFoundError:
            return False
        for other in self.target.parent.glob(f"{self.target.name}.*.pending"):
            other.unlink(missing_ok=True)
        return True

    def discard(self) -> None:
        """Forget a staged upload that was not published (a no-op once it was)."""
        if self.path.name.endswith(".part"):
            self.path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, train_id: str, name: str) -> Path:
        if not (_SAFE.match(train_id) and _SAFE.match(name)):
            raise ValueError("blob names are plain identifiers")
        return self.root / train_id / name

    async def stage(
        self, train_id: str, name: str, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> Upload:
        """Stream ``chunks`` to a file of this upload's own, hashing as it goes."""
        target = self.path(train_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{uuid.uuid4().hex}.part")  # unique per upload
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
        return Upload(tmp, target, "sha256:" + digest.hexdigest())

    def keep_pending(self, upload: Upload) -> Upload:
        """Keep a staged upload until a completion names its digest (see :meth:`pending`).
        Named by its digest: uploads of the same bytes share it, others do not touch it."""
        pending = self._pending_path(upload.target, upload.digest)
        assert pending is not None  # the digest is our own
        os.replace(upload.path, pending)
        return Upload(pending, upload.target, upload.digest)

    def pending(self, train_id: str, name: str, digest: str) -> Upload | None:
        """The pending upload for blob ``name`` with these bytes, if one was kept."""
        pending = self._pending_path(self.path(train_id, name), digest)
        if pending is None or not pending.exists():
            return None
        return Upload(pending, pending.with_name(name), digest)

    @staticmethod
    def _pending_path(target: Path, digest: str) -> Path | None:
        found = _DIGEST.match(digest)
        return None if found is None else target.with_name(f"{target.name}.{found[1]}.pending")

    def usage(self, train_id: str) -> int:
        """Bytes a train's blobs take, pending ones included (its per-train quota counts
        these; uploads still streaming are not)."""
        folder = self.path(train_id, "x").parent
        if not folder.is_dir():
            return 0
        return sum(_size(p) for p in folder.iterdir() if not p.name.startswith("."))

    def prune(self, train_id: str, keep: set[str]) -> int:
        """Delete a train's blobs (and pending or partial uploads) except ``keep``; return
        bytes."""
        folder = self.path(train_id, "x").parent
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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # published, discarded or pruned meanwhile
        return 0
