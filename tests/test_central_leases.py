"""Job delivery: long-poll wake-up, leases renewed by heartbeats, expired leases re-offer a
hop up to a limit and then fail the train with a reason (SQLite and PostgreSQL)."""

from __future__ import annotations

import collections
import threading
import time

import pytest
from fastapi.testclient import TestClient

from central.api import create_app
from central.settings import CentralSettings
from tests import test_central_protocol as protocol
from tests.factories import sign_receipt
from tests.test_central_protocol import auth, result_body, run_hop, submit
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE
from trains.signing import sign

database_url = protocol.database_url


@pytest.fixture
def lease_world(tmp_path, database_url):
    settings = CentralSettings(
        data_dir=tmp_path,
        database_url=database_url,
        lease_s=0.4,
        max_attempts=2,
        poll_recheck_s=3600,  # only the doorbell can wake a long poll here
    )
    app = create_app(settings, background=False)
    service = app.state.service
    researcher = Identity.generate("alice")
    stations = [Identity.generate(n) for n in ("hospital-a", "hospital-b")]
    tokens = {"alice": service.register("researcher", researcher.public)}
    for s in stations:
        tokens[s.name] = service.register("station", s.public)
    with TestClient(app) as client:
        yield client, researcher, stations, tokens


def hop_states(client, train_id, token):
    status = client.get(f"/api/v1/trains/{train_id}", headers=auth(token)).json()
    return status, [(h["status"], h["attempts"]) for h in status["hops"]]


def test_a_long_poll_is_answered_as_soon_as_a_hop_is_queued(lease_world):
    client, researcher, stations, tokens = lease_world
    answers = []

    def poll():
        started = time.monotonic()
        response = client.post("/api/v1/hops/next?wait=30", headers=auth(tokens["hospital-a"]))
        answers.append((response, time.monotonic() - started))

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.5)  # the station is waiting; the DB re-check is an hour away
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    waiter.join(timeout=60)
    ((response, waited),) = answers
    assert response.status_code == 200, response.text
    assert response.json()["train_id"] == manifest.train_id
    assert response.json()["lease_s"] == 0.4
    assert waited < 30  # woken by the queueing, not by the end of the wait
    # an empty long poll ends with 204 after its wait
    assert (
        client.post("/api/v1/hops/next?wait=0.2", headers=auth(tokens["hospital-b"])).status_code
        == 204
    )


def test_heartbeats_keep_a_hop_and_an_expired_lease_reoffers_it_then_fails_the_train(lease_world):
    client, researcher, stations, tokens = lease_world
    service = client.app.state.service
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    url = f"/api/v1/trains/{manifest.train_id}/hops/0"
    a = auth(tokens["hospital-a"])
    assert client.post("/api/v1/hops/next", headers=a).status_code == 200
    for _ in range(6):  # 0.9 s of work, over twice the lease, kept alive by heartbeats
        beat = client.post(f"{url}/heartbeat", headers=a)
        assert beat.status_code == 200 and beat.json()["train_status"] == "running"
        time.sleep(0.15)
        assert service.expire_leases() == 0
    # the station goes silent: the hop is offered again, its attempt counted
    time.sleep(0.5)
    assert service.expire_leases() == 1
    assert hop_states(client, manifest.train_id, tokens["alice"])[1][0] == ("queued", 1)
    lost = client.post(f"{url}/heartbeat", headers=a)
    assert lost.status_code == 409 and lost.json()["code"] == "lease_lost"
    # second claim, silent again: the limit (2) is reached and the train fails, saying why
    assert client.post("/api/v1/hops/next", headers=a).status_code == 200
    time.sleep(0.5)
    assert service.expire_leases() == 1
    status, hops = hop_states(client, manifest.train_id, tokens["alice"])
    assert status["status"] == "failed"
    assert hops == [("failed", 2), ("failed", 0)]
    assert "stopped renewing its lease 2 times" in status["error"]
    assert client.post("/api/v1/hops/next", headers=a).status_code == 204


def test_a_reoffered_hop_runs_again_and_the_route_finishes(lease_world):
    client, researcher, stations, tokens = lease_world
    service = client.app.state.service
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    a = auth(tokens["hospital-a"])
    # first attempt: claimed, output uploaded with a receipt central refuses (it signs
    # other bytes), then the station dies before completing
    assert client.post("/api/v1/hops/next", headers=a).status_code == 200
    url = f"/api/v1/trains/{manifest.train_id}/hops/0"
    envelope = sign(manifest, MANIFEST_TYPE, researcher.signing)
    stale = sign_receipt(manifest, envelope.digest, 0, stations[0], [], [], "sha256:" + "0" * 64)
    half = client.post(f"{url}/result", content=result_body(stale, b"half-finished"), headers=a)
    assert half.status_code == 422 and half.json()["code"] == "digest_mismatch"
    time.sleep(0.5)
    assert service.expire_leases() == 1
    # the restarted station runs it afresh (new sealed bytes replace the stale upload)
    run_hop(client, stations[0], tokens["hospital-a"], b"state 0")
    run_hop(client, stations[1], tokens["hospital-b"], b"state 1")
    status, hops = hop_states(client, manifest.train_id, tokens["alice"])
    assert status["status"] == "done"
    assert hops == [("done", 2), ("done", 1)]
    # another station cannot renew a lease that is not its own
    assert client.post(f"{url}/heartbeat", headers=auth(tokens["hospital-b"])).status_code == 404


def test_a_late_result_of_an_expired_but_unclaimed_hop_is_accepted(lease_world):
    """A station without heartbeats runs a container longer than the lease: the hop is
    re-queued meanwhile, but nobody claimed it again, so the signed result still counts."""
    from tests.test_central_processes import StationLoop

    client, researcher, stations, tokens = lease_world
    service = client.app.state.service
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    offer = client.post("/api/v1/hops/next", headers=auth(tokens["hospital-a"]))
    time.sleep(0.5)
    assert service.expire_leases() == 1
    assert hop_states(client, manifest.train_id, tokens["alice"])[1][0] == ("queued", 1)
    client.headers.update(auth(tokens["hospital-a"]))
    StationLoop("", stations[0], tokens["hospital-a"], collections.Counter()).run_hop(
        client, offer.json()
    )
    status, hops = hop_states(client, manifest.train_id, tokens["alice"])
    assert hops == [("done", 1), ("queued", 0)]
    assert status["status"] == "running"
