"""A large sealed state through central: upload (researcher's initial state) and download
(the first station's input), streamed end to end.

Printed: throughput of each, next to two baselines measured in the same run: writing and
reading the same bytes to and from a local file, and a *loopback copy through the same
HTTP stack with no processing* (a uvicorn process with central's httptools protocol and a
Starlette app that discards an upload and streams a download from memory, the same httpx
client). Targets (issue 18): upload and download each within 2x the loopback copy;
central's peak RSS growth while the blob passes under 64 MB.

    python3 benchmarks/central_blobs.py [--mb 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

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


def loopback_app(size_mb: int) -> Any:
    """PUT /sink reads the body and drops it; GET /source streams ``size_mb`` MB."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def sink(request: Request) -> JSONResponse:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return JSONResponse({"size": size})

    async def source(request: Request) -> StreamingResponse:
        async def blocks() -> AsyncIterator[bytes]:
            for _ in range(size_mb):
                yield BLOCK

        return StreamingResponse(blocks(), media_type="application/octet-stream")

    return Starlette(routes=[Route("/sink", sink, methods=["PUT"]), Route("/source", source)])


def serve_loopback(port: int, size_mb: int) -> None:
    import uvicorn

    from central.server import bounded_http

    uvicorn.run(
        loopback_app(size_mb),
        host="127.0.0.1",
        port=port,
        http=bounded_http(64 * 1024),  # type: ignore[arg-type]
        log_level="warning",
    )


def loopback(size_mb: int) -> tuple[float, float]:
    """MB/s of an upload and a download through the bare HTTP stack, in another process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, __file__, "--serve-loopback", str(port), "--mb", str(size_mb)]
    server = subprocess.Popen(command)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
            for _ in range(200):
                try:
                    http.get("/nothing")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            t0 = time.perf_counter()
            http.put("/sink", content=chunks(size_mb)).raise_for_status()
            upload = size_mb / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            with http.stream("GET", "/source") as response:
                for _ in response.iter_bytes(CHUNK):
                    pass
            download = size_mb / (time.perf_counter() - t0)
    finally:
        server.terminate()
        server.wait()
    return upload, download


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--serve-loopback", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_loopback:
        serve_loopback(args.serve_loopback, args.mb)
        return
    for _ in range(args.repeat):
        once(args.mb)


def once(size_mb: int) -> None:
    size = size_mb * CHUNK
    args = argparse.Namespace(mb=size_mb)
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
    loop_up, loop_down = loopback(args.mb)

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
            f"  baseline HTTP loopback upload {loop_up:6.1f} MB/s   download {loop_down:7.1f} MB/s"
        )
        print(
            f"  time vs loopback      upload {loop_up / upload:.2f}x   "
            f"download {loop_down / download:.2f}x   (target: at most 2x)"
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
