"""Central routes a parallel train in-process through the whole protocol (real keys, seals
and receipts; the station's container is replaced by writing the output directly), on
SQLite and on PostgreSQL; and central fails a train whose manifest has expired."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from central.api import create_app
from central.settings import CentralSettings
from tests.factories import make_parallel_manifest
from tests.test_central_protocol import auth, database_url, run_hop  # noqa: F401 - fixture
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE
from trains.receipt import verify_chain
from trains.sealing import digest_bytes, open_sealed, output_context
from trains.signing import Envelope, sign


@pytest.fixture
def world(tmp_path, database_url):  # noqa: F811 - the shared fixture
    app = create_app(CentralSettings(data_dir=tmp_path, database_url=database_url))
    service = app.state.service
    alice = Identity.generate("alice")
    stations = {n: Identity.generate(n) for n in ("par-a", "par-b", "par-c", "par-agg")}
    tokens = {"alice": service.register("researcher", alice.public)}
    for name, identity in stations.items():
        tokens[name] = service.register("station", identity.public)
    return TestClient(app), alice, stations, tokens


def submit(client, alice, stations, token, rounds=2, **overrides):
    manifest = make_parallel_manifest(
        alice,
        [stations[n] for n in ("par-a", "par-b", "par-c")],
        stations["par-agg"],
        rounds=rounds,
        **overrides,
    )
    envelope = sign(manifest, MANIFEST_TYPE, alice.signing)
    response = client.post(
        "/api/v1/trains", json={"manifest": envelope.model_dump(mode="json")}, headers=auth(token)
    )
    assert response.status_code == 201, response.text
    return manifest, envelope


def offered(client, token) -> int:
    return client.post("/api/v1/hops/next", headers=auth(token)).status_code


def test_a_parallel_train_fans_out_joins_and_verifies(world):
    client, alice, stations, tokens = world
    manifest, envelope = submit(client, alice, stations, tokens["alice"])
    url = f"/api/v1/trains/{manifest.train_id}"
    locals_ = ("par-a", "par-b", "par-c")
    # round 0: every stop has work at once; the aggregator has none yet
    assert offered(client, tokens["par-agg"]) == 204
    hops = client.get(url, headers=auth(tokens["alice"])).json()["hops"]
    assert [h["status"] for h in hops[:4]] == ["queued", "queued", "queued", "waiting"]
    assert [h["kind"] for h in hops[:4]] == ["local"] * 3 + ["aggregate"]
    partials = {}
    for name in ("par-c", "par-a"):
        partials[name] = run_hop(client, stations[name], tokens[name], name.encode())
    assert offered(client, tokens["par-agg"]) == 204  # still one partial missing
    partials["par-b"] = run_hop(client, stations["par-b"], tokens["par-b"], b"par-b")
    # the aggregator reads every partial, in the route's stop order, each sealed to it only
    joined = run_hop(client, stations["par-agg"], tokens["par-agg"], b"mean of round 0")
    assert joined["index"] == 3
    assert joined["read"] == [b"par-a", b"par-b", b"par-c"]
    # a partial was sealed to the aggregator only: its own station cannot open it again
    with pytest.raises(Exception, match="not sealed to our key"):
        open_sealed(
            partials["par-a"]["sealed"],
            stations["par-a"].sealing,
            output_context(manifest.train_id, 0),
        )
    # round 1: every stop reads the one aggregate, sealed once to all of them
    for name in locals_:
        hop = run_hop(client, stations[name], tokens[name], f"{name} r1".encode())
        assert hop["read"] == [b"mean of round 0"]
    final_hop = run_hop(client, stations["par-agg"], tokens["par-agg"], b"final mean")
    assert final_hop["read"] == [f"{n} r1".encode() for n in locals_]
    status = client.get(url, headers=auth(tokens["alice"])).json()
    assert status["status"] == "done"
    receipts = [
        Envelope.model_validate(r)
        for r in client.get(f"{url}/receipts", headers=auth(tokens["alice"])).json()
    ]
    final = client.get(f"{url}/result", headers=auth(tokens["alice"]))
    chain = verify_chain(manifest, envelope.digest, None, receipts, digest_bytes(final.content))
    assert [p.kind for p in chain] == (["local"] * 3 + ["aggregate"]) * 2
    opened = open_sealed(final.content, alice.sealing, output_context(manifest.train_id, 7))
    assert opened == b"final mean"


def test_an_aggregate_hop_reads_its_inputs_by_position_and_only_its_station(world):
    client, alice, stations, tokens = world
    manifest, _ = submit(client, alice, stations, tokens["alice"], rounds=1)
    for name in ("par-a", "par-b", "par-c"):
        run_hop(client, stations[name], tokens[name], name.encode())
    body = client.post("/api/v1/hops/next", headers=auth(tokens["par-agg"])).json()
    assert body["kind"] == "aggregate" and [i["hop"] for i in body["inputs"]] == [0, 1, 2]
    assert len(body["previous_receipts"]) == 3
    assert set(body) == {
        "train_id",
        "hop",
        "kind",
        "manifest",
        "inputs",
        "previous_receipts",
        "skip_trail",
        "lease_s",
    }
    own = client.get(
        f"/api/v1/trains/{manifest.train_id}/hops/3/inputs/2", headers=auth(tokens["par-agg"])
    )
    assert digest_bytes(own.content) == body["inputs"][2]["digest"]
    beyond = client.get(
        f"/api/v1/trains/{manifest.train_id}/hops/3/inputs/3", headers=auth(tokens["par-agg"])
    )
    assert beyond.status_code == 404
    # a stop of the route cannot fetch the aggregator's inputs (the other partials)
    peek = client.get(
        f"/api/v1/trains/{manifest.train_id}/hops/3/inputs/1", headers=auth(tokens["par-a"])
    )
    assert peek.status_code == 404


def test_a_failed_partial_fails_the_train_and_the_aggregate_is_never_offered(world):
    client, alice, stations, tokens = world
    manifest, _ = submit(client, alice, stations, tokens["alice"], rounds=1)
    run_hop(client, stations["par-a"], tokens["par-a"], b"a")
    assert offered(client, tokens["par-b"]) == 200
    client.post(
        f"/api/v1/trains/{manifest.train_id}/hops/1/fail",
        json={"reason": "PolicyRejected: no"},
        headers=auth(tokens["par-b"]),
    )
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"])).json()
    assert status["status"] == "failed" and "hop 1 at par-b" in status["error"]
    assert offered(client, tokens["par-c"]) == 204
    assert offered(client, tokens["par-agg"]) == 204


def _expire(client, train_id: str) -> None:
    """Move the train's expiry into the past (waiting for a real expiry would take minutes;
    the manifest's own expires_at is what central copied into this column)."""
    from sqlalchemy import update

    from central.db import TrainRow

    service = client.app.state.service
    with service.sessions.begin() as db:
        db.execute(
            update(TrainRow)
            .where(TrainRow.id == train_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_an_expired_train_is_failed_by_the_sweep_and_its_hops_are_no_longer_offered(world):
    client, alice, stations, tokens = world
    manifest, _ = submit(client, alice, stations, tokens["alice"], rounds=1)
    run_hop(client, stations["par-a"], tokens["par-a"], b"a")
    _expire(client, manifest.train_id)
    # past its expiry, a queued hop is not offered even before the sweep runs
    assert offered(client, tokens["par-b"]) == 204
    service = client.app.state.service
    assert service.expire_trains() == 1
    assert service.expire_trains() == 0  # once
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"])).json()
    assert status["status"] == "failed"
    assert status["error"].startswith("expired")
    assert "--days" in status["error"]
    assert [h["status"] for h in status["hops"]] == ["done", "failed", "failed", "failed"]


def test_the_background_sweep_expires_trains_when_central_serves(tmp_path):
    settings = CentralSettings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/c.db", lease_check_s=0.1
    )
    app = create_app(settings, background=True)
    service = app.state.service
    alice = Identity.generate("alice")
    stations = {n: Identity.generate(n) for n in ("par-a", "par-b", "par-c", "par-agg")}
    token = service.register("researcher", alice.public)
    for identity in stations.values():
        service.register("station", identity.public)
    with TestClient(app) as client:  # runs the lifespan: the background tasks
        manifest, _ = submit(client, alice, stations, token, rounds=1)
        _expire(client, manifest.train_id)
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        status = {}
        while datetime.now(UTC) < deadline:
            status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(token)).json()
            if status["status"] == "failed":
                break
            time.sleep(0.05)
        assert status["status"] == "failed", json.dumps(status)
        assert status["error"].startswith("expired")
