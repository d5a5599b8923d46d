"""``station.inspect`` lists every file under /opt/train and flags what it does not show
(security review, HIGH 1c): a .pyc, a shared object or a symlink beside a harmless
train.py must not be invisible to the admin."""

from __future__ import annotations

import io
import tarfile

from station.inspect import NOT_SHOWN, listing, not_shown


def _archive(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        folder = tarfile.TarInfo("train")  # Docker's archive starts with the folder itself
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(f"train/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(f"train/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return out.getvalue()


def test_every_file_is_listed_and_what_is_not_shown_is_flagged() -> None:
    pyc = b"\xa7\r\r\n" + bytes(range(40))
    files = listing(
        _archive(
            {
                "train.py": b"def local(data, state, ctx):\n    return {}\n",
                "train.toml": b"[train]\n",
                "__pycache__/train.cpython-311.pyc": pyc,
                "fast.so": b"\x7fELF" + b"\x00" * 10,
                "notes.dat": b"plain words",
            },
            links={"data.py": "/etc/passwd"},
        )
    )
    assert "return {}" in files["train.py"] and not not_shown(files["train.py"])
    for name in ("__pycache__/train.cpython-311.pyc", "fast.so", "notes.dat", "data.py"):
        assert name in files, name
        assert not_shown(files[name]) and files[name].startswith(NOT_SHOWN), name
    assert f"{len(pyc)} bytes" in files["__pycache__/train.cpython-311.pyc"]
    assert "compiled" in files["__pycache__/train.cpython-311.pyc"]
    assert "/etc/passwd" in files["data.py"]
    assert "train" not in files  # the folder itself is no file
