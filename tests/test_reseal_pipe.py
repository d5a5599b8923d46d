"""statepipe.open_and_reseal: a state passed on as read is opened and sealed again in one
pass. The new file opens (for its new reader only) to the same bytes; the digests are those
a separate pass gives; a cut or flipped input leaves no output at all."""

from __future__ import annotations

import hashlib
import os

import pytest

from trains.errors import SealError
from trains.keys import Identity
from trains.sealing import digest_file, open_sealed, seal
from trains.sealstream import CHUNK
from trains.statepipe import open_and_reseal


@pytest.fixture(scope="module")
def people() -> tuple[Identity, Identity, Identity]:
    return Identity.generate("bob"), Identity.generate("carol"), Identity.generate("eve")


@pytest.mark.parametrize("size", [0, 1, CHUNK, 20 * CHUNK + 3])
def test_the_state_is_sealed_again_byte_for_byte(tmp_path, people, size):
    bob, carol, eve = people
    plain = os.urandom(size)
    sealed_in = tmp_path / "in.sealed"
    sealed_in.write_bytes(seal(plain, [bob.public], "in"))
    out = tmp_path / "out.sealed"
    passed = open_and_reseal(sealed_in, bob.sealing, "in", out, [carol.public], "out", 100)
    assert open_sealed(out.read_bytes(), carol.sealing, "out") == plain
    assert passed.opened.plain == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert passed.opened.sealed == digest_file(sealed_in)
    assert passed.sealed == digest_file(out)
    assert passed.head == plain[:101]
    with pytest.raises(SealError):
        open_sealed(out.read_bytes(), eve.sealing, "out")
    with pytest.raises(SealError):
        open_sealed(out.read_bytes(), bob.sealing, "out")  # the old reader is not a recipient


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_a_damaged_input_leaves_no_output(tmp_path, people, damage):
    bob, carol, _ = people
    sealed = bytearray(seal(os.urandom(40 * CHUNK), [bob.public], "in"))
    if damage == "cut":
        sealed = sealed[: len(sealed) - 2 * CHUNK]
    else:
        sealed[-5] ^= 1  # in the last chunk: everything before it was sealed again already
    sealed_in = tmp_path / "in.sealed"
    sealed_in.write_bytes(bytes(sealed))
    out = tmp_path / "out.sealed"
    with pytest.raises(SealError):
        open_and_reseal(sealed_in, bob.sealing, "in", out, [carol.public], "out")
    assert not out.exists()
