"""Central stages an upload in 1 MiB pieces hashed in a thread: the digest and the bytes
on disk are those sent, whatever the pieces, and an upload past its limit leaves nothing."""

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from central.blobs import PIECE, BlobStore
from trains.errors import StateTooLarge

TRAIN = str(uuid.uuid4())


async def pieces(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    at, i = 0, 0
    while at < len(data):
        size = sizes[i % len(sizes)]
        yield data[at : at + size]
        at, i = at + size, i + 1


@pytest.mark.parametrize("total", [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 12345])
def test_a_staged_upload_is_the_bytes_sent_and_their_digest(tmp_path, total):
    data = os.urandom(total)
    store = BlobStore(tmp_path)
    upload = asyncio.run(
        store.stage(TRAIN, "initial.sealed", pieces(data, [65536, 7, 300_001]), 1 << 30)
    )
    assert upload.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert upload.path.read_bytes() == data
    assert upload.publish() and store.path(TRAIN, "initial.sealed").read_bytes() == data


def test_an_upload_past_its_limit_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(StateTooLarge):
        asyncio.run(
            store.stage(TRAIN, "initial.sealed", pieces(os.urandom(3 * PIECE), [65536]), 2 * PIECE)
        )
    assert list(store.folder(TRAIN).iterdir()) == []
