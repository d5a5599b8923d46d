"""Central's API driven in-process through the whole protocol, with real keys, seals and
receipts (the station's Docker run is replaced by writing the output directly: Docker is
exercised in the end-to-end test)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from central.api import create_app
from central.settings import CentralSettings
from central.testing_pg import database_url_for
from tests.factories import make_manifest
from trains.early_end import sealed_to_after
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE, Manifest, Route, Stop
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt, verify_chain
from trains.sealing import digest_bytes, open_sealed, output_context, seal
from trains.signing import Envelope, sign


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """Every central test runs on SQLite (the default) and on a real PostgreSQL server."""
    return database_url_for(request.param, tmp_path)


@pytest.fixture
def world(tmp_path, database_url):
    app = create_app(CentralSettings(data_dir=tmp_path, database_url=database_url))
    service = app.state.service
    researcher = Identity.generate("alice")
    stations = [Identity.generate(n) for n in ("hospital-a", "hospital-b")]
    tokens = {"alice": service.register("researcher", researcher.public)}
    for s in stations:
        tokens[s.name] = service.register("station", s.public)
    client = TestClient(app)
    return client, researcher, stations, tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def run_hop(
    client,
    station: Identity,
    token: str,
    payload: bytes,
    skipped_because: str | None = None,
    commitment: str | None = None,
    converged: bool = False,
) -> dict:
    """Do what a station does around its container: claim, open inputs, seal, sign, then
    upload and complete in the one request a station daemon sends."""
    offer = client.post("/api/v1/hops/next", headers=auth(token))
    assert offer.status_code == 200, offer.text
    body = offer.json()
    envelope = Envelope.model_validate(body["manifest"])
    manifest = Manifest.model_validate_json(envelope.payload_bytes)
    index = body["hop"]
    assert body["kind"] == manifest.hop(index).kind
    opened = []
    for k, given in enumerate(body["inputs"]):
        got = client.get(
            f"/api/v1/trains/{manifest.train_id}/hops/{index}/inputs/{k}", headers=auth(token)
        )
        assert digest_bytes(got.content) == given["digest"]
        context = output_context(manifest.train_id, given["hop"])
        opened.append(open_sealed(got.content, station.sealing, context))
    recipients = sealed_to_after(manifest, index, converged)
    sealed = seal(payload, recipients, output_context(manifest.train_id, index))
    url = f"/api/v1/trains/{manifest.train_id}/hops/{index}"
    now = datetime.now(UTC)
    receipt = HopReceipt.for_hop(
        HopPredicate(
            train_id=manifest.train_id,
            hop=index,
            round=manifest.hop(index).round,
            kind="skipped" if skipped_because else manifest.hop(index).kind,
            reason=skipped_because,
            station=station.name,
            station_key=station.public.signing_fingerprint,
            manifest_digest=envelope.digest,
            image_digest=manifest.image.digest,
            input_state_digests=[i["digest"] for i in body["inputs"]],
            output_state_digest=digest_bytes(sealed),
            output_commitment=commitment or digest_bytes(payload),
            output_sealed_to=[r.sealing_fingerprint for r in recipients],
            previous_receipt_digests=[
                Envelope.model_validate(r).digest for r in body["previous_receipts"]
            ],
            started_at=now,
            finished_at=now,
            container_seconds=0.0,
            converged=converged,
        )
    )
    signed = sign(receipt, RECEIPT_TYPE, station.signing)
    done = client.post(f"{url}/result", content=result_body(signed, sealed), headers=auth(token))
    if skipped_because is None and not converged:
        assert done.status_code == 200, done.text
    return {"index": index, "receipt": signed, "sealed": sealed, "done": done, "read": opened}


def result_body(receipt: Envelope, sealed: bytes) -> bytes:
    """What ``CentralClient.deliver`` sends: the receipt as one JSON line, then the state."""
    return receipt.model_dump_json().encode() + b"\n" + sealed


def submit(
    client, researcher, stations, token, rounds=1, on_refusal="fail"
) -> tuple[Manifest, Envelope]:
    stops = [Stop(station=s.public) for s in stations]
    route = Route(rounds=rounds, stops=stops, on_refusal=on_refusal)
    manifest = make_manifest(researcher, stations, route=route)
    envelope = sign(manifest, MANIFEST_TYPE, researcher.signing)
    response = client.post(
        "/api/v1/trains", json={"manifest": envelope.model_dump(mode="json")}, headers=auth(token)
    )
    assert response.status_code == 201, response.text
    return manifest, envelope


def test_route_runs_in_order_and_researcher_verifies(world):
    client, researcher, stations, tokens = world
    manifest, envelope = submit(client, researcher, stations, tokens["alice"], rounds=2)
    # only the first stop has work; the second gets nothing yet
    assert client.post("/api/v1/hops/next", headers=auth(tokens["hospital-b"])).status_code == 204
    order = []
    for _ in range(4):
        for s in stations:
            if (
                client.get(
                    f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"])
                ).json()["hops"][len(order)]["station"]
                == s.name
            ):
                order.append(run_hop(client, s, tokens[s.name], f"state {len(order)}".encode()))
                break
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"])).json()
    assert status["status"] == "done"
    receipts = [
        Envelope.model_validate(r)
        for r in client.get(
            f"/api/v1/trains/{manifest.train_id}/receipts", headers=auth(tokens["alice"])
        ).json()
    ]
    final = client.get(f"/api/v1/trains/{manifest.train_id}/result", headers=auth(tokens["alice"]))
    chain = verify_chain(manifest, envelope.digest, None, receipts, digest_bytes(final.content))
    assert [p.station for p in chain] == ["hospital-a", "hospital-b"] * 2
    assert (
        open_sealed(final.content, researcher.sealing, output_context(manifest.train_id, 3))
        == b"state 3"
    )


def test_result_in_one_request_uploads_completes_and_is_safe_to_repeat(world):
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    hop = run_hop(client, stations[0], tokens["hospital-a"], b"first")
    assert hop["done"].json() == {
        "digest": digest_bytes(hop["sealed"]),
        "train_status": "running",
    }
    url = f"/api/v1/trains/{manifest.train_id}/hops/0/result"
    a = auth(tokens["hospital-a"])
    # the same result again (an outbox resending after an outage) is accepted
    again = client.post(url, content=result_body(hop["receipt"], hop["sealed"]), headers=a)
    assert again.status_code == 200, again.text
    # other bytes for the finished hop are refused, and the stored state is unchanged
    other = client.post(url, content=result_body(hop["receipt"], hop["sealed"] + b"x"), headers=a)
    assert other.status_code == 409
    # the next stop reads what hop 0 wrote, and the route finishes
    last = run_hop(client, stations[1], tokens["hospital-b"], b"second")
    assert last["read"] == [b"first"]
    assert last["done"].json()["train_status"] == "done"


def test_a_malformed_result_is_refused_and_the_hop_keeps_running(world):
    client, researcher, stations, tokens = world
    manifest, envelope = submit(client, researcher, stations, tokens["alice"])
    a = auth(tokens["hospital-a"])
    assert client.post("/api/v1/hops/next", headers=a).status_code == 200
    url = f"/api/v1/trains/{manifest.train_id}/hops/0/result"
    no_line = client.post(url, content=b"no newline anywhere", headers=a)
    assert (no_line.status_code, no_line.json()["code"]) == (422, "bad_body")
    not_receipt = client.post(url, content=b'{"hello": 1}\nstate', headers=a)
    assert (not_receipt.status_code, not_receipt.json()["code"]) == (422, "bad_receipt")
    # a receipt signed for other bytes than the body carries
    sealed = seal(b"x", [stations[1].public], output_context(manifest.train_id, 0))
    now = datetime.now(UTC)
    receipt = sign(
        HopReceipt.for_hop(
            HopPredicate(
                train_id=manifest.train_id,
                hop=0,
                round=0,
                kind="local",
                station="hospital-a",
                station_key=stations[0].public.signing_fingerprint,
                manifest_digest=envelope.digest,
                image_digest=manifest.image.digest,
                input_state_digests=[],
                output_state_digest=digest_bytes(sealed + b"other"),
                output_commitment=digest_bytes(b"other"),
                output_sealed_to=[stations[1].public.sealing_fingerprint],
                previous_receipt_digests=[],
                started_at=now,
                finished_at=now,
                container_seconds=0.0,
            )
        ),
        RECEIPT_TYPE,
        stations[0].signing,
    )
    mismatch = client.post(url, content=result_body(receipt, sealed), headers=a)
    assert (mismatch.status_code, mismatch.json()["code"]) == (422, "digest_mismatch")
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"]))
    assert [h["status"] for h in status.json()["hops"]] == ["running", "waiting"]


def test_a_refusing_stop_passes_the_state_on_where_the_route_allows_it(world):
    client, researcher, stations, tokens = world
    manifest, envelope = submit(client, researcher, stations, tokens["alice"], on_refusal="skip")
    skip = run_hop(
        client, stations[0], tokens["hospital-a"], b"", skipped_because="PolicyRejected: no"
    )
    assert skip["done"].status_code == 200, skip["done"].text
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"]))
    first = status.json()["hops"][0]
    assert (first["status"], first["error"]) == ("skipped", "skipped: PolicyRejected: no")
    # the next stop reads what the skipping station passed on, and the route finishes
    last = run_hop(client, stations[1], tokens["hospital-b"], b"only b")
    assert last["read"] == [b""]
    assert last["done"].json()["train_status"] == "done"
    receipts = [
        Envelope.model_validate(r)
        for r in client.get(
            f"/api/v1/trains/{manifest.train_id}/receipts", headers=auth(tokens["alice"])
        ).json()
    ]
    chain = verify_chain(manifest, envelope.digest, None, receipts, digest_bytes(last["sealed"]))
    assert [p.kind for p in chain] == ["skipped", "local"]


def test_a_skip_is_refused_on_a_route_that_fails_refusals(world):
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    skip = run_hop(
        client, stations[0], tokens["hospital-a"], b"", skipped_because="PolicyRejected: no"
    )
    assert skip["done"].status_code == 422
    assert skip["done"].json()["code"] == "skip_not_allowed"
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"]))
    assert [h["status"] for h in status.json()["hops"]] == ["running", "waiting"]


def test_bad_signature_is_refused_at_the_door(world):
    client, researcher, stations, tokens = world
    envelope = sign(make_manifest(researcher, stations), MANIFEST_TYPE, researcher.signing)
    forged = envelope.model_copy(update={"payload": envelope.payload[:-4] + "AAA="})
    response = client.post(
        "/api/v1/trains",
        json={"manifest": forged.model_dump(mode="json")},
        headers=auth(tokens["alice"]),
    )
    assert response.status_code in (403, 422)
    assert set(response.json()) == {"code", "message", "detail"}


def test_station_cannot_act_on_another_stations_hop(world):
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    client.post("/api/v1/hops/next", headers=auth(tokens["hospital-a"]))
    url = f"/api/v1/trains/{manifest.train_id}/hops/0"
    assert (
        client.post(
            f"{url}/result", content=b"{}\nx", headers=auth(tokens["hospital-b"])
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"{url}/fail", json={"reason": "no"}, headers=auth(tokens["hospital-b"])
        ).status_code
        == 404
    )
    # a station may not read a researcher's train, and a researcher may not claim hops
    assert (
        client.get(
            f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["hospital-a"])
        ).status_code
        == 403
    )
    assert client.post("/api/v1/hops/next", headers=auth(tokens["alice"])).status_code == 403
    assert client.get("/api/v1/stations").status_code == 401


def test_failed_hop_fails_the_train_with_the_reason(world):
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    client.post("/api/v1/hops/next", headers=auth(tokens["hospital-a"]))
    client.post(
        f"/api/v1/trains/{manifest.train_id}/hops/0/fail",
        json={"reason": "PolicyRejected: untrusted"},
        headers=auth(tokens["hospital-a"]),
    )
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"])).json()
    assert status["status"] == "failed"
    assert "untrusted" in status["error"]
    assert client.post("/api/v1/hops/next", headers=auth(tokens["hospital-b"])).status_code == 204


def test_cancel_stops_the_route_and_a_late_result_is_refused(world):
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    mine = client.get("/api/v1/trains", headers=auth(tokens["alice"])).json()
    assert [t["train_id"] for t in mine] == [manifest.train_id]
    offered = client.post("/api/v1/hops/next", headers=auth(tokens["hospital-a"]))
    assert offered.status_code == 200
    url = f"/api/v1/trains/{manifest.train_id}"
    assert client.post(f"{url}/cancel", headers=auth(tokens["alice"])).json() == {
        "status": "cancelled"
    }
    assert client.post(f"{url}/cancel", headers=auth(tokens["alice"])).status_code == 409
    # the running hop's station finds the train gone, and hop 1 is never offered
    done = client.post(
        f"{url}/hops/0/fail", json={"reason": "x"}, headers=auth(tokens["hospital-a"])
    )
    assert done.status_code == 204
    assert client.post("/api/v1/hops/next", headers=auth(tokens["hospital-b"])).status_code == 204
    assert client.get(url, headers=auth(tokens["alice"])).json()["status"] == "cancelled"
    # another researcher neither sees nor cancels it
    bob = Identity.generate("bob")
    bob_token = client.app.state.service.register("researcher", bob.public)
    assert client.get("/api/v1/trains", headers=auth(bob_token)).json() == []
    assert client.post(f"{url}/cancel", headers=auth(bob_token)).status_code == 404


def test_a_converged_hop_ends_the_route_and_its_output_is_the_result(world):
    """Issue 15 item 3: the station of a round's last stop signs ``converged``; central
    ends the route there and the researcher verifies the shorter chain."""
    client, researcher, stations, tokens = world
    manifest, envelope = submit(client, researcher, stations, tokens["alice"], rounds=3)
    run_hop(client, stations[0], tokens["hospital-a"], b"round 0, a")
    ended = run_hop(client, stations[1], tokens["hospital-b"], b"converged", converged=True)
    assert ended["done"].status_code == 200, ended["done"].text
    url = f"/api/v1/trains/{manifest.train_id}"
    status = client.get(url, headers=auth(tokens["alice"])).json()
    assert status["status"] == "done"
    assert [h["status"] for h in status["hops"]] == ["done", "done"] + ["not_needed"] * 4
    for s in stations:  # nothing more is offered
        assert client.post("/api/v1/hops/next", headers=auth(tokens[s.name])).status_code == 204
    receipts = [
        Envelope.model_validate(r)
        for r in client.get(f"{url}/receipts", headers=auth(tokens["alice"])).json()
    ]
    final = client.get(f"{url}/result", headers=auth(tokens["alice"]))
    chain = verify_chain(manifest, envelope.digest, None, receipts, digest_bytes(final.content))
    assert len(chain) == 2 and chain[-1].converged
    context = output_context(manifest.train_id, 1)
    assert open_sealed(final.content, researcher.sealing, context) == b"converged"


def test_a_converged_claim_where_the_route_may_not_end_is_refused(world):
    """A station (or a train) cannot end a route mid-round: central refuses the receipt
    and the hop keeps running."""
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"], rounds=2)
    claimed = run_hop(client, stations[0], tokens["hospital-a"], b"early", converged=True)
    assert claimed["done"].status_code == 422
    assert "does not end round 0" in claimed["done"].json()["message"]
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"]))
    assert status.json()["status"] == "running"
