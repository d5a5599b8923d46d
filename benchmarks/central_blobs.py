"""A large sealed state through central: upload (researcher's initial state) and download
(the first station's input), streamed end to end.

Printed: throughput of each, next to a baseline measured in the same run — writing and
reading the same bytes to and from a local file — and central's peak RSS growth while
the blob passes (target: under 64 MB, i.e. nothing is held whole in memory).

    python3 benchmarks/central_blobs.py [--mb 512]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from central_common import (  # run as: python3 benchmarks/central_blobs.py
    register,
    rss_mb,
    signed_manifest,
    start_central,
)

from trains.keys import Identity

CHUNK = 1 << 20
BLOCK = os.urandom(CHUNK)  # incompressible, like a sealed state


def chunks(size_mb: int) -> Iterator[bytes]:
    for _ in range(size_mb):
        yield BLOCK


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=512)
    args = parser.parse_args()
    size = args.mb * CHUNK
    scratch = Path(tempfile.mkdtemp(prefix="pht-bench-blob-"))
    # baseline: the same bytes to and from a local file
    t0 = time.perf_counter()
    digest = hashlib.sha256()
    with (scratch / "baseline").open("wb") as out:
        for block in chunks(args.mb):
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    disk_write = size / (time.perf_counter() - t0) / CHUNK
    t0 = time.perf_counter()
    with (scratch / "baseline").open("rb") as source:
        while source.read(CHUNK):
            pass
    disk_read = size / (time.perf_counter() - t0) / CHUNK
    (scratch / "baseline").unlink()
    expected = "sha256:" + digest.hexdigest()

    server = start_central("--max-state-mb", str(args.mb + 1), "--max-train-mb", str(args.mb * 3))
    assert server.process is not None
    pid = server.process.pid
    try:
        researcher, station = Identity.generate("alice"), Identity.generate("hospital-a")
        (r_token,) = register(server, "researcher", [researcher])
        (s_token,) = register(server, "station", [station])
        envelope = signed_manifest(researcher, [station])
        r = {"Authorization": f"Bearer {r_token}"}
        s = {"Authorization": f"Bearer {s_token}"}
        with httpx.Client(base_url=server.url, timeout=600) as http:
            train_id = http.post(
                "/api/v1/trains",
                json={"manifest": envelope.model_dump(mode="json"), "has_initial_state": True},
                headers=r,
            ).json()["train_id"]
            rss_before = rss_mb(pid)
            watch = PeakRss(pid)
            watch.start()
            t0 = time.perf_counter()
            up = http.put(
                f"/api/v1/trains/{train_id}/initial-state",
                content=chunks(args.mb),
                headers={**r, "X-Content-Sha256": expected},
            )
            upload = size / (time.perf_counter() - t0) / CHUNK
            up.raise_for_status()
            http.post("/api/v1/hops/next", headers=s).raise_for_status()
            t0 = time.perf_counter()
            got = hashlib.sha256()
            with http.stream(
                "GET", f"/api/v1/trains/{train_id}/hops/0/inputs/0", headers=s
            ) as response:
                response.raise_for_status()
                for block in response.iter_bytes(CHUNK):
                    got.update(block)
            download = size / (time.perf_counter() - t0) / CHUNK
            watch.done.set()
            watch.join()
        assert "sha256:" + got.hexdigest() == expected, "the downloaded blob differs"
        print(f"central blobs: one {args.mb} MB sealed state")
        print(f"  baseline local file   write {disk_write:7.1f} MB/s   read {disk_read:7.1f} MB/s")
        print(f"  through central       upload {upload:6.1f} MB/s   download {download:7.1f} MB/s")
        print(
            f"  ratio vs local file   upload {upload / disk_write:.2f}x   "
            f"download {download / disk_read:.2f}x"
        )
        print(
            f"  central RSS           before {rss_before:.1f} MB, peak {watch.peak:.1f} MB, "
            f"growth {watch.peak - rss_before:.1f} MB (target < 64 MB)"
        )
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
