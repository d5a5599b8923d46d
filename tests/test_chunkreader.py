"""The bounded, hashed reader over a download's chunks, and the thread that pulls them
ahead (trains/chunkreader.py): the bytes and digest of what arrived, the bound before a
byte past it is handed out, a source's error raised in the reader, an early stop."""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Iterator

import pytest

from trains.chunkreader import ChunkReader, DownloadTooLarge, Prefetch
from trains.sealstream import Hashing

DATA = bytes(range(256)) * 301  # not a multiple of any piece size used


def pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    cuts = itertools.cycle(sizes)
    pos = 0
    while pos < len(data):
        step = next(cuts)
        yield data[pos : pos + step]
        pos += step


@pytest.mark.parametrize("sizes", [[1], [0, 7, 65536], [1 << 17], [3, 0, 4096, 1]])
def test_the_bytes_and_digest_are_those_that_arrived(sizes):
    digest = Hashing()
    reader = ChunkReader(pieces(DATA, sizes), digest, None, "x")
    head = reader.read(1000)
    buffer = bytearray(777)
    got = bytearray(head)
    while n := reader.readinto(buffer):
        got += buffer[:n]
    assert bytes(got) == DATA and reader.read() == b""
    digest.close()
    assert digest.hexdigest() == hashlib.sha256(DATA).hexdigest()


def test_drain_hashes_what_was_not_read():
    digest = Hashing()
    reader = ChunkReader(pieces(DATA, [5000]), digest, None, "x")
    reader.read(10)
    reader.drain()
    digest.close()
    assert digest.hexdigest() == hashlib.sha256(DATA).hexdigest()
    assert reader.received == len(DATA)


def test_past_the_bound_nothing_more_is_handed_out():
    digest = Hashing()
    reader = ChunkReader(pieces(DATA, [4096]), digest, 10_000, "the input")
    got = reader.read(8192)
    with pytest.raises(DownloadTooLarge, match="the input is larger than any state"):
        reader.read(4096)
    digest.close()
    assert len(got) == 8192 and reader.received <= 10_000 + 4096


def test_a_source_error_is_raised_in_the_readers_thread():
    def failing() -> Iterator[bytes]:
        yield b"abc"
        raise ConnectionResetError("cut")

    with Prefetch(failing()) as chunks:
        reader = ChunkReader(iter(chunks), Hashing(), None, "x")
        assert reader.read(3) == b"abc"
        with pytest.raises(ConnectionResetError, match="cut"):
            reader.read(1)


def test_leaving_early_stops_the_thread_after_at_most_one_more_chunk():
    pulled = itertools.count()

    def endless() -> Iterator[bytes]:
        while True:
            next(pulled)
            yield b"x" * 1024

    with Prefetch(endless(), depth=4) as chunks:
        reader = ChunkReader(iter(chunks), Hashing(), 5000, "x")
        with pytest.raises(DownloadTooLarge):
            reader.drain()
    assert not [t for t in threading.enumerate() if t.name == "pht-prefetch"]  # it ended
    assert next(pulled) <= 5 + 4 + 2  # what was read, what was queued, one more
