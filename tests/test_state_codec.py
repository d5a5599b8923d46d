import hashlib
import io
import tarfile

import pytest

from trains import state_codec
from trains.errors import StateInvalid, StateTooLarge


def _members(archive: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]


def test_pack_is_deterministic_but_for_its_nonce_and_round_trips(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "state.json").write_text('{"a": 1}')
    (src / "sub" / "table.csv").write_text("x,y\n1,2\n")
    files = state_codec.list_state_files(src)
    assert files == ["state.json", "sub/table.csv"]
    first = state_codec.pack(src, files, 1000)
    (src / "state.json").touch()  # a new mtime changes nothing but the nonce
    again = state_codec.pack(src, reversed(files), 1000)
    assert _members(again)[1:] == _members(first)[1:]
    assert [n for n, _ in _members(first)] == [".pht/nonce", "state.json", "sub/table.csv"]
    out = tmp_path / "out"
    assert state_codec.unpack(first, out, 1000) == ["state.json", "sub/table.csv"]
    assert (out / "sub" / "table.csv").read_text() == "x,y\n1,2\n"


def test_size_cap(tmp_path):
    (tmp_path / "big.csv").write_bytes(b"x" * 2000)
    with pytest.raises(StateTooLarge):
        state_codec.pack(tmp_path, ["big.csv"], 1000)
    archive = state_codec.pack(tmp_path, ["big.csv"], 5000)
    with pytest.raises(StateTooLarge):
        state_codec.unpack(archive, tmp_path / "out", 1000)


def test_pickles_and_links_never_travel(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(StateInvalid, match="may not carry"):
        state_codec.pack(tmp_path, ["model.pkl"], 1000)
    (tmp_path / "link.json").symlink_to("/etc/passwd")
    with pytest.raises(StateInvalid, match="not a regular file"):
        state_codec.list_state_files(tmp_path)


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../escape.json", "/etc/cron.json", "a/../../b.json"])
def test_path_traversal_is_refused(tmp_path, name):
    with pytest.raises(StateInvalid, match="plain relative path"):
        state_codec.unpack(_tar_with(tarfile.TarInfo(name), b"{}"), tmp_path / "out", 1000)
    assert not (tmp_path / "escape.json").exists()


def test_symlink_member_is_refused(tmp_path):
    link = tarfile.TarInfo("state.json")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(StateInvalid, match="not a regular file"):
        state_codec.unpack(_tar_with(link), tmp_path / "out", 1000)


def test_garbage_is_refused(tmp_path):
    with pytest.raises(StateInvalid):
        state_codec.unpack(b"not a tar" * 100, tmp_path / "out", 10_000)


def _tar_of(*entries: tuple[str, bytes | None]) -> bytes:
    """A tar of the given entries in order; ``None`` content makes a directory entry."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            member = tarfile.TarInfo(name)
            if data is None:
                member.type = tarfile.DIRTYPE
                tar.addfile(member)
            else:
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "entries",
    [
        # reproduction 3 of issue 10: a file, then a file "under" it (FileExistsError)
        [("a.json", b"{}"), ("a.json/b.json", b"{}")],
        # the other order: a folder, then a file of the same name (IsADirectoryError)
        [("a.json/b.json", b"{}"), ("a.json", b"{}")],
        # the same name twice, also spelled differently
        [("a.json", b"{}"), ("a.json", b"[]")],
        [("x/a.json", b"{}"), ("x//./a.json", b"[]")],
    ],
    ids=["nested-under-file", "file-over-folder", "repeated", "repeated-other-spelling"],
)
def test_colliding_entries_are_refused_with_a_state_error(tmp_path, entries):
    with pytest.raises(StateInvalid, match=r"collides|twice|under"):
        state_codec.unpack(_tar_of(*entries), tmp_path / "out", 10_000)


def test_too_many_entries_too_deep_or_too_long_names_are_refused(tmp_path):
    many = [(f"f{i}.json", b"") for i in range(state_codec.MAX_ENTRIES + 1)]
    with pytest.raises(StateInvalid, match="more than"):
        state_codec.unpack(_tar_of(*many), tmp_path / "many", 10_000)
    deep = "/".join(["d"] * (state_codec.MAX_DEPTH + 2)) + ".json"
    with pytest.raises(StateInvalid, match="deep"):
        state_codec.unpack(_tar_of((deep, b"")), tmp_path / "deep", 10_000)
    long = "x" * 300 + ".json"  # above the file system's 255 (OSError: File name too long)
    with pytest.raises(StateInvalid, match="long"):
        state_codec.unpack(_tar_of((long, b"")), tmp_path / "long", 10_000)


def test_an_oversized_pax_header_is_refused_before_it_is_read(tmp_path):
    """A pax header claims 1 GB: tarfile would read all of it into memory at once."""
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 1 << 30
    archive = header.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024
    with pytest.raises(StateInvalid, match="tar header of 1073741824 bytes"):
        state_codec.unpack(archive, tmp_path / "out", 10_000)


def test_the_same_state_packed_twice_commits_differently(tmp_path):
    """Receipts commit to sha256(archive), and central sees receipts: the 256-bit nonce is
    what keeps it from trying every small state (a count, a yes/no) against them."""
    (tmp_path / "state.json").write_text('{"n": 3}')
    first = state_codec.pack(tmp_path, ["state.json"], 1000)
    second = state_codec.pack(tmp_path, ["state.json"], 1000)
    assert hashlib.sha256(first).digest() != hashlib.sha256(second).digest()
    nonces = {dict(_members(a))[".pht/nonce"] for a in (first, second)}
    assert len(nonces) == 2 and all(len(n) == 32 for n in nonces)


def test_the_reserved_prefix_is_never_a_trains(tmp_path):
    """A train can neither write nor read a name under .pht/: packing refuses it,
    unpacking leaves the nonce out and refuses anything else there."""
    (tmp_path / ".pht").mkdir()
    (tmp_path / ".pht" / "nonce.json").write_text("{}")
    with pytest.raises(StateInvalid, match="reserved"):
        state_codec.pack(tmp_path, [".pht/nonce.json"], 1000)
    (tmp_path / "state.json").write_text("{}")
    out = tmp_path / "out"
    archive = state_codec.pack(tmp_path, ["state.json"], 1000)
    assert state_codec.unpack(archive, out, 1000) == ["state.json"]
    assert not (out / ".pht").exists()
    for name, data in ((".pht/nonce", b"x" * 31), (".pht/other.json", b"{}")):
        forged = io.BytesIO()
        with tarfile.open(fileobj=forged, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        with pytest.raises(StateInvalid):
            state_codec.unpack(forged.getvalue(), tmp_path / name.replace("/", "_"), 1000)
