"""Station overhead per hop, without the container run: what a hop costs the station itself.

For each state size, in a fresh subprocess (so peak RSS is that size's own), one hop 1 of a
two-stop route at station B, with real keys and real files:

  verify    verify_offer: manifest signature, policy, route, previous receipt
  input     check the input's digest, open it (HPKE + age STREAM), unpack it, all streamed
  data      materialise a dataset of the same size (a file copy)
  disclose  disclosure control on the output folder
  seal      pack the output and seal it to the next reader
  receipt   build and sign the hop receipt
  outbox    write sealed output and receipt to the outbox (fsynced), as the daemon does

Baseline, measured in the same process on the same bytes: one sha256 over the state. The
ratio says how many "hash the state once" the station spends per hop.

    python3 benchmarks/station_overhead.py                 # 1 MB and 100 MB
    python3 benchmarks/station_overhead.py --sizes 1 100 1024
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STEPS = ("verify", "input", "data", "disclose", "seal", "receipt", "outbox")


def one(size_mb: int) -> dict[str, Any]:
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
        (root / "in").mkdir()
        (root / "in" / "state.npy").hardlink_to(root / "cohort.csv")
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
                allowed_registries=["127.0.0.1"],
                caps=Resources(max_output_mb=size_mb * 2 + 1),
            ),
            base_dir=root,
        )
        queue = HopQueue(root / "state")
        out_dir = root / "output"
        out_dir.mkdir()
        # what the container would have written
        (out_dir / "state.npy").hardlink_to(root / "cohort.csv")
        timings: dict[str, float] = {}
        results: dict[str, Any] = {}

        def timed(name: str, step: Callable[[], Any]) -> None:
            started = time.perf_counter()
            results[name] = step()
            timings[name] = time.perf_counter() - started

        def open_input() -> None:
            check_input_digest(digest_file(sealed_in), offer.inputs[0].digest)
            opened = root / "opened.tar"
            open_file(sealed_in, opened, b.sealing, output_context(manifest.train_id, 0))
            with opened.open("rb") as source:
                state_codec.unpack_from(source, root / "input", size * 2)

        sealed_out = root / "out.sealed"

        def seal_output() -> str:
            packed = root / "out.tar"
            with packed.open("wb") as target:
                state_codec.pack_to(out_dir, ["state.npy"], size * 2, target)
            return seal_file(
                packed, sealed_out, [alice.public], output_context(manifest.train_id, 1)
            )

        timed("verify", lambda: verify_offer(offer, config, b.public))
        timed("input", open_input)
        timed("data", lambda: materialise(config, "cohort", root / "data" / "cohort"))
        timed(
            "disclose",
            lambda: check_output(out_dir, ["state.npy"], size * 2, config.policy.disclosure),
        )
        timed("seal", seal_output)
        output_digest: str = results["seal"]

        def sign_receipt() -> Any:
            return sign(
                HopReceipt.for_hop(
                    previous_receipt_predicate(previous, b, output_digest, offer, alice)
                ),
                RECEIPT_TYPE,
                b.signing,
            )

        timed("receipt", sign_receipt)
        record = HopRecord.from_offer(offer, HopState.RUNNING)
        timed("outbox", lambda: queue.store_output(record, sealed_out, results["receipt"]))
        started = time.perf_counter()
        digest_file(root / "cohort.csv")
        baseline = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "size_mb": size_mb,
        "steps": timings,
        "baseline": baseline,
        "peak_rss_mb": peak_kb / 1024,
        "rss_growth_mb": (peak_kb - start_kb) / 1024,
    }


def write_random(path: Path, size: int) -> None:
    """A file of random bytes, written in 1 MB pieces (never the whole state in memory)."""
    with path.open("wb") as out:
        for _ in range(size // (1 << 20)):
            out.write(os.urandom(1 << 20))
        out.write(os.urandom(size % (1 << 20)))


def previous_receipt_predicate(
    previous: Any, me: Any, output_digest: str, offer: Any, reader: Any
) -> Any:
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
        output_state_digest=output_digest,
        output_sealed_to=[reader.public.sealing_fingerprint],
        previous_receipt_digests=[previous.digest],
        started_at=now,
        finished_at=now,
        container_seconds=0.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100], help="state sizes, MB")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one)))
        return
    print("station overhead per hop (no container run); baseline = sha256 over the state")
    header = f"{'state':>8} " + " ".join(f"{s:>9}" for s in STEPS)
    print(f"{header} {'total':>9} {'baseline':>9} {'ratio':>7} {'peak RSS':>9} {'growth':>8}")
    for size in args.sizes:
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(size)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"{size:>6}MB failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        row = json.loads(done.stdout)
        steps = row["steps"]
        total = sum(steps.values())
        cells = " ".join(f"{steps[s]:>8.3f}s" for s in STEPS)
        print(
            f"{size:>6}MB {cells} {total:>8.3f}s {row['baseline']:>8.3f}s "
            f"{total / row['baseline']:>6.1f}x {row['peak_rss_mb']:>7.0f}MB "
            f"{row['rss_growth_mb']:>6.0f}MB"
        )
    print("peak RSS: the whole process; growth: peak RSS minus RSS after imports, i.e. what")
    print("the hop itself held. States are streamed through files: growth stays flat.")


if __name__ == "__main__":
    main()
