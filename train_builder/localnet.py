"""A whole pht network on one machine, as real processes: an OCI registry, central, and
station daemons each with its own keys, config and data. Used by the demo and the
end-to-end tests; every server binds to 127.0.0.1.

The network has its own root key (``network-root/``): every station added is enrolled by
it, its statement stored at central, and pins the root in its ``station.toml``;
researchers pin it through :attr:`LocalNet.network_root` (profile ``network_root``, or
``trust()`` for the Python API).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from train_builder.trust import KnownStations, StationTrust
from trains.enrolment import NetworkRoot, enrol
from trains.errors import PhtError
from trains.keys import Identity

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 120.0) -> None:
    """Wait until ``url`` answers. A healthy server answers in seconds; the generous
    limit only keeps a loaded machine (a CI box running Docker tests) from failing here."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise PhtError(f"{url} did not come up within {timeout_s}s")


def _bin(name: str) -> list[str]:
    """Console scripts as modules of this interpreter, so no PATH set-up is needed."""
    module = {
        "pht-central": "central.cli",
        "pht-station": "station.cli",
        "pht-train": "train_builder.cli",
        "pht-network": "trains.network_cli",
    }
    return [sys.executable, "-m", module[name]]


@dataclass
class Station:
    name: str
    directory: Path
    identity: Identity
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.directory / "station.toml"

    @property
    def log(self) -> Path:
        return self.directory / "station.log"


@dataclass
class LocalNet:
    root: Path
    registry_port: int = 0
    central_port: int = 0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stations: dict[str, Station] = field(default_factory=dict)

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def central_url(self) -> str:
        return f"http://127.0.0.1:{self.central_port}"

    @property
    def central_dir(self) -> Path:
        return self.root / "central"

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        handle = log.open("ab")
        process = subprocess.Popen(
            args, stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        self.processes.append(process)
        return process

    def start_registry(self, storage: Path | None = None) -> None:
        if shutil.which("docker-registry") is None:
            raise PhtError("docker-registry is not installed; run scripts/setup.sh")
        self.registry_port = self.registry_port or free_port()
        storage = storage or self.root / "registry"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.root / "registry.yml"
        config.write_text(REGISTRY_CONFIG.format(root=storage, port=self.registry_port))
        self._spawn(["docker-registry", "serve", str(config)], self.root / "registry.log")
        wait_http(f"http://{self.registry}/v2/")

    def start_central(self) -> None:
        self.central_port = self.central_port or free_port()
        self.central_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            [
                *_bin("pht-central"),
                "serve",
                "--data-dir",
                str(self.central_dir),
                "--port",
                str(self.central_port),
            ],
            self.root / "central.log",
        )
        wait_http(f"{self.central_url}/healthz")

    @property
    def root_dir(self) -> Path:
        return self.root / "network-root"

    def network(self) -> NetworkRoot:
        """The network's root key (made on first use); it enrols every station added."""
        if not (self.root_dir / "root.key").exists():
            NetworkRoot.generate("localnet").save(self.root_dir)
        return NetworkRoot.load(self.root_dir)

    @property
    def network_root(self) -> str:
        """The root's fingerprint: what researchers and stations pin."""
        return self.network().public.signing_fingerprint

    def trust(self) -> StationTrust:
        """A researcher's trust that pins this network's root (for ``Researcher(trust=)``)."""
        return StationTrust(
            self.network_root,
            KnownStations(self.root / "known_stations.json"),
            self.root / "network-revocations.json",
        )

    def register(self, role: str, identity: Identity, enrolment: Path | None = None) -> str:
        """Register through the operator's CLI, as an operator would; return the token."""
        public = self.root / f"{role}-{identity.name}.public.json"
        public.write_text(identity.public.model_dump_json())
        extra = [] if enrolment is None else ["--enrolment", str(enrolment)]
        done = subprocess.run(
            [
                *_bin("pht-central"),
                "admin",
                f"add-{role}",
                "--data-dir",
                str(self.central_dir),
                str(public),
                *extra,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise PhtError(f"registering {role} {identity.name} failed: {done.stderr.strip()}")
        return done.stdout.strip().splitlines()[-1]

    def add_researcher(
        self, name: str, keys_dir: Path | None = None
    ) -> tuple[Identity, Path, Path]:
        """Register a researcher (new keys, or the ones already in ``keys_dir``); return
        (identity, keys dir, token file)."""
        directory = self.root / "researchers" / name
        directory.mkdir(parents=True, exist_ok=True)
        keys = keys_dir or directory / "keys"
        if (keys / "signing.key").exists():
            identity = Identity.load(keys)
        else:
            identity = Identity.generate(name)
            identity.save(keys)
        token = directory / "token"
        token.write_text(self.register("researcher", identity) + "\n")
        token.chmod(0o600)
        return identity, keys, token

    def add_station(
        self,
        name: str,
        datasets: dict[str, Path],
        trusted: list[Identity],
        poll_s: float = 0.2,
        enrolled: bool = True,
        pin_root: bool = True,
    ) -> Station:
        """A station with new keys, enrolled by the network root for 30 days (unless not
        ``enrolled``), pinning that root in its policy (unless not ``pin_root``)."""
        directory = self.root / "stations" / name
        identity = Identity.generate(name)
        identity.save(directory / "keys")
        statement = None
        if enrolled:
            statement = directory / "enrolment.json"
            statement.write_text(enrol(self.network(), identity.public, 30).model_dump_json())
        (directory / "token").write_text(self.register("station", identity, statement) + "\n")
        (directory / "token").chmod(0o600)
        lines = [
            "[station]",
            f'name = "{name}"',
            f'central_url = "{self.central_url}"',
            f"poll_interval_s = {poll_s}",
            "",
        ]
        for dataset, path in datasets.items():
            lines += [f"[datasets.{dataset}]", 'type = "csv"', f'path = "{path}"', ""]
        signers = ", ".join(f'"{r.public.signing_fingerprint}"' for r in trusted)
        lines += [
            "[policy]",
            f"trusted_signers = [{signers}]",
            f'allowed_registries = ["{self.registry}"]',
            *([f'network_root = "{self.network_root}"'] if pin_root else []),
            "",
        ]
        station = Station(name, directory, identity)
        station.config.write_text("\n".join(lines))
        self.stations[name] = station
        return station

    def start_station(self, name: str) -> None:
        station = self.stations[name]
        station.process = self._spawn(
            [*_bin("pht-station"), "run", "--config", str(station.config)], station.log
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def __enter__(self) -> LocalNet:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
