"""The station's sandbox, proven by attack.

Each test runs a malicious train (tests/attack_trains/<name>, built FROM pht-base:latest)
through the real ``DockerRunner.run`` in a real container, then checks from the host that
the attack was contained *and* that the run result reports what happened. The trains that
survive report what they saw in their state.json; the host-side checks do not trust them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from station.runner import LOG_TAIL_BYTES, RUNSC_PIDS, DockerRunner, RunResult, SandboxLimits
from trains.manifest import Resources

pytestmark = pytest.mark.docker

ATTACKS = Path(__file__).parent / "attack_trains"
LIMITS = SandboxLimits(pids=64, tmp_mb=16, shm_mb=8, log_mb=1)
SMALL = Resources(memory_mb=128, cpus=0.5, timeout_s=30, max_output_mb=8)
DOCKERFILE = "FROM pht-base:latest\nCOPY --chown=0:0 train/ /opt/train/\n"
ENV = {"PHT_MODE": "local", "PHT_STATION": "attacked", "PHT_ROUND": "0", "PHT_HOP": "0"}
# gVisor checks ownership and permissions before read-only-ness: a write the train's user
# may not make anyway is refused with EACCES or EPERM there, where Linux says EROFS
REFUSED_FIRST = {"runc": {"EROFS"}, "runsc": {"EROFS", "EACCES", "EPERM"}}


@dataclass
class HopDirs:
    input: Path
    data: Path
    output: Path


@pytest.fixture(scope="module", params=["runc", "runsc"])
def runtime(request, docker_required) -> str:
    """Every attack runs under both runtimes a station may set (station.toml's runtime)."""
    return str(request.param)


@pytest.fixture(scope="module")
def runner(runtime) -> DockerRunner:
    return DockerRunner(LIMITS, runtime=runtime)


@pytest.fixture(scope="module")
def attack_image(docker_required) -> Iterator[Callable[[str], str]]:
    """``attack_image(name) -> image id``, built once per module and removed afterwards."""
    import docker

    client = docker.from_env(timeout=300)
    built: dict[str, str] = {}

    def build(name: str) -> str:
        if name not in built:
            context = io.BytesIO()
            with tarfile.open(fileobj=context, mode="w") as tar:
                data = DOCKERFILE.encode()
                info = tarfile.TarInfo("Dockerfile")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                for path in sorted((ATTACKS / name).iterdir()):
                    if path.suffix in (".py", ".toml"):
                        tar.add(path, arcname=f"train/{path.name}")
            context.seek(0)
            image, _ = client.images.build(
                fileobj=context, custom_context=True, tag=f"pht-attack/{name}:test", rm=True
            )
            built[name] = str(image.id)
        return built[name]

    yield build
    for name in built:
        with contextlib.suppress(docker.errors.APIError):  # in use elsewhere: harmless
            client.images.remove(f"pht-attack/{name}:test")


@pytest.fixture
def hop(tmp_path) -> HopDirs:
    """A hop's folders as station/hop.py lays them out: an input state and one dataset."""
    dirs = HopDirs(tmp_path / "input", tmp_path / "data", tmp_path / "output")
    (dirs.data / "cohort").mkdir(parents=True)
    dirs.input.mkdir()
    dirs.output.mkdir()
    (dirs.input / "state.json").write_text(json.dumps({"count": 41}))
    (dirs.data / "cohort" / "data.csv").write_text("id,age\n1,50\n2,61\n3,47\n")
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dirs


def run(
    runner: DockerRunner,
    image_id: str,
    hop: HopDirs,
    resources: Resources = SMALL,
    **env: str,
) -> RunResult:
    result = runner.run(
        image_id,
        input_dir=hop.input,
        data_dir=hop.data,
        output_dir=hop.output,
        env={**ENV, **env},
        resources=resources,
    )
    assert_removed(f"pht.run={result.run_id}")
    return result


def assert_removed(label: str) -> None:
    """Neither the hop's containers nor its output volume are left behind."""
    import docker

    client = docker.from_env()
    assert client.containers.list(all=True, filters={"label": label}) == []
    assert client.volumes.list(filters={"label": label}) == []


def state_of(hop: HopDirs) -> dict:
    return json.loads((hop.output / "state.json").read_text())


def digest_tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class Watcher(threading.Thread):
    """Polls the runner's hop container while it runs and records what the host sees."""

    def __init__(self, runner: DockerRunner, probe: Callable[[Any], Any]) -> None:
        super().__init__(daemon=True)
        self.runner, self.probe = runner, probe
        self.seen: list[Any] = []
        self.done = threading.Event()

    def run(self) -> None:
        label = f"pht.runner={self.runner.runner_id}"
        while not self.done.is_set():
            for container in self.runner.client.containers.list(filters={"label": label}):
                if container.name.startswith("pht-hop-"):
                    try:
                        value = self.probe(container)
                    except Exception:  # the container ended between list and probe
                        value = None
                    if value is not None:
                        self.seen.append(value)
            time.sleep(0.05)


def test_well_behaved_train_runs_and_only_its_output_comes_back(runtime, runner, attack_image, hop):
    watcher = Watcher(runner, lambda container: container.attrs["HostConfig"]["Runtime"])
    watcher.start()
    try:
        result = run(runner, attack_image("noop"), hop)
    finally:
        watcher.done.set()
        watcher.join()

    assert set(watcher.seen) == {runtime}  # as the host's Docker saw the train's container

    assert result.ok, result.log
    assert (result.exit_code, result.timed_out, result.oom_killed) == (0, False, False)
    assert not result.output_too_large
    assert state_of(hop) == {"ok": True}
    assert sorted(p.name for p in hop.output.iterdir()) == ["state.json"]


def test_network_egress_and_dns_are_impossible(runner, attack_image, hop):
    connections: list[object] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError):  # the accept timed out
                    connections.append(server.accept())

        listener = threading.Thread(target=accept, daemon=True)
        listener.start()
        port = str(server.getsockname()[1])
        result = run(runner, attack_image("network"), hop, ATTACK_PORT=port)
        stop.set()
        listener.join()

    assert result.ok, result.log
    seen = state_of(hop)
    assert connections == [], "a container reached a server on the host"
    assert seen["interfaces"] == ["lo"]
    for target in ("host_loopback", "docker_bridge", "public_ip"):
        assert seen[target] in ("ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH"), target
    assert seen["dns"] != "connected"


def test_input_state_and_data_are_read_only(runtime, runner, attack_image, hop):
    # world-writable on the host, so only the read-only mount can stop the train
    for path in [hop.input, hop.data, *hop.input.rglob("*"), *hop.data.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    before = digest_tree(hop.input) | digest_tree(hop.data)

    result = run(runner, attack_image("readonly_mounts"), hop)

    assert result.ok, result.log
    seen = state_of(hop)
    assert seen["rows_seen"] == 3 and seen["state_seen"] == {"count": 41}  # it could read
    for attempt in ("append_input", "overwrite_data", "delete_data", "rename_data"):
        assert seen[attempt] == "EROFS", (attempt, seen[attempt])
    # creating or deleting in the input's own folder, the root of a Docker volume (root's,
    # 0755): gVisor checks that permission before the read-only mount, runc the mount first
    for attempt in ("new_input_file", "delete_input"):
        assert seen[attempt] in REFUSED_FIRST[runtime], (attempt, seen[attempt])
    assert seen["chmod_data"] in REFUSED_FIRST[runtime]  # the file's owner is the host's root
    assert digest_tree(hop.input) | digest_tree(hop.data) == before


def test_host_files_docker_socket_and_devices_are_out_of_reach(
    runtime, runner, attack_image, hop, tmp_path
):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host only")
    secret.chmod(0o644)

    result = run(runner, attack_image("host_paths"), hop, ATTACK_HOST_FILE=str(secret))

    assert result.ok, result.log
    seen = state_of(hop)
    assert seen["host_file"] == "ENOENT"
    assert seen["host_file_via_proc1"] in ("ENOENT", "EACCES")
    assert seen["shadow"] == "EACCES"  # the image's own shadow, and not even that
    assert seen["docker_sockets"] == []
    assert seen["block_devices"] == []
    assert set(seen["devices"]) <= {
        "console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
        "stderr", "stdin", "stdout", "tty", "urandom", "zero",
    } | ({"fuse", "net"} if runtime == "runsc" else set())  # fmt: skip
    # (gVisor's /dev/fuse and /dev/net/tun are devices of its own kernel, not the host's)
    if runtime == "runc":
        assert seen["mknod"] == "EPERM"
    else:  # gVisor lets the node be made in its own /tmp, but it leads to no device
        assert seen["disk_read"] == "ENXIO"
    assert seen["pid1"].endswith("docker-init")  # its own PID namespace, with an init
    assert seen["hostname"] == "pht-train"
    # its own cgroup namespace: no host cgroup paths (gVisor shows no cgroups at all)
    assert seen["cgroups"] == (["/"] if runtime == "runc" else [])
    assert max(seen["processes"]) < 100  # sees only its own few processes


def test_privilege_escalation_fails(runtime, runner, attack_image, hop):
    result = run(runner, attack_image("privilege"), hop)

    assert result.ok, result.log
    seen = state_of(hop)
    assert (seen["uid"], seen["euid"]) == (10001, 10001)
    assert 0 not in seen["groups"]
    assert seen["setuid0"] == "EPERM" and seen["setgid0"] == "EPERM"
    no_caps = "0000000000000000"
    assert (seen["CapEff"], seen["CapPrm"], seen["CapBnd"]) == (no_caps, no_caps, no_caps)
    assert seen["NoNewPrivs"] == "1"
    if runtime == "runc":
        assert seen["Seccomp"] == "2"  # Docker's default seccomp filter is in force
        assert seen["unshare_user"] == "EPERM" and seen["unshare_mount"] == "EPERM"
    else:
        # Docker's filter is not loaded into gVisor (docs/sandbox.md, "gVisor"): the train's
        # calls reach gVisor's kernel, and only its own filtered calls reach the host's.
        # Namespaces the train may make there are gVisor's; the escalations below still fail.
        assert seen["Seccomp"] == "0"
    # setuid-root binaries run, but as 10001: no-new-privileges ignores the setuid bit
    assert seen["setuid_su"]["code"] != 0 and seen["setuid_su"]["said"] != "0"
    assert seen["setuid_mount"]["code"] != 0
    assert seen["chown_root"] == "EPERM"


def test_writes_and_execution_outside_the_output_fail(runtime, runner, attack_image, hop):
    result = run(runner, attack_image("write_outside"), hop)

    assert result.ok, result.log
    seen = state_of(hop)
    assert seen["var_tmp"] == "EROFS"  # world-writable: only the read-only root refuses it
    for place in ("root", "etc", "train_code", "pht"):
        assert seen[place] in REFUSED_FIRST[runtime], (place, seen[place])
    assert seen["tmp_mb"] <= LIMITS.tmp_mb
    assert seen["shm_mb"] <= LIMITS.shm_mb
    for place in ("exec_tmp", "exec_shm"):
        assert seen[place] == "EACCES", (place, seen[place])  # mounted noexec
    # the output volume's noexec holds under runc only; gVisor runs the program in its own
    # kernel (docs/sandbox.md, "gVisor")
    assert seen["exec_output"] == ("EACCES" if runtime == "runc" else "executed")


def pids_in_use(container) -> int | None:
    """Tasks in the container's PID cgroup, read from the host (cgroup v1 or v2)."""
    pid = container.attrs["State"]["Pid"]
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            return int(Path(f"/sys/fs/cgroup/pids{path}/pids.current").read_text())
        if controllers == "" and Path(f"/sys/fs/cgroup{path}/pids.current").exists():
            return int(Path(f"/sys/fs/cgroup{path}/pids.current").read_text())
    return None


def test_fork_bomb_is_held_by_the_pid_limit_and_killed(runtime, runner, attack_image, hop):
    short = SMALL.model_copy(update={"timeout_s": 4 if runtime == "runc" else 30})

    watcher = Watcher(runner, pids_in_use)
    watcher.start()
    try:
        result = run(runner, attack_image("fork_bomb"), hop, short)
    finally:
        watcher.done.set()
        watcher.join()

    assert not result.ok
    # from the host: the container's processes (and gVisor's own threads) stayed in the limit
    limit = LIMITS.pids + (RUNSC_PIDS if runtime == "runsc" else 0)
    assert watcher.seen and max(watcher.seen) <= limit
    if runtime == "runc":
        assert result.timed_out
        assert "timeout of 4s" in (result.failure(short) or "")
        refused = [line for line in result.log.splitlines() if line.startswith("fork refused")]
        assert refused, result.log
        assert int(refused[0].split()[3]) < LIMITS.pids
        assert result.seconds < 4 + 20
    else:
        # gVisor's processes live in its own kernel, which keeps no PID limit: the bomb runs
        # until the sandbox as a whole hits its memory limit (or its threads the PID limit)
        # and is killed, long before the timeout
        assert not result.timed_out, result
        assert result.oom_killed or result.exit_code != 0
    subprocess.run(["true"], check=True)  # the host can still start processes


def test_memory_hog_is_oom_killed_and_reported(runner, attack_image, hop):
    tight = SMALL.model_copy(update={"memory_mb": 64})

    result = run(runner, attack_image("memory_hog"), hop, tight)

    assert result.oom_killed and not result.timed_out
    assert result.exit_code == 137
    assert "ran out of its memory of 64 MB" in (result.failure(tight) or "")
    assert list(hop.output.iterdir()) == []


def test_endless_loop_is_killed_at_the_timeout(runner, attack_image, hop):
    short = SMALL.model_copy(update={"timeout_s": 3})

    result = run(runner, attack_image("endless_loop"), hop, short)

    assert result.timed_out and not result.oom_killed
    assert 3 <= result.seconds < 3 + 20
    assert result.failure(short) == "the train exceeded its timeout of 3s and was killed"
    assert list(hop.output.iterdir()) == []


def test_output_flood_stops_at_the_cap_in_memory_not_on_disk(runner, attack_image, hop):
    def output_mount(container) -> int | None:
        """Size of the filesystem behind the hop's /pht/output, if it is a tmpfs."""
        for mount in container.attrs["Mounts"]:
            if mount["Destination"] == "/pht/output" and mount.get("Type") == "volume":
                source = mount["Source"]
                with open("/proc/mounts") as mounts:
                    kinds = {line.split()[1]: line.split()[2] for line in mounts}
                if kinds.get(source) == "tmpfs":
                    stats = os.statvfs(source)
                    return stats.f_blocks * stats.f_frsize
        return None

    watcher = Watcher(runner, output_mount)
    watcher.start()
    try:
        result = run(runner, attack_image("output_flood"), hop)
    finally:
        watcher.done.set()
        watcher.join()

    assert result.output_too_large and not result.ok
    assert "more than its max_output_mb of 8 MB" in (result.failure(SMALL) or "")
    stopped = [line for line in result.log.splitlines() if line.startswith("flood stopped")]
    assert stopped and "No space left on device" in stopped[0], result.log
    assert int(stopped[0].split()[3]) <= SMALL.max_output_mb + 1  # not 1024
    assert list(hop.output.iterdir()) == []  # nothing of it reaches the station's folder
    # while it ran, the host saw /pht/output as a tmpfs of the cap (+1 MiB slack)
    assert watcher.seen and max(watcher.seen) <= (SMALL.max_output_mb + 1) * 1024 * 1024


def test_log_flood_keeps_a_capped_log(runner, attack_image, hop):
    def log_size(container) -> int | None:
        path = container.attrs.get("LogPath")
        return os.path.getsize(path) if path and os.path.exists(path) else None

    watcher = Watcher(runner, log_size)
    watcher.start()
    try:
        result = run(
            runner, attack_image("log_flood"), hop, SMALL.model_copy(update={"timeout_s": 120})
        )
    finally:
        watcher.done.set()
        watcher.join()

    assert result.ok, result.log[-500:]
    assert state_of(hop) == {"printed_mb": 256}
    assert len(result.log) <= LOG_TAIL_BYTES
    assert result.log.rstrip().endswith("flood done")
    # Docker's json log of 256 MB of output stayed near its 1 MB cap on the station's disk
    assert watcher.seen and max(watcher.seen) <= 3 * LIMITS.log_mb * 1024 * 1024


def test_failed_train_keeps_its_log_and_nothing_leaves(runner, attack_image, hop):
    result = run(runner, attack_image("crash"), hop)

    assert result.exit_code == 1 and not result.ok
    # a category only: the exit code is the train's choice, and could carry data
    assert result.failure(SMALL) == "the train failed (its code raised an error or exited with one)"
    assert "about to fail" in result.log and "model did not converge" in result.log
    assert list(hop.output.iterdir()) == []  # the state it wrote before failing stays put


def test_sandbox_is_removed_when_docker_refuses_to_run_it(runtime, attack_image, hop):
    import docker.errors

    runner = DockerRunner(LIMITS, runtime=runtime)

    # the volumes, the loader and the holder exist by then; Docker refuses the hop container
    # (more CPUs than the host has)
    with pytest.raises(docker.errors.APIError, match="CPUs"):
        runner.run(
            attack_image("noop"),
            input_dir=hop.input,
            data_dir=hop.data,
            output_dir=hop.output,
            env=ENV,
            resources=SMALL.model_copy(update={"cpus": 256}),
        )

    assert_removed(f"pht.runner={runner.runner_id}")
