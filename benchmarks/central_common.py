"""Shared set-up for the central benchmarks: a real central process, identities registered
straight into its database, signed manifests, and CPU/RSS readings from /proc."""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

import httpx

from central.db import make_engine, make_sessions
from central.service import Service
from central.testing_server import CentralServer
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE, Image, Manifest, Route, Stop, expiry_from_now
from trains.signing import Envelope, sign

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return (
        f"p50 {percentile(ms, 50):7.2f} ms  p99 {percentile(ms, 99):7.2f} ms  "
        f"mean {statistics.fmean(ms):7.2f} ms  (n={len(ms)})"
    )


def start_central(*extra: str, database_url: str = "") -> CentralServer:
    data = Path(tempfile.mkdtemp(prefix="pht-bench-central-"))
    return CentralServer(data, database_url, 0, *extra).start()


def register(server: CentralServer, role: str, identities: list[Identity]) -> list[str]:
    url = server.database_url or f"sqlite:///{server.data_dir / 'central.db'}"
    service = Service(make_sessions(make_engine(url)))
    return [service.register(role, i.public) for i in identities]


def signed_manifest(researcher: Identity, stations: list[Identity], rounds: int = 1) -> Envelope:
    created, expires = expiry_from_now(1)
    manifest = Manifest(
        name="bench",
        version="0.1.0",
        researcher=researcher.public,
        image=Image(repository="127.0.0.1:5000/pht/bench", digest="sha256:" + "ab" * 32),
        route=Route(rounds=rounds, stops=[Stop(station=s.public) for s in stations]),
        datasets=[],
        outputs=["state.json"],
        created_at=created,
        expires_at=expires,
    )
    return sign(manifest, MANIFEST_TYPE, researcher.signing)


def healthz_round_trips(
    base: str, count: int = 300, path: str = "/healthz", token: str | None = None
) -> list[float]:
    """Baseline: a raw round trip (or, with a token, an authenticated one such as /me)."""
    import time

    times = []
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers) as http:
        for _ in range(count):
            started = time.perf_counter()
            http.get(path)
            times.append(time.perf_counter() - started)
    return times
