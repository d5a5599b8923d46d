import os
import struct

import pytest

from trains.errors import SealError
from trains.keys import Identity
from trains.sealing import (
    CHUNK,
    MAGIC,
    TAG,
    open_file,
    open_sealed,
    read_header,
    seal,
    seal_context,
    seal_file,
)

SECRET = b"patient-level marker 7f3a" * 40


@pytest.fixture
def bob() -> Identity:
    return Identity.generate("bob")


def test_seal_and_open(bob):
    ctx = seal_context("t1", 3)
    sealed = seal(SECRET, [bob.public], ctx)
    assert SECRET not in sealed
    assert b"marker" not in sealed
    assert open_sealed(sealed, bob.sealing, ctx) == SECRET


def test_every_recipient_can_open_and_no_one_else(bob):
    carol, eve = Identity.generate("carol"), Identity.generate("eve")
    sealed = seal(SECRET, [bob.public, carol.public], "c")
    assert open_sealed(sealed, bob.sealing, "c") == SECRET
    assert open_sealed(sealed, carol.sealing, "c") == SECRET
    with pytest.raises(SealError, match="not sealed to our key"):
        open_sealed(sealed, eve.sealing, "c")


def test_wrong_context_is_refused(bob):
    sealed = seal(SECRET, [bob.public], seal_context("t1", 1))
    with pytest.raises(SealError, match="another train or hop"):
        open_sealed(sealed, bob.sealing, seal_context("t1", 2))


@pytest.mark.parametrize("where", ["ciphertext", "last", "nonce", "wrapped"])
def test_flipped_byte_fails(bob, where):
    sealed = bytearray(seal(SECRET, [bob.public], "c"))
    header, prefix, _ = read_header(bytes(sealed))
    if where == "ciphertext":
        position = len(prefix) + 10
    elif where == "last":
        position = len(sealed) - 1
    elif where == "nonce":
        position = bytes(sealed).index(header.nonce.encode()) + 2
    else:
        position = bytes(sealed).index(header.recipients[0].wrapped.encode()) + 5
    sealed[position] ^= 0x01
    with pytest.raises(SealError):
        open_sealed(bytes(sealed), bob.sealing, "c")


def test_swapping_a_recipient_entry_is_detected(bob):
    """Re-wrapping the header for another key changes the associated data: refused."""
    eve = Identity.generate("eve")
    sealed = seal(SECRET, [bob.public], "c")
    eves = seal(b"other", [eve.public], "c")
    _, _, ciphertext = read_header(sealed)
    _, eve_prefix, _ = read_header(eves)
    with pytest.raises(SealError):
        open_sealed(eve_prefix + ciphertext, eve.sealing, "c")


def test_truncated_or_foreign_bytes_are_refused(bob):
    sealed = seal(SECRET, [bob.public], "c")
    with pytest.raises(SealError):
        open_sealed(sealed[:20], bob.sealing, "c")
    with pytest.raises(SealError, match="bad magic"):
        open_sealed(b"PK\x03\x04" + sealed, bob.sealing, "c")


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK])
def test_chunk_boundaries_round_trip(bob, size):
    data = os.urandom(size)
    assert open_sealed(seal(data, [bob.public], "c"), bob.sealing, "c") == data


def test_dropping_the_last_chunk_is_detected(bob):
    """A stream cut at a chunk boundary still fails: the new last chunk lacks the flag."""
    sealed = seal(os.urandom(2 * CHUNK + 10), [bob.public], "c")
    _, prefix, body = read_header(sealed)
    cut = prefix + body[: 2 * (CHUNK + TAG)]
    with pytest.raises(SealError, match="truncated"):
        open_sealed(cut, bob.sealing, "c")


def test_reordered_chunks_are_detected(bob):
    sealed = seal(os.urandom(3 * CHUNK), [bob.public], "c")
    _, prefix, body = read_header(sealed)
    one, two = body[: CHUNK + TAG], body[CHUNK + TAG : 2 * (CHUNK + TAG)]
    swapped = prefix + two + one + body[2 * (CHUNK + TAG) :]
    with pytest.raises(SealError):
        open_sealed(swapped, bob.sealing, "c")


def test_added_recipient_in_header_is_detected(bob):
    """Central cannot add itself as a recipient: the header is bound into the payload key."""
    eve = Identity.generate("eve")
    sealed = seal(SECRET, [bob.public], "c")
    header, _, body = read_header(sealed)
    eves = read_header(seal(b"x", [eve.public], "c"))[0].recipients[0]
    grown = header.model_copy(update={"recipients": [*header.recipients, eves]})
    raw = grown.model_dump_json().encode()
    forged = MAGIC + struct.pack(">I", len(raw)) + raw + body
    with pytest.raises(SealError):
        open_sealed(forged, bob.sealing, "c")


def test_file_api_leaves_nothing_on_failure(tmp_path, bob):
    plain = tmp_path / "state.tar"
    plain.write_bytes(os.urandom(CHUNK * 2 + 5))
    sealed = tmp_path / "state.sealed"
    digest = seal_file(plain, sealed, [bob.public], "c")
    assert digest.startswith("sha256:")
    opened = tmp_path / "opened.tar"
    open_file(sealed, opened, bob.sealing, "c")
    assert opened.read_bytes() == plain.read_bytes()
    damaged = bytearray(sealed.read_bytes())
    damaged[-1] ^= 1
    sealed.write_bytes(bytes(damaged))
    target = tmp_path / "never.tar"
    with pytest.raises(SealError):
        open_file(sealed, target, bob.sealing, "c")
    assert not target.exists()
    assert not (tmp_path / "never.tar.partial").exists()
