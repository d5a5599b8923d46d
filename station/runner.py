"""The Docker adapter: pull by digest, run one hop in a locked-down container, clean up.

Every control of the sandbox is in ``_sandbox`` below; docs/sandbox.md explains each one and
names the test in tests/test_sandbox_attacks.py that attacks it. Every container of a hop
(the train's and the holder of its output volume) is created here, under those controls.

The output folder is a size-capped tmpfs volume, kept mounted by a *holder* container until
it has been copied out: ``output_volume.py`` holds its options and the bounded copy.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Mount, Ulimit

from station.output_volume import (
    MIB,
    SandboxError,
    archive_bound,
    copy_output,
    output_mount,
    volume_options,
)
from trains.errors import ImageError, PhtError
from trains.manifest import Image, Resources

CONTAINER_UID = 10001
CONTAINER_USER = f"{CONTAINER_UID}:{CONTAINER_UID}"
LOG_TAIL_BYTES = 20_000
# gVisor's own threads count against a container's PID limit (about 40 at start, measured)
RUNSC_PIDS = 64
# how the Docker client says that waiting for the container took longer than asked
_HTTP_TIMEOUTS = (requests.exceptions.Timeout, requests.exceptions.ConnectionError)


class DockerUnavailable(PhtError):
    """Docker Engine cannot be reached."""


@dataclass(frozen=True)
class SandboxLimits:
    """Station-wide limits of every run, on top of what the manifest's resources ask for."""

    pids: int = 256  # processes and threads: a fork bomb stops here
    tmp_mb: int = 64  # the writable /tmp (tmpfs, noexec)
    shm_mb: int = 16  # /dev/shm (tmpfs, noexec)
    output_files: int = 4096  # inodes of the output tmpfs
    open_files: int = 1024  # RLIMIT_NOFILE
    log_mb: int = 1  # what Docker keeps of the container's stdout/stderr


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    seconds: float
    timed_out: bool
    log: str  # stays at the station
    oom_killed: bool = False
    output_too_large: bool = False
    output_bytes: int = 0  # what the train wrote to /pht/output
    run_id: str = ""  # names the hop's containers and volume: pht-{hop,hold,output}-<run_id>

    @property
    def ok(self) -> bool:
        return self.failure(None) is None

    def failure(self, resources: Resources | None) -> str | None:
        """What went wrong, in words for the researcher; None when the run succeeded."""
        if self.timed_out:
            limit = f" of {resources.timeout_s}s" if resources else ""
            return f"the train exceeded its timeout{limit} and was killed"
        if self.oom_killed:
            limit = f" of {resources.memory_mb} MB" if resources else ""
            return (
                f"the train ran out of its memory{limit} and was killed; ask for more "
                "memory_mb in train.toml (files in /pht/output count against it)"
            )
        if self.output_too_large:
            limit = f" of {resources.max_output_mb} MB" if resources else ""
            return f"the train wrote more than its max_output_mb{limit}; nothing was kept"
        if self.exit_code != 0:
            return f"the train exited with code {self.exit_code}"
        return None


class DockerRunner:
    def __init__(self, limits: SandboxLimits | None = None, runtime: str = "runc") -> None:
        self.limits = limits or SandboxLimits()
        self.runtime = runtime  # the OCI runtime of every container of a hop
        self.runner_id = uuid.uuid4().hex[:12]  # label of everything this runner creates
        try:
            self.client = docker.from_env(timeout=120)
            self.client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerUnavailable(
                f"cannot reach Docker Engine ({exc}); start dockerd (scripts/start-dockerd.sh)"
            ) from None
        known = sorted(self.client.info().get("Runtimes") or {})
        if runtime not in known:  # a station's setting, not the train's fault: hops wait
            raise DockerUnavailable(
                f"Docker Engine has no runtime {runtime!r} (it has {', '.join(known)}); "
                "register it (scripts/register-runsc.sh for runsc) or change station.toml's runtime"
            )

    def pull(self, image: Image) -> str:
        """Pull ``repository@digest``; Docker checks the content against the digest."""
        try:
            pulled = self.client.images.pull(image.reference)
        except docker.errors.APIError as exc:
            raise ImageError(f"cannot pull {image.reference}: {exc.explanation}") from None
        digests = pulled.attrs.get("RepoDigests", [])
        if image.reference not in digests:
            raise ImageError(f"pulled image does not carry digest {image.reference}: {digests}")
        return str(pulled.id)

    def run(
        self,
        image_id: str,
        *,
        input_dir: Path,
        data_dir: Path,
        output_dir: Path,
        env: dict[str, str],
        resources: Resources,
    ) -> RunResult:
        """Run one hop locked down; copy ``/pht/output`` to ``output_dir`` if it succeeded.

        The containers and the output volume are removed afterwards, also on timeout, kill
        or exception. Nothing of the output is copied when the run failed. Docker's own
        errors (``docker.errors.DockerException``) pass through unchanged, so the caller can
        tell a refused run (4xx) from a Docker Engine in trouble (5xx, connection).
        """
        run_id = uuid.uuid4().hex[:12]
        made: list[Any] = []  # what this run created, removed in reverse order
        try:
            result, holder = self._run(run_id, made, image_id, input_dir, data_dir, env, resources)
            written, too_large = copy_output(
                holder,
                output_dir,
                resources.max_output_mb * MIB,
                result.ok,
                archive_bound(resources.max_output_mb, self.limits.output_files),
            )
        except BaseException:
            self._remove(made, quiet=True)  # never mask what went wrong
            raise
        self._remove(made)
        return replace(result, output_bytes=written, output_too_large=too_large)

    def _run(
        self,
        run_id: str,
        made: list[Any],
        image_id: str,
        input_dir: Path,
        data_dir: Path,
        env: dict[str, str],
        resources: Resources,
    ) -> tuple[RunResult, Any]:
        """Create the output volume, the holder and the hop container; run to the end."""
        labels = {"pht": "hop", "pht.runner": self.runner_id, "pht.run": run_id}
        tmpfs = volume_options(resources.max_output_mb, self.limits.output_files, CONTAINER_UID)
        volume = self.client.volumes.create(
            name=f"pht-output-{run_id}",
            driver="local",
            driver_opts={"type": "tmpfs", "device": "tmpfs", "o": tmpfs},
            labels=labels,
        )
        made.append(volume)
        holder = self.client.containers.create(
            image_id,
            name=f"pht-hold-{run_id}",
            entrypoint=["sleep", "infinity"],
            mounts=[output_mount(volume.name, read_only=True)],
            labels=labels,
            **self._sandbox(memory_mb=16, cpus=0.1, pids=8),
        )
        made.append(holder)
        holder.start()
        container = self.client.containers.create(
            image_id,
            name=f"pht-hop-{run_id}",
            environment=env,
            mounts=[
                # type=bind refuses a missing source instead of creating it on the host
                Mount("/pht/input", str(input_dir), type="bind", read_only=True),
                Mount("/pht/data", str(data_dir), type="bind", read_only=True),
                output_mount(volume.name, read_only=False),
            ],
            labels=labels,
            **self._sandbox(resources.memory_mb, resources.cpus, self.limits.pids),
        )
        made.append(container)
        started = time.monotonic()
        container.start()
        exit_code, timed_out = self._wait(container, resources.timeout_s)
        seconds = time.monotonic() - started
        container.reload()
        result = RunResult(
            exit_code=exit_code,
            seconds=seconds,
            timed_out=timed_out,
            log=self._log(container),
            oom_killed=bool(container.attrs["State"].get("OOMKilled", False)),
            run_id=run_id,
        )
        return result, holder

    def _sandbox(self, memory_mb: int, cpus: float, pids: int) -> dict[str, Any]:
        """The host configuration of every container of a hop: see docs/sandbox.md."""
        lim = self.limits
        return {
            "runtime": self.runtime,
            "user": CONTAINER_USER,
            "network_mode": "none",
            "read_only": True,
            "tmpfs": {"/tmp": f"size={lim.tmp_mb}m,mode=1777,noexec,nosuid,nodev"},
            "shm_size": f"{lim.shm_mb}m",
            "cap_drop": ["ALL"],
            # no seccomp= option: Docker's default seccomp profile stays in force
            "security_opt": ["no-new-privileges"],
            "privileged": False,
            "devices": [],
            "mem_limit": f"{memory_mb}m",
            "memswap_limit": f"{memory_mb}m",  # equal: no swap
            "oom_kill_disable": False,
            "nano_cpus": int(cpus * 1e9),
            "pids_limit": pids + (RUNSC_PIDS if self.runtime == "runsc" else 0),
            "ulimits": [
                Ulimit(name="nofile", soft=lim.open_files, hard=lim.open_files),
                Ulimit(name="core", soft=0, hard=0),  # no core dump handed to the host
            ],
            "init": True,  # reaps zombies, forwards the kill
            "ipc_mode": "private",
            "cgroupns": "private",
            "hostname": "pht-train",
            "log_config": LogConfig(
                type="json-file", config={"max-size": f"{lim.log_mb}m", "max-file": "1"}
            ),
        }

    def _wait(self, container: Any, timeout_s: int) -> tuple[int, bool]:
        """Exit code and whether the wall-clock timeout killed the container."""
        try:
            return int(container.wait(timeout=timeout_s)["StatusCode"]), False
        except _HTTP_TIMEOUTS:
            pass
        with contextlib.suppress(docker.errors.APIError):  # it may have just ended itself
            container.kill()
        with contextlib.suppress(*_HTTP_TIMEOUTS):  # removal with force follows anyway
            container.wait(timeout=30)
        return -1, True

    def _log(self, container: Any) -> str:
        raw = container.logs(stdout=True, stderr=True, tail=400)
        return bytes(raw)[-LOG_TAIL_BYTES:].decode(errors="replace")

    def _remove(self, made: list[Any], quiet: bool = False) -> None:
        problems = []
        for thing in reversed(made):
            try:
                thing.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                problems.append(f"{getattr(thing, 'name', thing)}: {exc.explanation}")
        if problems and not quiet:
            raise SandboxError(
                "could not remove a hop's sandbox (" + "; ".join(problems) + "); remove it "
                "by hand: docker rm -f / docker volume rm on the names given"
            )
