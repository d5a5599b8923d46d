import pytest

from trains.errors import SealError
from trains.keys import Identity
from trains.sealing import open_sealed, read_header, seal, seal_context

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
