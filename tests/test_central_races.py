"""Central's state transitions under concurrency, on SQLite and on a real PostgreSQL: two
``pht-central serve`` processes share one database and one blob folder, and many clients
race each other over HTTP. Every race is run on many trains; every run must end with no 5xx
and a consistent end state: the train's status agrees with its hops and with what each
client was told, and the blob on disk is the one whose digest the stored receipt names.

Here (issue 17, reproduction 5): the last hop's ``/result`` against the researcher's
cancel, and against its own station's ``/fail``; one train submitted many times at once.
The first writer wins and the other is told so (409). The races over blobs (completions
and uploads) are in ``tests/test_central_upload_races.py``, on the same fixture.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from central.db import make_engine, make_sessions
from central.service import Service
from central.testing_pg import database_url_for
from central.testing_server import CentralServer
from tests.factories import make_manifest, sign_receipt
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE, Manifest
from trains.sealing import digest_bytes, digest_file, output_context, seal
from trains.signing import Envelope, sign

TRAINS = int(os.environ.get("PHT_RACE_TRAINS", "24"))  # trains per race and database
STATE_BYTES = 128 * 1024  # big enough that streaming an upload takes a while


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Net:
    """Two central processes over one database and one blob folder, and their clients."""

    data: Path
    servers: list[CentralServer]
    tokens: dict[str, str]
    alice: Identity
    stations: dict[str, Identity]
    http: list[httpx.Client] = field(default_factory=list)

    def client(self, i: int) -> httpx.Client:
        return self.http[i % len(self.http)]

    def blob(self, train_id: str, name: str) -> Path:
        return self.data / "blobs" / train_id / name

    def submit(self, stops: list[str], has_initial_state: bool = False) -> tuple[Manifest, str]:
        manifest = make_manifest(self.alice, [self.stations[s] for s in stops])
        envelope = sign(manifest, MANIFEST_TYPE, self.alice.signing)
        response = self.client(0).post(
            "/api/v1/trains",
            json={
                "manifest": envelope.model_dump(mode="json"),
                "has_initial_state": has_initial_state,
            },
            headers=auth(self.tokens["alice"]),
        )
        assert response.status_code == 201, response.text
        return manifest, envelope.digest

    def claim_all(self, station: str) -> dict[str, dict]:
        """Claim every hop queued for ``station``: train id -> offer."""
        offers = {}
        while True:
            got = self.client(0).post("/api/v1/hops/next", headers=auth(self.tokens[station]))
            assert got.status_code in (200, 204), got.text
            if got.status_code == 204:
                return offers
            offers[got.json()["train_id"]] = got.json()

    def status(self, train_id: str) -> dict:
        got = self.client(0).get(f"/api/v1/trains/{train_id}", headers=auth(self.tokens["alice"]))
        assert got.status_code == 200, got.text
        return got.json()  # type: ignore[no-any-return]


@pytest.fixture(params=["sqlite", "postgresql"])
def net(request, tmp_path) -> Iterator[Net]:
    url = database_url_for(request.param, tmp_path)
    data = tmp_path / "central"
    data.mkdir()
    if request.param == "sqlite":
        url = f"sqlite:///{data / 'central.db'}"
    alice = Identity.generate("alice")
    stations = {n: Identity.generate(n) for n in ("hospital-a", "hospital-b")}
    service = Service(make_sessions(make_engine(url)))
    tokens = {"alice": service.register("researcher", alice.public)}
    for name, identity in stations.items():
        tokens[name] = service.register("station", identity.public)
    servers = [CentralServer(data, url), CentralServer(data, url)]
    try:
        for server in servers:
            server.start()
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        http = [httpx.Client(base_url=s.url, timeout=120, limits=limits) for s in servers]
        yield Net(data, servers, tokens, alice, stations, http)
        for client in http:
            client.close()
    finally:
        for server in servers:
            server.stop()


@dataclass(frozen=True)
class Output:
    """One candidate output of a hop: its sealed bytes and the receipt that names them."""

    sealed: bytes
    receipt: Envelope

    @property
    def digest(self) -> str:
        return digest_bytes(self.sealed)

    def body(self) -> bytes:
        return self.receipt.model_dump_json().encode() + b"\n" + self.sealed


def output_of(
    manifest: Manifest, manifest_digest: str, offer: dict, station: Identity, tag: bytes
) -> Output:
    index = offer["hop"]
    payload = tag + os.urandom(STATE_BYTES)
    sealed = seal(
        payload, manifest.recipients_after(index), output_context(manifest.train_id, index)
    )
    receipt = sign_receipt(
        manifest,
        manifest_digest,
        index,
        station,
        [i["digest"] for i in offer["inputs"]],
        [Envelope.model_validate(r).digest for r in offer["previous_receipts"]],
        digest_bytes(sealed),
    )
    return Output(sealed, receipt)


Call = Callable[[], httpx.Response]


def race(calls: list[tuple[str, int, Call]]) -> dict[tuple[str, int], httpx.Response]:
    """Run every call at once (shuffled, many threads); answers by (train id, call number)."""
    random.shuffle(calls)
    with ThreadPoolExecutor(32) as pool:
        futures = {(t, n): pool.submit(call) for t, n, call in calls}
        return {key: future.result() for key, future in futures.items()}


def no_server_errors(answers: dict[tuple[str, int], httpx.Response]) -> list[str]:
    return [
        f"{key}: {r.status_code} {r.text[:200]}"
        for key, r in answers.items()
        if r.status_code >= 500
    ]


def hop_url(train_id: str, index: int) -> str:
    return f"/api/v1/trains/{train_id}/hops/{index}"


def test_cancel_racing_the_last_completion_has_one_winner_and_both_told_the_truth(net):
    a = net.stations["hospital-a"]
    trains = [net.submit(["hospital-a"]) for _ in range(TRAINS)]
    offers = net.claim_all("hospital-a")
    assert set(offers) == {m.train_id for m, _ in trains}
    outputs = {m.train_id: output_of(m, d, offers[m.train_id], a, b"A") for m, d in trains}
    calls: list[tuple[str, int, Call]] = []
    for i, train_id in enumerate(outputs):
        out = outputs[train_id]
        calls.append(
            (
                train_id,
                0,
                lambda t=train_id, o=out, i=i: net.client(i).post(
                    f"{hop_url(t, 0)}/result", content=o.body(), headers=auth(net.tokens[a.name])
                ),
            )
        )
        calls.append(
            (
                train_id,
                1,
                lambda t=train_id, i=i: net.client(i + 1).post(
                    f"/api/v1/trains/{t}/cancel", headers=auth(net.tokens["alice"])
                ),
            )
        )
        calls += [  # the researcher watching: every answer is one moment of the train
            (
                train_id,
                n,
                lambda t=train_id, i=i + n: net.client(i).get(
                    f"/api/v1/trains/{t}", headers=auth(net.tokens["alice"])
                ),
            )
            for n in range(2, 6)
        ]
    answers = race(calls)
    problems = no_server_errors(answers)
    seen = {("running", ("running",)), ("done", ("done",)), ("cancelled", ("running",))}
    for (train_id, n), watched in answers.items():
        if n >= 2 and watched.status_code == 200:
            moment = (watched.json()["status"], tuple(h["status"] for h in watched.json()["hops"]))
            if moment not in seen:
                problems.append(f"{train_id}: the researcher saw train and hops {moment}")
    for train_id, out in outputs.items():
        done, cancel = answers[(train_id, 0)], answers[(train_id, 1)]
        status = net.status(train_id)
        result = net.client(0).get(
            f"/api/v1/trains/{train_id}/result", headers=auth(net.tokens["alice"])
        )
        told = done.json().get("train_status") if done.status_code == 200 else None
        if status["status"] == "done":
            consistent = (
                told == "done"
                and cancel.status_code == 409
                and [h["status"] for h in status["hops"]] == ["done"]
                and result.status_code == 200
                and digest_bytes(result.content) == out.digest
                and digest_file(net.blob(train_id, "output-00000.sealed")) == out.digest
            )
        else:
            consistent = (
                status["status"] == "cancelled"
                and cancel.status_code == 200
                and cancel.json() == {"status": "cancelled"}
                and done.status_code == 409
                and "done" not in [h["status"] for h in status["hops"]]
                and result.status_code == 409
            )
        if consistent and status["status"] == "cancelled":
            # the station, refused, reports the hop failed (as station.delivery does)
            reported = net.client(1).post(
                f"{hop_url(train_id, 0)}/fail",
                json={"reason": "central did not accept the output"},
                headers=auth(net.tokens[a.name]),
            )
            after = net.status(train_id)
            consistent = reported.status_code == 204 and (
                after["status"],
                [h["status"] for h in after["hops"]],
            ) == ("cancelled", ["failed"])
        if not consistent:
            problems.append(
                f"{train_id}: train {status['status']} hops {[h['status'] for h in status['hops']]}"
                f"; station told {done.status_code} {told}; cancel {cancel.status_code}; "
                f"result {result.status_code}"
            )
    assert problems == [], f"{len(problems)} of {len(outputs)} trains:\n" + "\n".join(problems)


def test_one_train_submitted_many_times_at_once_is_stored_once(net):
    calls: list[tuple[str, int, Call]] = []
    for _ in range(TRAINS // 4):
        manifest = make_manifest(net.alice, [net.stations["hospital-a"]])
        body = {
            "manifest": sign(manifest, MANIFEST_TYPE, net.alice.signing).model_dump(mode="json")
        }
        calls += [
            (
                manifest.train_id,
                n,
                lambda b=body, c=n: net.client(c).post(
                    "/api/v1/trains", json=b, headers=auth(net.tokens["alice"])
                ),
            )
            for n in range(6)
        ]
    answers = race(calls)
    problems = no_server_errors(answers)
    for train_id in {t for t, _ in answers}:
        codes = sorted(answers[(train_id, n)].status_code for n in range(6))
        if codes != [201] + [409] * 5:
            problems.append(f"{train_id}: answers {codes}")
        elif [h["status"] for h in net.status(train_id)["hops"]] != ["queued"]:
            problems.append(f"{train_id}: not one queued hop")
    assert problems == [], f"{len(problems)} problems:\n" + "\n".join(problems)


def test_a_station_failing_a_hop_while_its_result_is_in_flight_has_one_outcome(net):
    """The station's delivery timed out, so it reports the hop failed, but its ``/result``
    is still in flight: the first wins, the other is refused, and the train agrees."""
    a = net.stations["hospital-a"]
    trains = [net.submit(["hospital-a"]) for _ in range(TRAINS)]
    offers = net.claim_all("hospital-a")
    outputs = {m.train_id: output_of(m, d, offers[m.train_id], a, b"A") for m, d in trains}
    headers = auth(net.tokens[a.name])
    calls: list[tuple[str, int, Call]] = []
    for i, (train_id, out) in enumerate(outputs.items()):
        calls += [
            (
                train_id,
                0,
                lambda t=train_id, o=out, c=i: net.client(c).post(
                    f"{hop_url(t, 0)}/result", content=o.body(), headers=headers
                ),
            ),
            (
                train_id,
                1,
                lambda t=train_id, c=i + 1: net.client(c).post(
                    f"{hop_url(t, 0)}/fail", json={"reason": "timed out"}, headers=headers
                ),
            ),
        ]
    answers = race(calls)
    problems = no_server_errors(answers)
    for train_id, out in outputs.items():
        done, failed = answers[(train_id, 0)], answers[(train_id, 1)]
        status = net.status(train_id)
        moment = (status["status"], [h["status"] for h in status["hops"]])
        if moment == ("done", ["done"]):
            consistent = (
                done.status_code == 200
                and failed.status_code == 409
                and digest_file(net.blob(train_id, "output-00000.sealed")) == out.digest
            )
        else:
            consistent = moment == ("failed", ["failed"]) and (
                failed.status_code,
                done.status_code,
            ) == (204, 409)
        if not consistent:
            problems.append(
                f"{train_id}: {moment}, result {done.status_code}, fail {failed.status_code}"
            )
    assert problems == [], f"{len(problems)} of {len(outputs)} trains:\n" + "\n".join(problems)
