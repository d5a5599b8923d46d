"""The payload of a sealed state, streamed in batches, its digests taken in the same pass.

The format is :mod:`trains.sealing`'s, unchanged: ChaCha20-Poly1305 over 64 KiB chunks,
nonce = 11-byte big-endian counter || last-chunk flag (the STREAM construction of age).
What this module changes is only how the bytes move: a batch of chunks (1 MiB) is read
straight into one preallocated buffer (``readinto``), encrypted or decrypted chunk by chunk
into a second preallocated buffer (``encrypt_into`` / ``decrypt_into``), hashed and written
from there. No chunk is copied into a new ``bytes`` object on the way, and the sha256 of
the plaintext and of the sealed file come out of the same pass (no second read).

The last-chunk flag needs to know that a chunk is the last one: the writer holds the most
recent chunk back until more bytes arrive or the stream is closed, and the reader decrypts
a chunk as "not last" only when at least one byte follows it. So a stream cut at a chunk
boundary fails (its new last chunk was sealed as "not last"), as does one with chunks
swapped (the counter is in the nonce).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from trains.errors import SealError, StateInvalid

CHUNK = 64 * 1024
TAG = 16
SEALED_CHUNK = CHUNK + TAG
BATCH = 16  # chunks per read and write: 1 MiB, few system calls and Python steps per GB


def chunk_nonce(counter: int, last: bool) -> bytes:
    """The nonce of chunk ``counter`` (age STREAM): 11-byte counter || last flag."""
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class Hashing:
    """A running sha256 fed in a thread of its own: hashlib lets go of the GIL for large
    buffers and the cipher does not, so on a machine with a second core the digests cost
    (almost) no time next to the encryption. :meth:`update` returns at once; the caller
    calls :meth:`wait` before it changes the bytes it handed over."""

    def __init__(self, first: bytes = b"", wanted: bool = True) -> None:
        self.wanted = wanted  # False: updates are dropped (the digest is taken elsewhere)
        self._digest = hashlib.sha256(first)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pht-sha256")
        self._pending: Future[None] | None = None

    def update(self, data: memoryview) -> None:
        if not self.wanted:
            return
        self.wait()
        self._pending = self._pool.submit(self._digest.update, data)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        self.wait()
        self._pool.shutdown()

    def hexdigest(self) -> str:
        self.wait()
        return self._digest.hexdigest()


def sha256(digest: Hashing) -> str:
    return "sha256:" + digest.hexdigest()


def sha256_if_wanted(digest: Hashing) -> str | None:
    return sha256(digest) if digest.wanted else None


class SealWriter:
    """A write-only stream that seals what it is given into ``target``.

    ``plain`` and ``sealed`` are running sha256 digests of the plaintext and of every
    byte written to ``target`` (``prefix`` included). :meth:`close` writes the last chunk:
    until then the sealed file is incomplete and opens as truncated. ``hash_plain`` False:
    the plaintext's digest is not taken (the caller has it: a state passed on as read)."""

    def __init__(
        self, target: BinaryIO, cipher: ChaCha20Poly1305, prefix: bytes, hash_plain: bool = True
    ) -> None:
        self._target, self._cipher = target, cipher
        self._buf = bytearray(BATCH * CHUNK)
        self._view = memoryview(self._buf)
        self._fill = 0
        self._out = memoryview(bytearray(BATCH * SEALED_CHUNK))
        self._counter = 0
        self._closed = False
        self.size = 0
        self.plain = Hashing(wanted=hash_plain)
        self.sealed = Hashing(prefix)
        target.write(prefix)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Take ``data`` (copied into the batch buffer; sealed as chunks fill)."""
        view = memoryview(data).cast("B")
        taken = 0
        while taken < len(view):
            if self._fill == len(self._buf):
                self._flush(final=False)
            n = min(len(view) - taken, len(self._buf) - self._fill)
            self._view[self._fill : self._fill + n] = view[taken : taken + n]
            self._fill += n
            taken += n
        self.size += taken
        return taken

    def write_from(self, source: BinaryIO, size: int) -> None:
        """Take exactly ``size`` bytes of ``source``, read straight into the batch buffer.
        Raises StateInvalid if ``source`` ends early (the file shrank while read)."""
        left = size
        while left > 0:
            if self._fill == len(self._buf):
                self._flush(final=False)
            room = min(left, len(self._buf) - self._fill)
            got = source.readinto(self._view[self._fill : self._fill + room])  # type: ignore[attr-defined]
            if not got:
                raise StateInvalid("a file of the state shrank while it was packed")
            self._fill += got
            left -= got
        self.size += size

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        """Seal what is left as the last chunk (an empty one for an empty payload)."""
        if not self._closed:
            self._closed = True
            try:
                self._flush(final=True)
            finally:
                self.plain.close()
                self.sealed.close()

    def _flush(self, final: bool) -> None:
        # all full chunks but the last, unless final: the last may yet be the final chunk
        count = (self._fill + CHUNK - 1) // CHUNK if final else self._fill // CHUNK - 1
        count = max(count, 1) if final else count
        done = min(count * CHUNK, self._fill)
        self.plain.update(self._view[:done])  # hashed while the chunks are encrypted
        self.sealed.wait()  # the output buffer is about to be overwritten
        out = 0
        for i in range(count):
            start = i * CHUNK
            end = min(start + CHUNK, self._fill)
            last = final and i == count - 1
            nonce = chunk_nonce(self._counter, last)
            self._cipher.encrypt_into(
                nonce, self._view[start:end], None, self._out[out : out + end - start + TAG]
            )
            out += end - start + TAG
            self._counter += 1
        self.sealed.update(self._out[:out])  # hashed while written
        self._target.write(self._out[:out])
        self.plain.wait()  # the input buffer is about to be overwritten
        # the held-back chunk moves to the front (at most 64 KiB: one small copy a batch)
        rest = self._fill - done
        self._view[:rest] = self._view[done : self._fill]
        self._fill = rest


class OpenReader:
    """A read-only stream of the plaintext of a sealed payload read from ``source``.

    Every chunk is authenticated before any of its bytes are handed out. ``plain`` and
    ``sealed`` digest the plaintext and the sealed bytes (``prefix`` included) as they
    pass; they are complete once :meth:`finish` has read ``source`` to its end."""

    def __init__(
        self, source: BinaryIO, cipher: ChaCha20Poly1305, prefix: bytes, hash_sealed: bool
    ) -> None:
        self._source, self._cipher = source, cipher
        self._in = memoryview(bytearray(BATCH * SEALED_CHUNK))
        self._have = 0
        self._eof = False
        self._out = memoryview(bytearray(BATCH * CHUNK))
        self._pos = self._end = 0
        self._counter = 0
        self._done = False
        self.plain = Hashing()
        self.sealed = Hashing(prefix, wanted=hash_sealed)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` with authenticated plaintext; 0 at the end of the payload."""
        target = memoryview(buffer).cast("B")
        while self._pos == self._end:
            if not self._refill():
                return 0
        n = min(len(target), self._end - self._pos)
        target[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of plaintext (what ``tarfile`` asks for)."""
        while self._pos == self._end:
            if not self._refill():
                return b""
        end = self._end if size < 0 else min(self._end, self._pos + size)
        data = bytes(self._out[self._pos : end])
        self._pos = end
        return data

    def copy_to(self, target: BinaryIO) -> None:
        """Write all the (remaining) plaintext to ``target``, batch by batch."""
        while self._pos < self._end or self._refill():
            if self._pos < self._end:
                target.write(self._out[self._pos : self._end])
            self._pos = self._end

    def finish(self) -> None:
        """Read and authenticate the rest of the payload (a tar reader stops at its end
        marker; the last chunk and the digests need every byte)."""
        while self._pos < self._end or self._refill():
            self._pos = self._end

    def _refill(self) -> bool:
        """Decrypt the next batch into the output buffer; False once all is handed out."""
        if self._done:
            self.plain.close()
            self.sealed.close()
            return False
        fresh = self._have
        while not self._eof and self._have < len(self._in):
            got = self._source.readinto(self._in[self._have :])  # type: ignore[attr-defined]
            if not got:
                self._eof = True
                break
            self._have += got
        self.sealed.update(self._in[fresh : self._have])  # hashed while decrypted
        self.plain.wait()  # the output buffer is about to be overwritten
        pos = out = 0
        try:
            # a chunk is "not last" only if a byte follows it
            while pos + SEALED_CHUNK < self._have:
                self._decrypt(pos, SEALED_CHUNK, out, last=False)
                pos, out = pos + SEALED_CHUNK, out + CHUNK
            if self._eof:
                self._decrypt(pos, self._have - pos, out, last=True)
                out += self._have - pos - TAG
                pos, self._done = self._have, True
        except (InvalidTag, ValueError):
            raise SealError(
                "sealed state failed authentication: it was tampered with, truncated or damaged"
            ) from None
        self.plain.update(self._out[:out])  # hashed while the caller takes it
        self.sealed.wait()  # the input buffer is about to be overwritten
        # the undecided chunk moves to the front (at most one chunk: a small copy)
        rest = self._have - pos
        self._in[:rest] = self._in[pos : self._have]
        self._have = rest
        self._pos, self._end = 0, out
        return True

    def _decrypt(self, pos: int, length: int, out: int, last: bool) -> None:
        if length < TAG:
            raise InvalidTag  # an empty or cut last chunk: no tag to check
        self._cipher.decrypt_into(
            chunk_nonce(self._counter, last),
            self._in[pos : pos + length],
            None,
            self._out[out : out + length - TAG],
        )
        self._counter += 1
