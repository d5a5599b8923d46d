"""The Docker adapter: pull by digest, run one hop in a locked-down container, clean up."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from trains.errors import ImageError, PhtError
from trains.manifest import Image, Resources

CONTAINER_USER = "10001:10001"
LOG_TAIL_BYTES = 20_000


class DockerUnavailable(PhtError):
    """Docker Engine cannot be reached."""


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    seconds: float
    timed_out: bool
    log: str  # stays at the station


class DockerRunner:
    def __init__(self) -> None:
        try:
            self.client = docker.from_env(timeout=120)
            self.client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerUnavailable(
                f"cannot reach Docker Engine ({exc}); start dockerd (scripts/start-dockerd.sh)"
            ) from None

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
        """Run one hop with no network, read-only everything but ``/pht/output``."""
        started = time.monotonic()
        container = self.client.containers.create(
            image_id,
            environment=env,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": "size=64m,mode=1777"},
            user=CONTAINER_USER,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=f"{resources.memory_mb}m",
            memswap_limit=f"{resources.memory_mb}m",
            nano_cpus=int(resources.cpus * 1e9),
            pids_limit=256,
            volumes={
                str(input_dir): {"bind": "/pht/input", "mode": "ro"},
                str(data_dir): {"bind": "/pht/data", "mode": "ro"},
                str(output_dir): {"bind": "/pht/output", "mode": "rw"},
            },
            labels={"pht": "hop"},
        )
        timed_out = False
        try:
            container.start()
            try:
                exit_code = int(container.wait(timeout=resources.timeout_s)["StatusCode"])
            except (requests.exceptions.Timeout, requests.exceptions.ConnectionError):
                timed_out = True
                container.kill()
                exit_code = -1
            seconds = time.monotonic() - started
            log = container.logs(stdout=True, stderr=True, tail=200).decode(errors="replace")
        finally:
            container.remove(force=True)
        return RunResult(exit_code, seconds, timed_out, log[-LOG_TAIL_BYTES:])
