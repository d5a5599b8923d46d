"""Central as real processes (``pht-central serve`` under uvicorn): two of them sharing one
PostgreSQL never hand out a hop twice, a long poll on one hears work queued on the other,
and a central killed with SIGKILL mid-route and started again on the same data loses no hop
and runs none twice. The stations are in-process loops speaking HTTP, no Docker needed."""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx

from central.db import make_engine, make_sessions
from central.service import Service
from central.testing_pg import postgres_or_skip
from central.testing_server import CentralServer
from tests.factories import make_manifest
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE, Manifest
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt, verify_chain
from trains.sealing import digest_bytes, open_sealed, output_context, seal
from trains.signing import Envelope, sign


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(url: str, researcher: Identity, stations: list[Identity]) -> dict[str, str]:
    service = Service(make_sessions(make_engine(url)))
    tokens = {researcher.name: service.register("researcher", researcher.public)}
    for s in stations:
        tokens[s.name] = service.register("station", s.public)
    return tokens


def submit(base: str, researcher: Identity, stations: list[Identity], token: str, rounds=1):
    manifest = make_manifest(researcher, stations, rounds=rounds)
    envelope = sign(manifest, MANIFEST_TYPE, researcher.signing)
    response = httpx.post(
        f"{base}/api/v1/trains",
        json={"manifest": envelope.model_dump(mode="json")},
        headers=auth(token),
    )
    assert response.status_code == 201, response.text
    return manifest, envelope


def test_two_centrals_on_one_postgres_never_hand_out_a_hop_twice(tmp_path):
    url = postgres_or_skip()
    researcher, station = Identity.generate("alice"), Identity.generate("hospital-a")
    tokens = register(url, researcher, [station])
    with (
        CentralServer(tmp_path / "one", url) as one,
        CentralServer(tmp_path / "two", url) as two,
    ):
        trains = {
            submit(one.url, researcher, [station], tokens["alice"])[0].train_id for _ in range(40)
        }
        claims: list[tuple[str, int]] = []
        lock = threading.Lock()

        def claimer(i: int) -> None:
            base = (one, two)[i % 2].url
            with httpx.Client(base_url=base, headers=auth(tokens["hospital-a"])) as http:
                empty = 0
                while empty < 3:
                    response = http.post("/api/v1/hops/next")
                    assert response.status_code in (200, 204), response.text
                    if response.status_code == 204:
                        empty += 1
                        continue
                    with lock:
                        claims.append((response.json()["train_id"], response.json()["hop"]))

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(claimer, range(16)))
        duplicates = [c for c, n in collections.Counter(claims).items() if n > 1]
        assert duplicates == []
        assert {t for t, _ in claims} == trains

        # a long poll on `two` hears of a hop queued through `one` (by the DB re-check)
        answer: list[httpx.Response] = []
        poll = threading.Thread(
            target=lambda: answer.append(
                httpx.post(
                    f"{two.url}/api/v1/hops/next?wait=20",
                    headers=auth(tokens["hospital-a"]),
                    timeout=30,
                )
            )
        )
        poll.start()
        time.sleep(0.5)
        manifest, _ = submit(one.url, researcher, [station], tokens["alice"])
        poll.join(30)
        assert answer[0].status_code == 200
        assert answer[0].json()["train_id"] == manifest.train_id


class StationLoop(threading.Thread):
    """A station that keeps going while central is away: every call is retried on a
    connection error, so each hop is run once and reported until central has it."""

    def __init__(self, base: str, identity: Identity, token: str, runs: collections.Counter):
        super().__init__(daemon=True)
        self.base, self.identity, self.token, self.runs = base, identity, token, runs
        self.stop = threading.Event()

    def call(self, http: httpx.Client, method: str, path: str, **kw) -> httpx.Response:
        while not self.stop.is_set():
            try:
                return http.request(method, path, **kw)
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("stopped")

    def run(self) -> None:
        with httpx.Client(base_url=self.base, headers=auth(self.token), timeout=30) as http:
            while not self.stop.is_set():
                try:
                    offer = self.call(http, "POST", "/api/v1/hops/next?wait=2")
                except RuntimeError:
                    return
                if offer.status_code == 200:
                    self.run_hop(http, offer.json())

    def run_hop(self, http: httpx.Client, body: dict) -> None:
        envelope = Envelope.model_validate(body["manifest"])
        manifest = Manifest.model_validate_json(envelope.payload_bytes)
        index = body["hop"]
        self.runs[(manifest.train_id, index)] += 1
        url = f"/api/v1/trains/{manifest.train_id}/hops/{index}"
        payload = b"start"
        for k, given in enumerate(body["inputs"]):
            got = self.call(http, "GET", f"{url}/inputs/{k}")
            assert digest_bytes(got.content) == given["digest"]
            payload = open_sealed(
                got.content, self.identity.sealing, output_context(manifest.train_id, given["hop"])
            )
        time.sleep(0.3)  # "the container runs"
        self.call(http, "POST", f"{url}/heartbeat")
        sealed = seal(
            payload + f" {index}".encode(),
            [manifest.recipient_after(index)],
            output_context(manifest.train_id, index),
        )
        now = datetime.now(UTC)
        receipt = HopReceipt.for_hop(
            HopPredicate(
                train_id=manifest.train_id,
                hop=index,
                round=manifest.hop(index).round,
                kind="local",
                station=self.identity.name,
                station_key=self.identity.public.signing_fingerprint,
                manifest_digest=envelope.digest,
                image_digest=manifest.image.digest,
                input_state_digests=[i["digest"] for i in body["inputs"]],
                output_state_digest=digest_bytes(sealed),
                output_commitment=digest_bytes(payload + f" {index}".encode()),
                output_sealed_to=[manifest.recipient_after(index).sealing_fingerprint],
                previous_receipt_digests=[
                    Envelope.model_validate(r).digest for r in body["previous_receipts"]
                ],
                started_at=now,
                finished_at=now,
                container_seconds=0.3,
            )
        )
        signed = sign(receipt, RECEIPT_TYPE, self.identity.signing)
        line = signed.model_dump_json().encode() + b"\n"
        done = self.call(http, "POST", f"{url}/result", content=line + sealed)
        assert done.status_code == 200, done.text


def test_central_killed_mid_route_and_restarted_loses_no_hop_and_runs_none_twice(tmp_path):
    researcher = Identity.generate("alice")
    stations = [Identity.generate(n) for n in ("hospital-a", "hospital-b", "hospital-c")]
    data = tmp_path / "central"
    data.mkdir()
    tokens = register(f"sqlite:///{data / 'central.db'}", researcher, stations)
    server = CentralServer(data, "", 0, "--lease-s", "3", "--lease-check-s", "0.5").start()
    runs: collections.Counter = collections.Counter()
    loops = [StationLoop(server.url, s, tokens[s.name], runs) for s in stations]
    try:
        for loop in loops:
            loop.start()
        manifest, envelope = submit(server.url, researcher, stations, tokens["alice"], rounds=3)
        status_url = f"{server.url}/api/v1/trains/{manifest.train_id}"

        def status() -> dict:
            return httpx.get(status_url, headers=auth(tokens["alice"])).json()

        deadline = time.monotonic() + 60
        while sum(h["status"] == "done" for h in status()["hops"]) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.15)  # into hop 3's run
        server.kill()
        time.sleep(1.0)  # stations keep retrying against a dead port
        server.start()
        deadline = time.monotonic() + 90
        while status()["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, status()
            time.sleep(0.1)
        final = status()
        assert final["status"] == "done", final
    finally:
        for loop in loops:
            loop.stop.set()
        server.stop()
    assert sorted(runs) == [(manifest.train_id, i) for i in range(9)]
    assert set(runs.values()) == {1}, runs  # every hop ran exactly once
    server.start()
    try:
        receipts = [
            Envelope.model_validate(r)
            for r in httpx.get(f"{status_url}/receipts", headers=auth(tokens["alice"])).json()
        ]
        result = httpx.get(f"{status_url}/result", headers=auth(tokens["alice"])).content
    finally:
        server.stop()
    chain = verify_chain(manifest, envelope.digest, None, receipts, digest_bytes(result))
    assert len(chain) == 9
    opened = open_sealed(result, researcher.sealing, output_context(manifest.train_id, 8))
    assert opened == b"start " + b" ".join(str(i).encode() for i in range(9))


def test_central_client_long_polls_and_renews_its_lease(tmp_path):
    """CentralClient.next_hop(wait=...) and .heartbeat, as station/daemon.py uses them."""
    from central.client import CentralClient
    from trains.errors import CentralError

    researcher, station = Identity.generate("alice"), Identity.generate("hospital-a")
    data = tmp_path / "central"
    data.mkdir()
    tokens = register(f"sqlite:///{data / 'central.db'}", researcher, [station])
    with (
        CentralServer(data, "", 0, "--lease-s", "1", "--lease-check-s", "0.2") as server,
        CentralClient(server.url, tokens["hospital-a"]) as client,
    ):
        assert client.next_hop() is None  # the default stays a plain, immediate poll
        timer = threading.Timer(
            0.5, lambda: submit(server.url, researcher, [station], tokens["alice"])
        )
        timer.start()
        offer = client.next_hop(wait=20)
        timer.join()
        assert offer is not None and offer.lease_s == 1.0
        for _ in range(4):  # 2 s of work, twice the lease, kept alive
            assert client.heartbeat(offer.train_id, offer.hop) == "running"
            time.sleep(0.5)
        time.sleep(2.0)  # silent past the lease: the sweeper offers the hop again
        try:
            client.heartbeat(offer.train_id, offer.hop)
            raise AssertionError("a lost lease must be refused")
        except CentralError as exc:
            assert "409" in str(exc) and "lease ran out" in str(exc)
        again = client.next_hop()
        assert again is not None and again.train_id == offer.train_id
