"""The direct volume path (station/volume_dir.py) against the archive path it replaces.

Real Docker volumes: an output tmpfs volume with the runner's own options, kept mounted by
a holder container running ``sleep`` from pht-base, exactly as a hop has it. The test,
as root on the Docker host, writes hostile content into the volume's folder (what a
hostile train, or the holder's image, could leave there and more: root may create device
nodes), then copies it out through both paths. Both must copy the same plain files and
refuse the same things, never following a link.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from station import volume_dir
from station.output_volume import (
    MAX_DEPTH,
    MIB,
    OUTPUT_SLACK,
    archive_bound,
    copy_output,
    volume_options,
)
from station.output_volume import output_mount as mount_of
from station.runner import DockerRunner
from tests.test_sandbox_attacks import LIMITS, HopDirs, assert_removed, run
from tests.test_sandbox_attacks import attack_image as attack_image  # the shared fixtures
from tests.test_sandbox_attacks import hop as hop

pytestmark = pytest.mark.docker

CAP_MB = 4
INODES = 256
SECRET = b"station private key: do not leak\n"


@pytest.fixture
def held(docker_required) -> Iterator[tuple[Any, Path]]:
    """(holder container, the output volume's host folder) of a real held output tmpfs."""
    import docker

    client = docker.from_env(timeout=120)
    run_id = uuid.uuid4().hex[:12]
    labels = {"pht": "test", "pht.run": run_id}
    volume = client.volumes.create(
        name=f"pht-output-{run_id}",
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": volume_options(CAP_MB, INODES, 0)},
        labels=labels,
    )
    holder = client.containers.create(
        "pht-base:latest",
        name=f"pht-hold-{run_id}",
        entrypoint=["sleep", "infinity"],
        mounts=[mount_of(volume.name, read_only=True)],
        network_mode="none",
        labels=labels,
    )
    try:
        holder.start()
        yield holder, Path(volume.attrs["Mountpoint"])
    finally:
        holder.remove(force=True)
        volume.remove(force=True)
        assert_removed(f"pht.run={run_id}")


def both(holder: Any, folder: Path, tmp_path: Path, cap: int = CAP_MB * MIB) -> tuple[Any, Any]:
    """Copy out through the archive path and the direct path; (result, tree) of each."""
    assert volume_dir.is_tmpfs_of(folder, CAP_MB * MIB + OUTPUT_SLACK, INODES)
    out_a, out_d = tmp_path / "archive", tmp_path / "direct"
    out_a.mkdir()
    out_d.mkdir()
    by_archive = copy_output(holder, out_a, cap, True, archive_bound(CAP_MB, INODES))
    by_direct = volume_dir.copy_tree(folder, out_d, cap, True, INODES)
    return (by_archive, tree(out_a)), (by_direct, tree(out_d))


def tree(folder: Path) -> dict[bytes, Any]:
    """Every entry under ``folder`` by its name's bytes: a folder, or a file's content."""
    found: dict[bytes, Any] = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        key = os.fsencode(path.relative_to(folder))
        assert stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode), key
        found[key] = "dir" if path.is_dir() else path.read_bytes()
    return found


def test_hostile_entries_are_refused_alike_by_both_paths(held, tmp_path):
    holder, folder = held
    secret = tmp_path / "station.key"
    secret.write_bytes(SECRET)
    other = tmp_path / "other-volume"
    other.mkdir()
    (other / "x").write_bytes(SECRET)
    (folder / "state.json").write_bytes(b'{"ok": true}')
    (folder / "sub").mkdir()
    (folder / "sub" / "model.bin").write_bytes(b"\x00" * 5000)
    (folder / "a-first").write_bytes(b"linked")
    os.link(folder / "a-first", folder / "b-hardlink")  # counted and copied once
    os.symlink("/etc/shadow", folder / "shadow")
    os.symlink(secret, folder / "key")
    os.symlink(other, folder / "volume")
    os.symlink("/", folder / "root")
    os.symlink("../../../../etc/passwd", folder / "sub" / "up")
    os.mkfifo(folder / "fifo")
    os.mknod(folder / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "sock"))
    for name in (b"...", b"..x", b"new\nline", b"\xff\xfe-not-utf8", b" space "):
        (folder / os.fsdecode(name)).write_bytes(name)
    deep = folder
    for _ in range(60):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "leaf").write_bytes(b"leaf")

    (archive, from_archive), (direct, from_direct) = both(holder, folder, tmp_path)

    assert from_direct == from_archive
    plain = sum(len(v) for v in from_direct.values() if v != "dir")
    assert direct == archive == (plain, False)
    assert plain == len(b'{"ok": true}') + 5000 + len(b"linked") + len(b"leaf") + 32
    assert from_direct[b"state.json"] == b'{"ok": true}'
    assert from_direct[b"a-first"] == b"linked" and b"b-hardlink" not in from_direct
    assert from_direct[b"\xff\xfe-not-utf8"] == b"\xff\xfe-not-utf8"
    assert from_direct[b"/".join([b"d"] * 60) + b"/leaf"] == b"leaf"
    for name in (b"shadow", b"key", b"volume", b"root", b"sub/up", b"fifo", b"null", b"sock"):
        assert name not in from_direct
    assert all(SECRET not in v for v in from_direct.values() if v != "dir")


def test_over_the_cap_nothing_is_written_by_either_path(held, tmp_path):
    holder, folder = held
    (folder / "a").mkdir()
    (folder / "a" / "one").write_bytes(b"1" * MIB)
    (folder / "b").write_bytes(b"2" * (2 * MIB))

    (archive, from_archive), (direct, from_direct) = both(holder, folder, tmp_path, cap=2 * MIB)

    assert archive == direct == (3 * MIB, True)
    assert from_archive == from_direct == {}


def test_more_entries_than_the_bound_are_refused(held, tmp_path):
    _, folder = held
    for i in range(20):
        (folder / f"f{i}").write_bytes(b"x")
    with pytest.raises(volume_dir.SandboxError, match="more entries"):
        volume_dir.copy_tree(folder, tmp_path, CAP_MB * MIB, True, 10)


def test_a_link_swapped_in_while_the_output_is_read_is_never_followed(held, tmp_path):
    """Another process swaps ``swap`` between a plain file and a link to a station secret
    (and a folder and a link to one) as fast as it can while the station copies out."""
    _, folder = held
    secret = tmp_path / "station.key"
    secret.write_bytes(SECRET)
    stop = threading.Event()

    def swapper() -> None:
        plain, link = folder / "plain.tmp", folder / "link.tmp"
        dplain, dlink = folder / "dplain.tmp", folder / "dlink.tmp"
        while not stop.is_set():
            plain.write_bytes(b"harmless")
            with contextlib.suppress(FileExistsError):
                link.symlink_to(secret)
            dplain.mkdir(exist_ok=True)
            with contextlib.suppress(FileExistsError):
                dlink.symlink_to(tmp_path)
            os.replace(plain, folder / "swap")
            os.replace(link, folder / "swap")
            with contextlib.suppress(OSError):
                os.replace(dplain, folder / "dswap")
            with contextlib.suppress(OSError):
                os.replace(dlink, folder / "dswap")

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        for i in range(200):
            out = tmp_path / f"out{i}"
            out.mkdir()
            with contextlib.suppress(FileNotFoundError):  # an entry gone between list and open
                volume_dir.copy_tree(folder, out, CAP_MB * MIB, True, INODES)
            for path in out.rglob("*"):
                assert not path.is_symlink()
                assert path.is_dir() or path.read_bytes() in (b"", b"harmless")  # mid-write: empty
            assert not (out / "dswap" / "station.key").exists()
    finally:
        stop.set()
        thread.join()


def test_a_file_that_grows_while_read_is_copied_only_as_far_as_counted(held, tmp_path):
    _, folder = held
    growing = folder / "growing"
    growing.write_bytes(b"g" * MIB)
    stop = threading.Event()

    def grow() -> None:
        with growing.open("ab") as sink:
            while not stop.is_set() and sink.tell() < 3 * MIB:
                sink.write(b"g" * 4096)

    thread = threading.Thread(target=grow, daemon=True)
    thread.start()
    try:
        total, too_large = volume_dir.copy_tree(folder, tmp_path, CAP_MB * MIB, True, INODES)
    finally:
        stop.set()
        thread.join()
    assert not too_large
    assert (tmp_path / "growing").stat().st_size == total <= CAP_MB * MIB


def test_direct_fill_gives_the_tree_the_archive_path_gives(docker_required, tmp_path):
    """Input folders filled both ways into real volumes: same names, content, owner (root),
    permission bits (setuid/setgid/sticky dropped); links and fifos left out."""
    import docker

    from station.input_volume import tar_stream

    client = docker.from_env(timeout=120)
    source = tmp_path / "input"
    (source / "sub").mkdir(parents=True)
    (source / "state.json").write_text("{}")
    (source / "sub" / "w.bin").write_bytes(os.urandom(3 * MIB))
    (source / "sub" / "odd").write_text("x")
    os.chmod(source / "sub" / "odd", 0o4755)
    os.symlink("/etc/shadow", source / "link")
    os.mkfifo(source / "fifo")
    run_id = uuid.uuid4().hex[:12]
    labels = {"pht": "test", "pht.run": run_id}
    direct = client.volumes.create(name=f"pht-input-d-{run_id}", labels=labels)
    archive = client.volumes.create(name=f"pht-input-a-{run_id}", labels=labels)
    loader = client.containers.create(
        "pht-base:latest",
        entrypoint=["true"],
        mounts=[mount_of(archive.name, read_only=False)],
        labels=labels,
    )
    try:
        volume_dir.fill(source, Path(direct.attrs["Mountpoint"]))
        assert loader.put_archive("/pht/output", tar_stream(source))
        seen = {}
        for volume in (direct, archive):
            root = Path(volume.attrs["Mountpoint"])
            seen[volume.name] = {
                str(p.relative_to(root)): (
                    p.lstat().st_uid,
                    p.lstat().st_gid,
                    stat.S_IMODE(p.lstat().st_mode),
                    p.read_bytes() if p.is_file() else None,
                )
                for p in sorted(root.rglob("*"))
            }
        assert seen[direct.name] == seen[archive.name]
        assert set(seen[direct.name]) == {"state.json", "sub", "sub/w.bin", "sub/odd"}
        assert seen[direct.name]["sub/odd"][:3] == (0, 0, 0o755)
    finally:
        loader.remove(force=True)
        direct.remove(force=True)
        archive.remove(force=True)


PRIVATE_HOP = """
import json, sys
from pathlib import Path
from station.runner import DockerRunner
from tests.test_sandbox_attacks import ENV, LIMITS, SMALL
runner = DockerRunner(LIMITS)
root = Path(sys.argv[2])
result = runner.run(sys.argv[1], input_dir=root / "input", data_dir=root / "data",
                    output_dir=root / "output", env=ENV, resources=SMALL)
print(json.dumps({"ok": result.ok, "direct": runner._volumes_root is not None,
                  "run": result.run_id}))
"""


def test_a_station_that_cannot_see_the_holders_mount_falls_back_to_the_archive(attack_image, hop):
    """The station in a private mount namespace: the volumes' folders are there (same
    disk), but the output tmpfs the holder mounts later is not (no propagation), so the
    folder is an empty directory. Reading it directly would lose the train's output; the
    runner must see that it is not the tmpfs and stream the archive instead."""
    image = attack_image("noop")
    script = hop.input.parent / "private_hop.py"
    script.write_text(PRIVATE_HOP)
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            str(script),
            image,
            str(hop.input.parent),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["direct"]  # the input side went direct, the probe held
    assert json.loads((hop.output / "state.json").read_text()) == {"ok": True}
    assert_removed(f"pht.run={report['run']}")


def test_the_runner_proves_and_uses_the_direct_path_on_the_docker_host(attack_image, hop):
    runner = DockerRunner(LIMITS)
    result = run(runner, attack_image("noop"), hop)
    assert result.ok, result.log
    assert runner._volumes_root == Path(runner.client.info()["DockerRootDir"]) / "volumes"
    assert json.loads((hop.output / "state.json").read_text()) == {"ok": True}


def test_a_missing_folder_is_refused_on_the_direct_path_and_nothing_is_left(attack_image, hop):
    runner = DockerRunner(LIMITS)
    missing = HopDirs(hop.input, hop.data / "gone", hop.output)
    with pytest.raises(volume_dir.SandboxError, match="gone is missing"):
        run(runner, attack_image("noop"), missing)
    assert runner._volumes_root is not None  # the refusal came from the direct path
    assert_removed(f"pht.runner={runner.runner_id}")


def test_a_tree_deeper_than_the_bound_is_refused_by_both_paths(held, tmp_path):
    """129 nested folders with a file at the bottom: within PATH_MAX (the archive path
    would copy it), but the direct walk holds an fd and a frame per level: both refuse."""
    holder, folder = held
    deep = folder.joinpath(*["d"] * (MAX_DEPTH + 1))
    deep.mkdir(parents=True)
    (deep / "leaf").write_bytes(b"leaf")
    for way in ("archive", "direct"):
        out = tmp_path / way
        out.mkdir()
        with pytest.raises(volume_dir.SandboxError, match="nested deeper"):
            if way == "archive":
                copy_output(holder, out, CAP_MB * MIB, True, archive_bound(CAP_MB, INODES))
            else:
                volume_dir.copy_tree(folder, out, CAP_MB * MIB, True, INODES)


def test_a_probe_docker_fails_leaves_nothing_and_the_hop_takes_the_archive_path(
    attack_image, hop, monkeypatch
):
    """Docker answering the probe with an error (a fault we cannot cause on demand, so the
    probe's own call raises Docker's error here; everything else is real): the hop's three
    volumes are still removed, the hop runs through the archive API, and the next hop
    probes again."""
    import docker

    def refused(*_: Any, **__: Any) -> Path | None:
        raise docker.errors.APIError("500 Server Error: the probe's container")

    monkeypatch.setattr(volume_dir, "probe", refused)
    runner = DockerRunner(LIMITS)
    result = run(runner, attack_image("noop"), hop)
    assert result.ok, result.log
    assert json.loads((hop.output / "state.json").read_text()) == {"ok": True}
    assert runner._volumes_root is None and not runner._probed  # tried again next hop
    assert_removed(f"pht.runner={runner.runner_id}")


def nested(folder: Path, names: list[str]) -> None:
    """Folders ``names`` one inside the other, made through fds (the whole path may be
    past PATH_MAX from here)."""
    fd = os.open(folder, os.O_DIRECTORY)
    for name in names:
        os.mkdir(name, dir_fd=fd)
        fd, parent = os.open(name, os.O_DIRECTORY, dir_fd=fd), fd
        os.close(parent)
    os.close(fd)


def copy_both_ways(holder: Any, folder: Path, outs: dict[str, Path]) -> dict[str, OSError]:
    """Each path's refusal of the held output, into ``outs``: an OSError, which
    ``station.outcome.contained`` turns into a fixed sentence and a line in the hop's log
    (tests/test_covert_channels.py::test_an_output_path_the_host_cannot_hold_is_not_quoted)."""
    refusals = {}
    for way, out in outs.items():
        with pytest.raises(OSError) as refused:
            if way == "archive":
                copy_output(holder, out, CAP_MB * MIB, True, archive_bound(CAP_MB, INODES))
            else:
                volume_dir.copy_tree(folder, out, CAP_MB * MIB, True, INODES)
        refusals[way] = refused.value
    return refusals


def test_an_output_path_past_the_bound_is_refused_by_both_paths_leaving_nothing(held, tmp_path):
    """Folders named 250 bytes each, 20 deep: the train may make them in its tmpfs; past
    1 KiB of path both copy-outs refuse as the OS refuses a name too long (Docker's archive
    would quietly stop at PATH_MAX, the direct walk would fail on it), and nothing is
    written."""
    holder, folder = held
    (folder / "early.txt").write_bytes(b"copied before the refusal")
    nested(folder, [chr(ord("a") + i) * 250 for i in range(20)])
    outs = {way: tmp_path / way for way in ("archive", "direct")}
    for out in outs.values():
        out.mkdir()
    for way, refused in copy_both_ways(holder, folder, outs).items():
        assert refused.errno == errno.ENAMETOOLONG and "longer than 1024" in refused.strerror
        assert list(outs[way].iterdir()) == [], way


def test_a_path_the_station_cannot_write_is_undone_on_both_paths(held, tmp_path):
    """Within the bound, but the station's own output folder is deep enough that the OS
    refuses the path (or any OS error while writing: a full disk): both copy-outs undo
    what they wrote before the error goes on."""
    holder, folder = held
    (folder / "early.txt").write_bytes(b"copied before the refusal")
    nested(folder, [chr(ord("a") + i) * 250 for i in range(4)])
    outs = {}
    for way in ("archive", "direct"):  # each ~3,300 bytes long: 1,000 more pass PATH_MAX
        outs[way] = tmp_path.joinpath(way, *["o" * 250] * 13)
        outs[way].mkdir(parents=True)
    for way, refused in copy_both_ways(holder, folder, outs).items():
        assert refused.errno == errno.ENAMETOOLONG, way
        assert list(outs[way].iterdir()) == [], way
