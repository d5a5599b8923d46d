"""``pht-central serve`` as a real child process on 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from trains.errors import PhtError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CentralServer:
    """One central process; ``start``/``kill``/``stop`` it, read its log from ``log``."""

    def __init__(self, data_dir: Path, database_url: str = "", port: int = 0, *extra: str) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = port or free_port()
        self.extra = list(extra)
        self.log = data_dir / f"central-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> CentralServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "central.cli", "serve", "--data-dir", str(self.data_dir)]
        args += ["--port", str(self.port), *self.extra]
        if self.database_url:
            args += ["--database-url", self.database_url]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PhtError(f"central exited with {self.process.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise PhtError(f"central did not come up within {timeout_s}s; see {self.log}")

    def kill(self) -> None:
        """``kill -9``: no shutdown handlers, no flush."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> CentralServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
