"""Station overhead per hop, without the container run: what a hop costs the station itself.

For each state size, in a fresh subprocess (so peak RSS is that size's own), one hop 1 of a
two-stop route at station B, with real keys and real files:

  verify    verify_offer: manifest signature, policy, route, previous receipt
  input     check the input's digest, open it (HPKE + AES-GCM), unpack it to the input folder
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
import hashlib
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
    from central.client import HopOffer
    from station.config import CsvSource, Policy, StationConfig, StationInfo
    from station.datasources import materialise
    from station.disclosure import check_output
    from station.queue import HopQueue, HopRecord, HopState
    from station.verify import check_input_bytes, verify_offer
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
    from trains.sealing import digest_bytes, open_sealed, seal, seal_context
    from trains.signing import sign

    size = size_mb * 1024 * 1024
    alice, a, b = Identity.generate("alice"), Identity.generate("a"), Identity.generate("b")
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
    with tempfile.TemporaryDirectory(prefix="pht-bench-") as tmp:
        root = Path(tmp)
        payload = os.urandom(size)
        (root / "in").mkdir()
        (root / "in" / "state.npy").write_bytes(payload)
        archive = state_codec.pack(root / "in", ["state.npy"], size * 2)
        sealed_in = seal(archive, [b.public], seal_context(manifest.train_id, 1))
        del archive
        now = datetime.now(UTC)
        previous = sign(
            HopReceipt.for_hop(
                HopPredicate(
                    train_id=manifest.train_id,
                    hop=0,
                    round=0,
                    station="a",
                    station_key=a.public.signing_fingerprint,
                    manifest_digest=envelope.digest,
                    image_digest=manifest.image.digest,
                    input_state_digest=None,
                    output_state_digest=digest_bytes(sealed_in),
                    output_sealed_to=[b.public.sealing_fingerprint],
                    previous_receipt_digest=None,
                    started_at=now,
                    finished_at=now,
                    container_seconds=0.0,
                )
            ),
            RECEIPT_TYPE,
            a.signing,
        )
        offer = HopOffer(manifest.train_id, 1, envelope, digest_bytes(sealed_in), previous)
        (root / "cohort.csv").write_bytes(payload)
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
        (out_dir / "state.npy").write_bytes(payload)  # what the container would have written
        timings: dict[str, float] = {}
        results: dict[str, Any] = {}

        def timed(name: str, step: Callable[[], Any]) -> None:
            started = time.perf_counter()
            results[name] = step()
            timings[name] = time.perf_counter() - started

        def open_input() -> None:
            check_input_bytes(sealed_in, offer.input_digest)
            opened = open_sealed(sealed_in, b.sealing, seal_context(manifest.train_id, 1))
            state_codec.unpack(opened, root / "input", size * 2)

        def seal_output() -> bytes:
            packed = state_codec.pack(out_dir, ["state.npy"], size * 2)
            return seal(packed, [alice.public], seal_context(manifest.train_id, 2))

        timed("verify", lambda: verify_offer(offer, config, b.public))
        timed("input", open_input)
        timed("data", lambda: materialise(config, "cohort", root / "data" / "cohort"))
        timed(
            "disclose",
            lambda: check_output(out_dir, ["state.npy"], size * 2, config.policy.disclosure),
        )
        timed("seal", seal_output)
        sealed_out: bytes = results["seal"]

        def sign_receipt() -> Any:
            return sign(
                HopReceipt.for_hop(
                    previous_receipt_predicate(previous, b, sealed_out, offer, alice)
                ),
                RECEIPT_TYPE,
                b.signing,
            )

        timed("receipt", sign_receipt)
        record = HopRecord.from_offer(offer, HopState.RUNNING)
        timed("outbox", lambda: queue.store_output(record, sealed_out, results["receipt"]))
        started = time.perf_counter()
        hashlib.sha256(payload).hexdigest()
        baseline = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "size_mb": size_mb,
        "steps": timings,
        "baseline": baseline,
        "peak_rss_mb": peak_kb / 1024,
    }


def previous_receipt_predicate(
    previous: Any, me: Any, sealed_out: bytes, offer: Any, reader: Any
) -> Any:
    from trains.receipt import HopPredicate
    from trains.sealing import digest_bytes

    now = datetime.now(UTC)
    return HopPredicate(
        train_id=offer.train_id,
        hop=1,
        round=0,
        station=me.name,
        station_key=me.public.signing_fingerprint,
        manifest_digest=offer.manifest.digest,
        image_digest="sha256:" + "ab" * 32,
        input_state_digest=offer.input_digest,
        output_state_digest=digest_bytes(sealed_out),
        output_sealed_to=[reader.public.sealing_fingerprint],
        previous_receipt_digest=previous.digest,
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
    print(f"{header} {'total':>9} {'baseline':>9} {'ratio':>7} {'peak RSS':>10}")
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
            f"{total / row['baseline']:>6.1f}x {row['peak_rss_mb']:>8.0f}MB"
        )
    print("peak RSS is the whole process (interpreter, pandas, both states in memory): sealing")
    print("and opening hold a whole state in memory (trains.sealing is not streaming yet).")


if __name__ == "__main__":
    main()
