"""Routing overhead per hop, with stations that run nothing.

Three in-process stations (threads speaking HTTP, as a station daemon would, with real
sealing and signed receipts but no container) carry one train over 3 stops x R rounds.
Per hop: long-poll claim, input download, seal, upload, sign, complete. Printed: wall time
per hop, the station-side crypto share measured separately, and the ratio to a raw
``/healthz`` round trip in the same run.

    python3 benchmarks/central_routing.py [--rounds 20] [--postgres]
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime
from itertools import pairwise

import httpx
from central_common import (  # run as: python3 benchmarks/central_routing.py
    cpu_seconds,
    healthz_round_trips,
    percentile,
    register,
    signed_manifest,
    start_central,
    summary,
)

from trains.keys import Identity
from trains.manifest import Manifest
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt
from trains.sealing import digest_bytes, open_sealed, output_context, seal
from trains.signing import Envelope, sign


def station(
    base: str,
    me: Identity,
    token: str,
    crypto: list[float],
    stop: threading.Event,
    done_at: list[float],
):
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
        while not stop.is_set():
            offer = http.post("/api/v1/hops/next?wait=2", timeout=10)
            if offer.status_code != 200:
                continue
            body = offer.json()
            envelope = Envelope.model_validate(body["manifest"])
            manifest = Manifest.model_validate_json(envelope.payload_bytes)
            index = body["hop"]
            url = f"/api/v1/trains/{manifest.train_id}/hops/{index}"
            payload = b"{}"
            sealed_in = None
            if body["inputs"]:
                sealed_in = http.get(f"{url}/inputs/0").content
            t0 = time.perf_counter()
            if sealed_in is not None:
                payload = open_sealed(
                    sealed_in, me.sealing, output_context(manifest.train_id, index - 1)
                )
            sealed = seal(
                payload,
                [manifest.recipient_after(index)],
                output_context(manifest.train_id, index),
            )
            now = datetime.now(UTC)
            receipt = sign(
                HopReceipt.for_hop(
                    HopPredicate(
                        train_id=manifest.train_id,
                        hop=index,
                        round=manifest.hop(index).round,
                        kind="local",
                        station=me.name,
                        station_key=me.public.signing_fingerprint,
                        manifest_digest=envelope.digest,
                        image_digest=manifest.image.digest,
                        input_state_digests=[i["digest"] for i in body["inputs"]],
                        output_state_digest=digest_bytes(sealed),
                        output_sealed_to=[manifest.recipient_after(index).sealing_fingerprint],
                        previous_receipt_digests=[
                            Envelope.model_validate(r).digest for r in body["previous_receipts"]
                        ],
                        started_at=now,
                        finished_at=now,
                        container_seconds=0.0,
                    )
                ),
                RECEIPT_TYPE,
                me.signing,
            )
            crypto.append(time.perf_counter() - t0)
            http.post(  # what a station sends (CentralClient.deliver)
                f"{url}/result",
                content=receipt.model_dump_json().encode() + b"\n" + sealed,
            ).raise_for_status()
            done_at.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    database_url = ""
    if args.postgres:
        from central.testing_pg import fresh_database

        database_url = fresh_database()
    server = start_central(database_url=database_url)
    assert server.process is not None
    try:
        researcher = Identity.generate("alice")
        stations = [Identity.generate(n) for n in ("hospital-a", "hospital-b", "hospital-c")]
        (r_token,) = register(server, "researcher", [researcher])
        tokens = register(server, "station", stations)
        baseline = healthz_round_trips(server.url)
        cpu_before = cpu_seconds(server.process.pid)
        authed = healthz_round_trips(server.url, 300, "/api/v1/me", r_token)
        authed_cpu = (cpu_seconds(server.process.pid) - cpu_before) / 300
        hops = 3 * args.rounds
        print(f"central routing overhead: 3 stops x {args.rounds} rounds = {hops} hops")
        print(f"  database              {'PostgreSQL' if args.postgres else 'SQLite (WAL)'}")
        print(f"  baseline /healthz RTT {summary(baseline)}")
        print(f"  baseline /api/v1/me   {summary(authed)} (token checked in the DB)")
        print(f"  central CPU / me      {authed_cpu * 1000:7.2f} ms")
        crypto: list[float] = []
        done_at: list[float] = []
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=station,
                args=(server.url, s, t, crypto, stop, done_at),
                daemon=True,
            )
            for s, t in zip(stations, tokens, strict=True)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        envelope = signed_manifest(researcher, stations, rounds=args.rounds)
        cpu_before = cpu_seconds(server.process.pid)
        started = time.perf_counter()
        headers = {"Authorization": f"Bearer {r_token}"}
        train_id = httpx.post(
            f"{server.url}/api/v1/trains",
            json={"manifest": envelope.model_dump(mode="json")},
            headers=headers,
        ).json()["train_id"]
        while True:
            status = httpx.get(f"{server.url}/api/v1/trains/{train_id}", headers=headers).json()
            if status["status"] in ("done", "failed"):
                break
            time.sleep(0.25)  # a researcher watching; rare so it does not load central
        wall = time.perf_counter() - started
        cpu = cpu_seconds(server.process.pid) - cpu_before
        stop.set()
        for thread in threads:
            thread.join()
        per_hop = wall / hops
        print(f"  train                 {status['status']} in {wall:.2f} s")
        ends = [started, *sorted(done_at)]
        gaps = [b - a for a, b in pairwise(ends)]
        print(f"  wall per hop          {per_hop * 1000:7.2f} ms (whole route / hops)")
        print(f"  hop to hop            {summary(gaps)}")
        print(f"  station crypto / hop  {summary(crypto)}")
        print(f"  central CPU / hop     {cpu / hops * 1000:7.2f} ms")
        print(f"  ratio hop/healthz     {per_hop / percentile(baseline, 50):.1f}x (p50)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
