"""Helpers of benchmarks/station_overhead.py: baselines, CPU time, the printed rows."""

from __future__ import annotations

import os
import resource
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STEPS = ("verify", "input", "data", "disclose", "pack", "seal", "receipt", "outbox")


def cpu_seconds() -> float:
    """CPU time of this process, all threads, user and system (the kernel's copying too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_baselines(source: Path, scratch: Path) -> dict[str, float]:
    """Seconds for one copy of ``source`` with and without fsync, and one sha256 of it;
    and the CPU seconds of the copy without fsync (``cache_cpu``)."""
    from trains.sealing import digest_file

    started, used = time.perf_counter(), cpu_seconds()
    shutil.copyfile(source, scratch)
    cache = time.perf_counter() - started
    cache_cpu = cpu_seconds() - used
    scratch.unlink()
    started = time.perf_counter()
    shutil.copyfile(source, scratch)
    with scratch.open("rb+") as handle:
        os.fsync(handle.fileno())
    copy = time.perf_counter() - started
    scratch.unlink()
    started = time.perf_counter()
    digest_file(source)
    sha = time.perf_counter() - started
    return {"copy": copy, "cache": cache, "sha256": sha, "cache_cpu": cache_cpu}


def write_random(path: Path, size: int) -> None:
    """A file of random bytes, written in 1 MB pieces (never the whole state in memory)."""
    with path.open("wb") as out:
        for _ in range(size // (1 << 20)):
            out.write(os.urandom(1 << 20))
        out.write(os.urandom(size % (1 << 20)))


def print_row(size: int, row: dict[str, Any]) -> None:
    steps, base = row["steps"], row["baselines"]
    total = sum(steps.values())
    cells = " ".join(f"{steps[s]:>8.3f}" for s in STEPS)
    copy = base["copy"]
    print(
        f"{size:>5}MB {cells} {total:>8.3f} | {copy:>7.3f} {base['cache']:>7.3f} "
        f"{base['sha256']:>7.3f} | {steps['input'] / copy:>5.1f}x "
        f"{(steps['pack'] + steps['seal']) / copy:>5.1f}x {total / copy:>5.1f}x | "
        f"{row['rss_growth_mb']:>4.0f}MB"
    )
    used, base_cpu = row["cpu"], max(base["cache_cpu"], 1e-6)
    cells = " ".join(f"{used[s]:>8.3f}" for s in STEPS)
    print(
        f"{'cpu s':>7} {cells} {sum(used.values()):>8.3f} | {'':>7} {base_cpu:>7.3f} {'':>7} | "
        f"{used['input'] / base_cpu:>5.1f}x {(used['pack'] + used['seal']) / base_cpu:>5.1f}x "
        f"{sum(used.values()) / base_cpu:>5.1f}x |"
    )


def measure_volume_fill(folder: Path) -> float:
    """Seconds to fill a Docker volume with ``folder`` the way a hop fills its input and
    data volumes (station/runner.py: a loader container created, never started, and
    ``put_archive`` of station.input_volume.tar_stream), volume and loader removed after.
    Needs Docker and the pht-base:latest image."""
    import uuid

    import docker
    from docker.types import Mount

    from station.input_volume import tar_stream

    client = docker.from_env()
    name = f"pht-bench-{uuid.uuid4().hex[:8]}"
    volume = client.volumes.create(name=name)
    loader = None
    try:
        started = time.perf_counter()
        loader = client.containers.create(
            "pht-base:latest",
            entrypoint=["true"],
            network_mode="none",
            mounts=[Mount("/pht/input", name, type="volume", no_copy=True)],
        )
        if not loader.put_archive("/pht/input", tar_stream(folder)):
            raise RuntimeError("Docker did not take the folder")
        return time.perf_counter() - started
    finally:
        if loader is not None:
            loader.remove(v=True)
        volume.remove(force=True)


def hop_predicate(previous: Any, me: Any, digests: tuple[str, str], offer: Any, reader: Any) -> Any:
    """The receipt predicate of hop 1 of the benchmark's route (its output's digests)."""
    from trains.receipt import HopPredicate

    now = datetime.now(UTC)
    return HopPredicate(
        train_id=offer.train_id,
        hop=1,
        round=0,
        kind="local",
        station=me.name,
        station_key=me.public.signing_fingerprint,
        manifest_digest=offer.manifest.digest,
        image_digest="sha256:" + "ab" * 32,
        input_state_digests=[i.digest for i in offer.inputs],
        output_state_digest=digests[0],
        output_commitment=digests[1],
        output_sealed_to=[reader.public.sealing_fingerprint],
        previous_receipt_digests=[previous.digest],
        started_at=now,
        finished_at=now,
        container_seconds=0.0,
    )
