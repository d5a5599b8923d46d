"""The Docker adapter: pull by digest, run one hop in a locked-down container, clean up.

Every control of the sandbox is in ``_sandbox`` below; docs/sandbox.md explains each one and
names the test in tests/test_sandbox_attacks.py that attacks it. Every container of a hop
(the train's, the holder of its output volume and the loader of its input) is created here,
under those controls, with the station's settings in place of the image's
(``image_override.py``). Pulls are bounded in time and size (``pull.py``).

The output folder is a size-capped tmpfs volume, kept mounted by a *holder* container until
it has been copied out: ``output_volume.py`` holds its options and the bounded copy. The
input and data are copied into volumes with random names (``input_volume.py``), so the
container sees no path of the station's host. Where this process provably sees Docker's
volume folders (``volume_dir.probe``, once per runner) the volumes are filled and read as
folders at disk speed (``volume_dir.py``); else through Docker's archive API
(``hop_volumes.py`` holds both).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Mount, Ulimit

from station import hop_volumes, volume_dir
from station import pull as pulling
from station.image_override import RUNTIME, overrides
from station.output_volume import (
    SandboxError,
    output_mount,
    volume_options,
)
from station.run_result import RunResult as RunResult  # where callers have imported it
from trains.errors import ImageError, PhtError
from trains.manifest import Image, Resources

log = logging.getLogger("pht.station")
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


class DockerRunner:
    def __init__(self, limits: SandboxLimits | None = None, runtime: str = "runc") -> None:
        self.limits = limits or SandboxLimits()
        self.runtime = runtime  # the OCI runtime of every container of a hop
        self.runner_id = uuid.uuid4().hex[:12]  # label of everything this runner creates
        # Docker API calls of one hop that overlap (the holder's start); reused across hops
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="pht-runner")
        # Docker's volumes folder as this process sees it, once proven (volume_dir.probe);
        # None: not reachable, the archive path is used; unset until the first hop
        self._volumes_root: Path | None = None
        self._probed = False
        self._removing: Future[None] | None = None  # a deferred cleanup still under way
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

    def pull(self, image: Image, limits: pulling.PullLimits | None = None) -> str:
        """Pull ``repository@digest`` within the station's deadlines and size cap; Docker
        checks the content against the digest. An image that declares volumes is refused."""
        return pulling.pull(self.client, image, limits or pulling.PullLimits())

    def run(
        self,
        image_id: str,
        *,
        input_dir: Path,
        data_dir: Path,
        output_dir: Path,
        env: dict[str, str],
        resources: Resources,
        defer_cleanup: bool = False,
    ) -> RunResult:
        """Run one hop locked down; copy ``/pht/output`` to ``output_dir`` if it succeeded.

        The containers and the output volume are removed afterwards, also on timeout, kill
        or exception. Nothing of the output is copied when the run failed. Docker's own
        errors (``docker.errors.DockerException``) pass through unchanged, so the caller can
        tell a refused run (4xx) from a Docker Engine in trouble (5xx, connection).

        ``defer_cleanup``: after a run that got this far, the removal goes on in the
        background (the output is already copied out) while the caller checks and seals;
        :meth:`settle` waits for it and raises what it raised. The next run waits for it too.
        """
        self._settle_quietly()
        began = time.monotonic()
        run_id = uuid.uuid4().hex[:12]
        made: list[Any] = []  # what this run created, removed in reverse order
        try:
            attrs = self.client.images.get(image_id).attrs
        except docker.errors.ImageNotFound:
            raise ImageError(f"image {image_id} is not on this station") from None
        # refused before anything is created: an image that declares volumes
        settings = overrides(pulling.image_config(attrs, image_id), env)
        try:
            result, holder, folder = self._run(
                run_id, made, image_id, input_dir, data_dir, settings, resources
            )
            exited = time.monotonic()
            written, too_large = hop_volumes.copy_out(
                holder,
                folder,
                output_dir,
                resources.max_output_mb,
                self.limits.output_files,
                result.ok,
            )
        except BaseException:
            self._remove(made, quiet=True)  # never mask what went wrong
            raise
        copied = time.monotonic()
        if defer_cleanup:
            self._removing = self._pool.submit(self._remove, made)
        else:
            self._remove(made)
        return replace(
            result,
            output_bytes=written,
            output_too_large=too_large,
            sandbox_s=exited - began - result.seconds,
            copy_out_s=copied - exited,
            cleanup_s=time.monotonic() - copied,
        )

    def settle(self) -> float:
        """Wait for the removal a deferred cleanup left running; the seconds waited.

        Raises :class:`SandboxError` naming what could not be removed."""
        removing, self._removing = self._removing, None
        if removing is None:
            return 0.0
        began = time.monotonic()
        removing.result()
        return time.monotonic() - began

    def _settle_quietly(self) -> None:
        """The previous hop's removal, finished before the next hop starts; it already
        ended its own hop, so a failure here is the admin's to see, not this hop's."""
        try:
            self.settle()
        except SandboxError as exc:
            log.warning("%s", exc)

    def _run(
        self,
        run_id: str,
        made: list[Any],
        image_id: str,
        input_dir: Path,
        data_dir: Path,
        settings: dict[str, Any],
        resources: Resources,
    ) -> tuple[RunResult, Any, Path | None]:
        """Create the volumes, the holder and the hop container; run to the end.

        Returns the result, the holder and the output volume's host folder (None when the
        direct path is not proven for this runner)."""
        labels = {"pht": "hop", "pht.runner": self.runner_id, "pht.run": run_id}
        tmpfs = volume_options(resources.max_output_mb, self.limits.output_files, CONTAINER_UID)
        # the three volumes are created at once; the first hop also proves (or disproves)
        # the direct path meanwhile
        creating = hop_volumes.create(self.client, self._pool, run_id, labels, tmpfs)
        # every container of the hop but the train's: the holder, the loader, the probe
        create = {"labels": labels, **settings, **self._sandbox(memory_mb=16, cpus=0.1, pids=8)}
        try:
            if not self._probed:
                self._probe(image_id, create)
        finally:  # the volumes are recorded for removal whatever the probe did
            volumes = hop_volumes.joined(creating, made)
        output, *inputs = volumes
        holder = self.client.containers.create(
            image_id,
            name=f"pht-hold-{run_id}",
            entrypoint=["sleep", "infinity"],
            mounts=[output_mount(output.name, read_only=True)],
            **create,
        )
        made.append(holder)
        # the holder starts while the inputs are copied in and the train's container is
        # created; it is running (joined below) before the train's container starts, so the
        # tmpfs outlives the train whenever the train ends
        holding = self._pool.submit(holder.start)
        try:
            folders = {"/pht/input": input_dir, "/pht/data": data_dir}
            hop_volumes.fill(
                self.client, self._volumes_root, (run_id, image_id, create), made, inputs, folders
            )
            container = self.client.containers.create(
                image_id,
                name=f"pht-hop-{run_id}",
                entrypoint=RUNTIME,
                mounts=[
                    *(
                        Mount(t, v.name, type="volume", read_only=True, no_copy=True)
                        for t, v in zip(("/pht/input", "/pht/data"), inputs, strict=True)
                    ),
                    output_mount(output.name, read_only=False),
                ],
                labels=labels,
                **settings,
                **self._sandbox(resources.memory_mb, resources.cpus, self.limits.pids),
            )
            made.append(container)
        except BaseException:
            with contextlib.suppress(Exception):  # what went wrong first is what is raised
                holding.result()
            raise
        holding.result()  # raises what starting the holder raised
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
        return result, holder, hop_volumes.folder(output, self._volumes_root)

    def _probe(self, image_id: str, create: dict[str, Any]) -> None:
        """Prove once per runner whether Docker's volume folders are this process's. Docker
        failing the probe leaves this hop on the archive path; the next hop tries again."""
        try:
            self._volumes_root = volume_dir.probe(self.client, image_id, create)
        except docker.errors.APIError as exc:
            log.warning("direct volume path not proven this hop (%s)", type(exc).__name__)
            return
        self._probed = True
        log.info("direct volume path: %s", "on" if self._volumes_root else "off (archive API)")

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
                # v=True: a container's anonymous volumes go with it
                thing.remove(force=True, **({"v": True} if hasattr(thing, "start") else {}))
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                problems.append(f"{getattr(thing, 'name', thing)}: {exc.explanation}")
        if problems and not quiet:
            raise SandboxError(
                "could not remove a hop's sandbox (" + "; ".join(problems) + "); remove it "
                "by hand: docker rm -f / docker volume rm on the names given"
            )
