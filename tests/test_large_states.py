"""Large states: the batched sealing stream is the age STREAM format, chunk for chunk; the
one-pass pipes (tar and seal, open and untar) give the digests a second pass would, and
every cut, swap or flip still fails, also after the end of the tar archive."""

import base64
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from trains import state_codec
from trains.errors import SealError
from trains.keys import Identity
from trains.sealing import (
    _SUITE,
    _info,
    _payload_cipher,
    open_file,
    open_sealed,
    read_header,
    seal,
    seal_stream,
    start_seal,
)
from trains.sealstream import BATCH, CHUNK, TAG, chunk_nonce
from trains.statepipe import open_and_unpack, pack_and_seal

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, BATCH * CHUNK - 1, BATCH * CHUNK]
SIZES += [BATCH * CHUNK + 1, (BATCH + 1) * CHUNK, 2 * BATCH * CHUNK + 7]


@pytest.fixture(scope="module")
def bob() -> Identity:
    return Identity.generate("bob")


def reference_open(sealed: bytes, who: Identity, context: str) -> bytes:
    """age STREAM decryption written from the spec, one chunk at a time: what any
    implementation of the format must accept."""
    header, prefix, body = read_header(sealed)
    wrapped = base64.b64decode(header.recipients[0].wrapped)
    file_key = _SUITE.decrypt(wrapped, who.sealing, info=_info(context))
    cipher = _payload_cipher(file_key, header, prefix)
    chunks = [body[i : i + CHUNK + TAG] for i in range(0, len(body), CHUNK + TAG)] or [b""]
    return b"".join(
        cipher.decrypt(chunk_nonce(n, n == len(chunks) - 1), chunk, None)
        for n, chunk in enumerate(chunks)
    )


@pytest.mark.parametrize("size", SIZES)
def test_the_batched_stream_is_age_stream_chunk_for_chunk(bob, size):
    plain = os.urandom(size)
    sealed = seal(plain, [bob.public], "c")
    _, _, body = read_header(sealed)
    chunks = max(1, -(-size // CHUNK))
    assert len(body) == size + chunks * TAG
    assert reference_open(sealed, bob, "c") == plain
    assert open_sealed(sealed, bob.sealing, "c") == plain


@pytest.mark.parametrize("size", [0, CHUNK, BATCH * CHUNK, BATCH * CHUNK + 5])
def test_the_batched_reader_opens_what_a_chunk_by_chunk_writer_sealed(bob, size):
    plain = os.urandom(size)
    out = io.BytesIO()
    writer = start_seal(out, [bob.public], "c")
    for i in range(0, size, 1000):  # odd-sized writes, across every boundary
        writer.write(plain[i : i + 1000])
    writer.close()
    assert open_sealed(out.getvalue(), bob.sealing, "c") == plain


def test_the_digests_taken_while_streaming_are_those_of_the_bytes(bob, tmp_path):
    plain = os.urandom(3 * BATCH * CHUNK + 123)
    out = io.BytesIO()
    digests = seal_stream(io.BytesIO(plain), out, [bob.public], "c")
    assert digests.plain == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert digests.sealed == "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()
    (tmp_path / "s").write_bytes(out.getvalue())
    opened = open_file(tmp_path / "s", tmp_path / "p", bob.sealing, "c")
    assert (opened.plain, opened.sealed) == (digests.plain, digests.sealed)
    assert (tmp_path / "p").read_bytes() == plain


def make_state(folder: Path, size: int) -> list[str]:
    folder.mkdir()
    (folder / "weights.npy").write_bytes(os.urandom(size))
    (folder / "sub").mkdir()
    (folder / "sub" / "metrics.json").write_text('{"loss": 0.5}')
    return ["weights.npy", "sub/metrics.json"]


def test_tar_and_seal_in_one_pipe_round_trips_with_the_receipts_digests(bob, tmp_path):
    files = make_state(tmp_path / "state", 2 * BATCH * CHUNK + 999)
    sealed = tmp_path / "out.sealed"
    written = pack_and_seal(tmp_path / "state", files, 1 << 30, sealed, [bob.public], "c")
    raw = sealed.read_bytes()
    archive = open_sealed(raw, bob.sealing, "c")
    # the commitment is the archive's sha256, the state digest the sealed file's
    assert written.plain == "sha256:" + hashlib.sha256(archive).hexdigest()
    assert written.sealed == "sha256:" + hashlib.sha256(raw).hexdigest()
    # the archive is the one pack_to writes: same members, same bytes but for the nonce
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert tar.getnames() == [state_codec.NONCE, "sub/metrics.json", "weights.npy"]
    opened, names = open_and_unpack(sealed, tmp_path / "in", 1 << 30, bob.sealing, "c")
    assert (opened.plain, opened.sealed) == (written.plain, written.sealed)
    assert sorted(names) == sorted(files)
    for name in files:
        assert (tmp_path / "in" / name).read_bytes() == (tmp_path / "state" / name).read_bytes()


def sealed_with_tail(bob: Identity, tmp_path: Path, tail: int) -> tuple[bytes, int]:
    """A sealed valid state archive followed by ``tail`` zero bytes (inside the sealed
    payload): the tar reader is done long before the last chunk."""
    files = make_state(tmp_path / "state", 1000)
    archive = state_codec.pack(tmp_path / "state", files, 1 << 20) + bytes(tail)
    sealed = seal(archive, [bob.public], "c")
    _, prefix, _ = read_header(sealed)
    return sealed, len(prefix)


def test_a_state_cut_after_the_archive_end_still_fails(bob, tmp_path):
    """Attack: drop the last chunks of a sealed state whose tar ends early. The tar reader
    never needs them; only reading the payload to its authenticated end catches the cut."""
    sealed, start = sealed_with_tail(bob, tmp_path, 3 * BATCH * CHUNK)
    cut = sealed[: start + (len(sealed) - start) // (CHUNK + TAG) * (CHUNK + TAG) - (CHUNK + TAG)]
    (tmp_path / "cut.sealed").write_bytes(cut)
    with pytest.raises(SealError, match="truncated"):
        open_and_unpack(tmp_path / "cut.sealed", tmp_path / "in", 1 << 20, bob.sealing, "c")
    assert not (tmp_path / "in").exists()  # nothing of a failed state stays


@pytest.mark.parametrize("attack", ["swap", "flip-tail", "flip-header", "append"])
def test_a_swapped_flipped_or_extended_state_fails_through_the_pipe(bob, tmp_path, attack):
    sealed, start = sealed_with_tail(bob, tmp_path, 3 * BATCH * CHUNK)
    data = bytearray(sealed)
    one = start + (CHUNK + TAG)
    if attack == "swap":  # two chunks after the archive's end trade places
        a, b = one + 20 * (CHUNK + TAG), one + 21 * (CHUNK + TAG)
        data[a:b], data[b : b + CHUNK + TAG] = data[b : b + CHUNK + TAG], data[a:b]
    elif attack == "flip-tail":
        data[-1] ^= 1
    elif attack == "flip-header":
        data[start - 3] ^= 1  # inside the header JSON's tail
    else:
        data += os.urandom(CHUNK + TAG)
    (tmp_path / "bad.sealed").write_bytes(bytes(data))
    with pytest.raises(SealError):
        open_and_unpack(tmp_path / "bad.sealed", tmp_path / "in", 1 << 20, bob.sealing, "c")
    assert not (tmp_path / "in").exists()


def tar_of(members: dict[str, bytes], fmt: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_long_and_unicode_names_unpack_from_any_tar_format(tmp_path, fmt):
    """The unpacker reads headers with tarfile (pax records, GNU long names) and the
    contents itself: every format tarfile writes comes out the same."""
    long_name = "/".join(["d" * 60] * 3) + "/w.npy" if fmt != tarfile.USTAR_FORMAT else "w.npy"
    members = {long_name: os.urandom(70_000), "Größe.json": b"{}", "e.csv": b""}
    if fmt == tarfile.USTAR_FORMAT:
        members.pop("Größe.json")
    names = state_codec.unpack(tar_of(members, fmt), tmp_path / "out", 1 << 20)
    assert sorted(names) == sorted(members)
    for name, data in members.items():
        assert (tmp_path / "out" / name).read_bytes() == data


def test_a_global_pax_header_or_a_cut_member_is_refused(tmp_path):
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "x"}
    ) as tar:
        info = tarfile.TarInfo("a.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(state_codec.StateInvalid, match="global pax header"):
        state_codec.unpack(out.getvalue(), tmp_path / "g", 1 << 20)
    archive = tar_of({"w.npy": os.urandom(5000)}, tarfile.PAX_FORMAT)
    with pytest.raises(state_codec.StateInvalid, match="cut short"):
        state_codec.unpack(archive[:3000], tmp_path / "c", 1 << 20)
