"""A file-like reader over a stream of byte chunks (an HTTP body as it arrives), bounded
and hashed: what lets a station open a sealed state while it downloads it.

Every byte handed out has been counted against the bound and fed to the digest first,
so the digest of what was read (and, after :meth:`ChunkReader.drain`, of everything the
sender sent) is the digest of the downloaded bytes, as a file written and hashed would
have given. Past the bound it raises :class:`DownloadTooLarge` before handing out a byte
beyond it: the sender cannot fill this machine's disk or memory."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

from trains.errors import StateTooLarge
from trains.sealstream import Hashing


class DownloadTooLarge(StateTooLarge):
    """More bytes arrived than the reader's bound: the download is refused."""


class ChunkReader:
    """``read`` and ``readinto`` over ``chunks``; the bytes are hashed into ``digest``."""

    def __init__(
        self, chunks: Iterator[bytes], digest: Hashing, limit: int | None, what: str
    ) -> None:
        self._chunks, self._digest, self._limit, self._what = chunks, digest, limit, what
        self._chunk = memoryview(b"")
        self._pos = 0
        self.received = 0

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill (part of) ``buffer``; 0 at the end of the stream."""
        target = memoryview(buffer).cast("B")
        if self._pos == len(self._chunk) and not self._next():
            return 0
        n = min(len(target), len(self._chunk) - self._pos)
        target[:n] = self._chunk[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if negative); b"" at the end."""
        parts = []
        while size != 0:
            if self._pos == len(self._chunk) and not self._next():
                break
            end = len(self._chunk) if size < 0 else min(len(self._chunk), self._pos + size)
            parts.append(self._chunk[self._pos : end].tobytes())
            size -= 0 if size < 0 else end - self._pos
            self._pos = end
        return b"".join(parts)

    def drain(self) -> None:
        """Receive (count and hash) the rest of the stream, unread."""
        while self._next():
            pass

    def _next(self) -> bool:
        chunk = next(self._chunks, None)
        while chunk is not None and not chunk:
            chunk = next(self._chunks, None)
        if chunk is None:
            self._chunk, self._pos = memoryview(b""), 0
            return False
        self.received += len(chunk)
        if self._limit is not None and self.received > self._limit:
            raise DownloadTooLarge(
                f"{self._what} is larger than any state this side can open ({self._limit} "
                "bytes): refused"
            )
        self._digest.update(memoryview(chunk))  # bytes: immutable, safe to hash in a thread
        self._chunk, self._pos = memoryview(chunk), 0
        return True


class Prefetch:
    """``chunks`` pulled by a thread of its own, at most ``depth`` ahead of the reader: the
    next pieces arrive from the network while the reader decrypts and writes (the socket's
    reads let go of the GIL). Iterate it as the chunks; an error of the source is raised
    in the reader's thread. Use it as a context manager: leaving it stops the thread after
    at most one more chunk and waits for it, so the source is never used by two threads."""

    _END = object()

    def __init__(self, chunks: Iterator[bytes], depth: int = 8) -> None:
        self._chunks = chunks
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pull, name="pht-prefetch", daemon=True)

    def __enter__(self) -> Prefetch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            # unblock a put; the thread sees the stop after its current chunk
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is Prefetch._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def _pull(self) -> None:
        try:
            for chunk in self._chunks:
                if self._stop.is_set():
                    return
                self._queue.put(chunk)
            self._queue.put(Prefetch._END)
        except BaseException as exc:  # handed to the reader, raised there
            self._queue.put(exc)
