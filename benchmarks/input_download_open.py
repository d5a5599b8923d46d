"""A station's input step at size: download from a real central and open, before and after
overlapping the two (issue 18).

A real central process (SQLite) holds a sealed initial state of ``--mb`` MB (one ``.npy``
file of random bytes, sealed to the station); the station's own client then takes it
three ways, alternated ``--repeat`` times so that all see the same load:

  download+open  the old path: ``download_input`` to a file (hashed while it streams),
                 then ``open_and_unpack`` of that file (decrypt + untar in one pass)
  streamed       the new path (``station.fetch``): ``open_input`` hands the bytes as they
                 arrive to ``open_and_unpack_from``; no sealed file is written
  download only  a baseline: ``download_input`` to a file, nothing opened

and a plain file copy of the sealed bytes (``shutil.copyfile``) as the disk baseline.
Printed: median seconds of each and the ratios against the copy and against the old path
of the same run, the CPU time this process spent on each (less noisy than the wall time
on a loaded machine), and the load average (the machine is shared).

    python3 benchmarks/input_download_open.py --mb 1024 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import BinaryIO, cast

import httpx
from central_common import register, signed_manifest, start_central

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from central.client import CentralClient
from trains.chunkreader import ChunkReader
from trains.keys import Identity
from trains.sealing import output_context
from trains.statepipe import open_and_unpack, open_and_unpack_from, pack_and_seal

MB = 1 << 20


def write_state(folder: Path, size_mb: int) -> None:
    block = os.urandom(MB)
    with (folder / "weights.npy").open("wb") as out:
        for i in range(size_mb):
            out.write(block[i % 251 :] + block[: i % 251])  # not one repeated MiB


def _cpu() -> float:
    """CPU seconds of this process, all threads (central's own is not counted)."""
    t = os.times()
    return t.user + t.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="pht-bench-input-"))
    server = start_central("--max-state-mb", str(args.mb + 8), "--max-train-mb", str(args.mb * 3))
    try:
        run(args, scratch, server)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path, server: object) -> None:
    researcher, station = Identity.generate("alice"), Identity.generate("hospital-a")
    (r_token,) = register(server, "researcher", [researcher])  # type: ignore[arg-type]
    (s_token,) = register(server, "station", [station])  # type: ignore[arg-type]
    url = server.url  # type: ignore[attr-defined]
    envelope = signed_manifest(researcher, [station])
    r = {"Authorization": f"Bearer {r_token}"}
    with httpx.Client(base_url=url, timeout=600) as http:
        train_id = http.post(
            "/api/v1/trains",
            json={"manifest": envelope.model_dump(mode="json"), "has_initial_state": True},
            headers=r,
        ).json()["train_id"]
        plain = scratch / "plain"
        plain.mkdir()
        write_state(plain, args.mb)
        sealed = scratch / "state.sealed"
        context = output_context(train_id, None)
        digests = pack_and_seal(
            plain, ["weights.npy"], (args.mb + 1) * MB, sealed, [station.public], context
        )
        shutil.rmtree(plain)
        with sealed.open("rb") as body:
            up = http.put(
                f"/api/v1/trains/{train_id}/initial-state",
                content=iter(partial(body.read, MB), b""),
                headers={**r, "X-Content-Sha256": digests.sealed},
            )
        up.raise_for_status()
    client = CentralClient(url, s_token, max_download_bytes=sealed.stat().st_size + MB)
    with client:
        offer = client.next_hop()
        assert offer is not None and offer.hop == 0
        limit = (args.mb + 1) * MB
        key = station.sealing

        def old() -> None:
            target = scratch / "input.sealed"
            digest = client.download_input(train_id, 0, target, 0)
            assert digest == digests.sealed
            open_and_unpack(target, scratch / "in", limit, key, context, False)
            target.unlink()

        def streamed() -> None:
            def consume(incoming: ChunkReader) -> object:
                source = cast(BinaryIO, incoming)
                return open_and_unpack_from(source, scratch / "in", limit, key, context, False)

            digest, _ = client.open_input(train_id, 0, 0, consume)
            assert digest == digests.sealed

        def download_only() -> None:
            client.download_input(train_id, 0, scratch / "input.sealed", 0)
            (scratch / "input.sealed").unlink()

        def copy() -> None:
            shutil.copyfile(sealed, scratch / "copy")
            (scratch / "copy").unlink()

        steps: dict[str, Callable[[], None]] = {
            "plain copy": copy,
            "download only": download_only,
            "download+open": old,
            "streamed": streamed,
        }
        times: dict[str, list[float]] = {name: [] for name in steps}
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        loads = [Path("/proc/loadavg").read_text().split()[0]]
        for _ in range(args.repeat):
            for name, step in steps.items():
                shutil.rmtree(scratch / "in", ignore_errors=True)
                client.heartbeat(train_id, 0)  # keep the hop's lease, as a station does
                start, used = time.perf_counter(), _cpu()
                step()
                times[name].append(time.perf_counter() - start)
                cpu[name].append(_cpu() - used)
                if name in ("download+open", "streamed"):
                    got = (scratch / "in" / "weights.npy").stat().st_size
                    assert got == args.mb * MB, "the state did not arrive whole"
            loads.append(Path("/proc/loadavg").read_text().split()[0])
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"input of {args.mb} MB from a real central, {args.repeat} rounds alternated")
    print(f"  load average (1 min) per round: {' '.join(loads)}")
    for name, median in medians.items():
        each = " ".join(f"{v:.2f}" for v in times[name])
        ratio = median / medians["plain copy"]
        print(
            f"  {name:14} median {median:6.2f} s   ({each})   {ratio:5.2f}x the copy   "
            f"CPU of this process {statistics.median(cpu[name]):5.2f} s"
        )
    gain = medians["streamed"] / medians["download+open"]
    print(f"  streamed / download+open (same run): {gain:.2f}")


if __name__ == "__main__":
    main()
