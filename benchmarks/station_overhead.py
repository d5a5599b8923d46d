"""Station overhead per hop, without the container run: what a hop costs the station itself.

For each state size, in a fresh subprocess (so peak RSS is that size's own), one hop 1 of a
two-stop route at station B, with real keys and real files, step by step as station/hop.py
runs them:

  verify    verify_offer: manifest signature, policy, route, previous receipt
  input     the downloaded input (its digest was taken while it downloaded): its header's
            recipients checked, opened (HPKE + age STREAM) and unpacked in one pass, with
            the archive's digest for the commitment check
  data      place a dataset of the same size in the work folder (read-only source: a link)
  disclose  disclosure control on the output folder
  pack      ``--old`` only: the output packed into an archive file (now 0: one pipe)
  seal      the output tarred and sealed to the next reader in one pipe, both digests on
            the way (statepipe.pack_and_seal, as station/outcome.control_and_seal);
            ``--old``: the archive file sealed, then a digest pass over each file
  receipt   build and sign the hop receipt
  outbox    the sealed output fsynced into the outbox (``--old``: after a digest pass over it)

``--old`` runs the same steps the way the station ran them before issue 18 (a digest pass
over the sealed input, open to a file, a digest pass over the archive, unpack; a copy of
the dataset; seal, then a digest pass over the sealed file and one over the archive):
run it against the old code (PYTHONPATH) for a before/after table.

Baselines, measured in the same process on the same bytes just before the hop: ``copy``
(cp: shutil.copyfile of the state, then fsync, like ``cp && sync``), ``cache`` (the same
copy without fsync: page cache only) and ``sha256`` once over the state. Targets (issue
18): input and pack+seal each within 2x a copy; the whole hop within 4x.

    python3 benchmarks/station_overhead.py                 # 1 MB and 100 MB
    python3 benchmarks/station_overhead.py --sizes 1 100 1024 [--old] [--repeat 3]
    python3 benchmarks/station_overhead.py --sizes 1024 --volume   # + the input volume fill

``--volume`` also times what the runner does with the opened input and the output (not
steps of the table: they run inside ``sandbox`` and ``copy_out``), both ways, in the same
run, against the same copy baseline: filling a Docker volume with the input through a
loader container (the archive path, state_common.measure_volume_fill) and directly into
the volume's folder (station/volume_dir.fill); copying a held output tmpfs volume holding
the state out through ``get_archive`` (output_volume.copy_output) and directly
(volume_dir.copy_tree). Needs root on the Docker host for the direct path.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from state_common import (  # run as: python3 benchmarks/station_overhead.py
    STEPS,
    cpu_seconds,
    hop_predicate,
    measure_baselines,
    print_row,
    write_random,
)


def one(size_mb: int, old: bool, volume: bool = False) -> dict[str, Any]:
    from central.messages import HopInput, HopOffer
    from station.config import CsvSource, Policy, StationConfig, StationInfo
    from station.datasources import materialise
    from station.disclosure import check_output
    from station.queue import HopQueue, HopRecord, HopState
    from station.verify import check_input_digest, verify_offer
    from trains import state_codec
    from trains.keys import Identity
    from trains.manifest import (
        MANIFEST_TYPE,
        Image,
        Manifest,
        Resources,
        Route,
        Stop,
        expiry_from_now,
    )
    from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt
    from trains.sealing import digest_file, open_file, output_context, seal_file
    from trains.signing import sign

    if not old:
        from trains.sealing import check_sealed_to
        from trains.statepipe import open_and_unpack, pack_and_seal

    size = size_mb * 1024 * 1024
    alice, a, b = (
        Identity.generate("alice"),
        Identity.generate("a"),
        Identity.generate("b"),
    )
    created, expires = expiry_from_now(1)
    manifest = Manifest(
        name="bench",
        version="1",
        researcher=alice.public,
        image=Image(repository="127.0.0.1:5000/pht/bench", digest="sha256:" + "ab" * 32),
        route=Route(stops=[Stop(station=a.public), Stop(station=b.public)]),
        datasets=["cohort"],
        outputs=["state.npy"],
        resources=Resources(max_output_mb=size_mb * 2 + 1),
        created_at=created,
        expires_at=expires,
    )
    envelope = sign(manifest, MANIFEST_TYPE, alice.signing)
    start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(prefix="pht-bench-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        write_random(root / "cohort.csv", size)
        # a dataset source as an admin keeps it: read-only (see docs/performance.md)
        (root / "cohort.csv").chmod(0o444)
        (root / "in").mkdir()
        shutil.copyfile(root / "cohort.csv", root / "in" / "state.npy")
        with (root / "in.tar").open("wb") as target:
            state_codec.pack_to(root / "in", ["state.npy"], size * 2, target)
        sealed_in = root / "in.sealed"
        input_digest = seal_file(
            root / "in.tar", sealed_in, [b.public], output_context(manifest.train_id, 0)
        )
        now = datetime.now(UTC)
        previous = sign(
            HopReceipt.for_hop(
                HopPredicate(
                    train_id=manifest.train_id,
                    hop=0,
                    round=0,
                    kind="local",
                    station="a",
                    station_key=a.public.signing_fingerprint,
                    manifest_digest=envelope.digest,
                    image_digest=manifest.image.digest,
                    input_state_digests=[],
                    output_state_digest=input_digest,
                    output_commitment=digest_file(root / "in.tar"),
                    output_sealed_to=[b.public.sealing_fingerprint],
                    previous_receipt_digests=[],
                    started_at=now,
                    finished_at=now,
                    container_seconds=0.0,
                )
            ),
            RECEIPT_TYPE,
            a.signing,
        )
        offer = HopOffer(
            train_id=manifest.train_id,
            hop=1,
            kind="local",
            manifest=envelope,
            inputs=[HopInput(hop=0, digest=input_digest)],
            previous_receipts=[previous],
            lease_s=60,
        )
        config = StationConfig(
            station=StationInfo(name="b", central_url="http://127.0.0.1:1"),
            datasets={"cohort": CsvSource(path=root / "cohort.csv")},
            policy=Policy(
                trusted_signers=[alice.public.signing_fingerprint],
                allowed_registries=["127.0.0.1:5000"],
                caps=Resources(max_output_mb=size_mb * 2 + 1),
            ),
            base_dir=root,
        )
        baselines = measure_baselines(root / "cohort.csv", root / "baseline")
        queue = HopQueue(root / "state")
        out_dir = root / "output"
        out_dir.mkdir()
        # what the container would have written (a file of its own, as copied out)
        shutil.copyfile(root / "cohort.csv", out_dir / "state.npy")
        timings: dict[str, float] = {}
        cpu: dict[str, float] = {}
        results: dict[str, Any] = {}

        def timed(name: str, step: Callable[[], Any]) -> None:
            started, used = time.perf_counter(), cpu_seconds()
            results[name] = step()
            timings[name] = time.perf_counter() - started
            cpu[name] = cpu_seconds() - used

        def open_input() -> None:
            context = output_context(manifest.train_id, 0)
            if old:
                check_input_digest(digest_file(sealed_in), offer.inputs[0].digest)
                opened = root / "opened.tar"
                open_file(sealed_in, opened, b.sealing, context)
                results["commitment"] = digest_file(opened)
                with opened.open("rb") as source:
                    state_codec.unpack_from(source, root / "input", size * 2)
                opened.unlink()
                return
            check_input_digest(input_digest, offer.inputs[0].digest)  # taken by the download
            check_sealed_to(sealed_in, [b.public], "the input state")
            opened, _ = open_and_unpack(
                sealed_in, root / "input", size * 2, b.sealing, context, False
            )
            results["commitment"] = opened.plain

        sealed_out = root / "out.sealed"
        packed = root / "out.tar"

        def pack_output() -> None:
            if not old:
                return  # packed while sealed (seal_output)
            with packed.open("wb") as target:
                state_codec.pack_to(out_dir, ["state.npy"], size * 2, target)

        def seal_output() -> tuple[str, str]:
            context = output_context(manifest.train_id, 1)
            if old:
                sealed = seal_file(packed, sealed_out, [alice.public], context)
                return sealed, digest_file(packed)
            digests = pack_and_seal(
                out_dir, ["state.npy"], size * 2, sealed_out, [alice.public], context
            )
            return digests.sealed, digests.plain

        def outbox() -> None:
            if old:
                digest_file(sealed_out)  # process_hop's record.output_digest, before
            queue.store_output(record, sealed_out, results["receipt"])

        timed("verify", lambda: verify_offer(offer, config, b.public))
        timed("input", open_input)
        if volume:
            from state_common import measure_volume_fill

            results["volume_s"] = measure_volume_fill(root / "input")
            results["paths"] = measure_volume_paths(root / "input", root / "outcopy", size)
        timed("data", lambda: materialise(config, "cohort", root / "data" / "cohort"))
        timed(
            "disclose",
            lambda: check_output(out_dir, ["state.npy"], size * 2, config.policy.disclosure),
        )
        timed("pack", pack_output)
        timed("seal", seal_output)

        def sign_receipt() -> Any:
            return sign(
                HopReceipt.for_hop(hop_predicate(previous, b, results["seal"], offer, alice)),
                RECEIPT_TYPE,
                b.signing,
            )

        timed("receipt", sign_receipt)
        record = HopRecord.from_offer(offer, HopState.RUNNING)
        timed("outbox", outbox)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "size_mb": size_mb,
        "steps": timings,
        "cpu": cpu,
        "baselines": baselines,
        "peak_rss_mb": peak_kb / 1024,
        "rss_growth_mb": (peak_kb - start_kb) / 1024,
        "volume_s": results.get("volume_s"),
        "paths": results.get("paths"),
    }


def measure_volume_paths(folder: Path, scratch: Path, size: int) -> dict[str, float]:
    """Seconds of the direct input fill, and of copying a held output volume holding
    ``size`` bytes out both ways (archive, direct). Real volumes, a real holder."""
    import uuid

    import docker

    from station import volume_dir
    from station.output_volume import (
        MIB,
        OUTPUT_SLACK,
        archive_bound,
        copy_output,
        output_mount,
        volume_options,
    )

    client = docker.from_env(timeout=600)
    took: dict[str, float] = {}
    volume = client.volumes.create(name=f"pht-bench-{uuid.uuid4().hex[:8]}")
    try:
        started = time.perf_counter()
        volume_dir.fill(folder, Path(volume.attrs["Mountpoint"]))
        took["fill_direct"] = time.perf_counter() - started
    finally:
        volume.remove(force=True)
    cap_mb, inodes = size // MIB + 2, 64
    output = client.volumes.create(
        name=f"pht-bench-out-{uuid.uuid4().hex[:8]}",
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": volume_options(cap_mb, inodes, 0)},
    )
    holder = client.containers.create(
        "pht-base:latest",
        entrypoint=["sleep", "infinity"],
        network_mode="none",
        mounts=[output_mount(output.name, read_only=True)],
    )
    try:
        holder.start()
        mountpoint = Path(output.attrs["Mountpoint"])
        assert volume_dir.is_tmpfs_of(mountpoint, cap_mb * MIB + OUTPUT_SLACK, inodes)
        write_random(mountpoint / "state.npy", size)
        for way in ("archive", "direct"):
            target = scratch / way
            target.mkdir(parents=True)
            started = time.perf_counter()
            if way == "archive":
                copy_output(holder, target, cap_mb * MIB, True, archive_bound(cap_mb, inodes))
            else:
                volume_dir.copy_tree(mountpoint, target, cap_mb * MIB, True, inodes)
            took[f"out_{way}"] = time.perf_counter() - started
            shutil.rmtree(target)
    finally:
        holder.remove(force=True)
        output.remove(force=True)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100], help="state sizes, MB")
    parser.add_argument("--old", action="store_true", help="the steps as before issue 18")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each size")
    parser.add_argument("--volume", action="store_true", help="time the input volume fill")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.old, args.volume)))
        return
    print(
        f"station overhead per hop ({'old' if args.old else 'new'} steps, no container run), "
        "seconds; baselines of the same run: copy = cp + fsync, cache = cp without fsync"
    )
    header = f"{'state':>7} " + " ".join(f"{s:>8}" for s in STEPS)
    print(
        f"{header} {'total':>8} | {'copy':>7} {'cache':>7} {'sha256':>7} | "
        f"{'in/cp':>6} {'p+s/cp':>6} {'hop/cp':>6} | {'growth':>6}"
    )
    for size in args.sizes:
        for _ in range(args.repeat):
            command = [sys.executable, __file__, "--one", str(size)]
            done = subprocess.run(
                command + (["--old"] if args.old else []) + (["--volume"] if args.volume else []),
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                print(f"{size:>5}MB failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            row = json.loads(done.stdout)
            print_row(size, row)
            if row.get("volume_s") is not None:
                fill, copy = row["volume_s"], row["baselines"]["copy"]
                print(f"{'volume':>7} input volume fill {fill:.3f} s = {fill / copy:.1f}x copy")
            for key, label in (
                ("fill_direct", "input volume fill, direct"),
                ("out_archive", "output copy-out, archive"),
                ("out_direct", "output copy-out, direct"),
            ):
                if row.get("paths"):
                    took, copy = row["paths"][key], row["baselines"]["copy"]
                    print(f"{'volume':>7} {label} {took:.3f} s = {took / copy:.2f}x copy")
    print("in/cp: input / copy (target 2x); p+s/cp: pack + seal / copy (target 2x); hop/cp:")
    print("total / copy (target 4x). growth: peak RSS minus RSS after imports (target 128 MB).")
    print("cpu s: CPU seconds of each step (all threads), ratios against the CPU seconds of")
    print("the page-cache copy: steadier than wall time while other work shares the cores.")


if __name__ == "__main__":
    main()
