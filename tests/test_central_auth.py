"""Identity and access, by attack: every role tries every endpoint on someone else's train
or hop, with unknown, revoked and expired tokens too. Each gets 401, 403 or 404 — never a
500, never the data — and the train is untouched afterwards."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from central.api import create_app
from central.cli import main as central_cli
from central.db import make_engine, make_sessions, utcnow
from central.service import Service
from central.settings import CentralSettings
from tests import test_central_protocol as protocol
from tests.factories import make_manifest
from tests.test_central_protocol import auth, run_hop, submit
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE
from trains.sealing import output_context, seal
from trains.signing import sign

database_url = protocol.database_url  # every test on SQLite and on PostgreSQL
world = protocol.world

TRAIN_ENDPOINTS = [
    ("GET", "/api/v1/trains/{t}"),
    ("GET", "/api/v1/trains/{t}/manifest"),
    ("GET", "/api/v1/trains/{t}/receipts"),
    ("GET", "/api/v1/trains/{t}/result"),
    ("POST", "/api/v1/trains/{t}/cancel"),
    ("PUT", "/api/v1/trains/{t}/initial-state"),
]
HOP_ENDPOINTS = [
    ("GET", "/api/v1/trains/{t}/hops/0/inputs/0"),
    ("POST", "/api/v1/trains/{t}/hops/0/result"),
    ("POST", "/api/v1/trains/{t}/hops/0/fail"),
    ("POST", "/api/v1/trains/{t}/hops/0/heartbeat"),
]
ADMIN_ENDPOINTS = [
    ("GET", "/api/v1/admin/parties"),
    ("POST", "/api/v1/admin/parties"),
    ("POST", "/api/v1/admin/parties/researcher/alice/revoke"),
]


def call(client, method, path, token, envelope):
    headers = {} if token is None else auth(token)
    if method == "PUT":
        return client.request(method, path, content=b"stolen", headers=headers)
    if path.endswith("/result"):
        line = envelope.model_dump_json().encode() + b"\n"
        return client.request(method, path, content=line + b"stolen", headers=headers)
    # each body the route's message model accepts, so only the caller is refused
    body = {"reason": "x"} if path.endswith("/fail") else {"role": "admin", "name": "eve"}
    if path.endswith("/api/v1/trains"):
        body = {"manifest": envelope.model_dump(mode="json")}
    return client.request(method, path, json=body, headers=headers)


@pytest.fixture
def scene(world):
    """alice's train with an initial state, hop 0 claimed by hospital-a; many outsiders."""
    client, researcher, stations, tokens = world
    service = client.app.state.service
    manifest = make_manifest(researcher, stations)
    envelope = sign(manifest, MANIFEST_TYPE, researcher.signing)
    train_id = client.app.state.service.submit(
        service.authenticate(tokens["alice"]), envelope, has_initial_state=True
    )
    state = seal(b"initial", [stations[0].public], output_context(train_id, None))
    assert (
        client.put(
            f"/api/v1/trains/{train_id}/initial-state", content=state, headers=auth(tokens["alice"])
        ).status_code
        == 204
    )
    assert client.post("/api/v1/hops/next", headers=auth(tokens["hospital-a"])).status_code == 200
    outsiders = {
        "bob (other researcher)": service.register("researcher", Identity.generate("bob").public),
        "hospital-b (other station)": tokens["hospital-b"],
        "admin": service.identities.register("admin", "root"),
        "anonymous": None,
        "garbage token": "pht_res_not-a-token",
    }
    revoked = service.register("researcher", Identity.generate("mallory").public)
    service.identities.revoke("mallory")
    outsiders["revoked researcher"] = revoked
    return client, tokens, train_id, envelope, outsiders


def test_every_forbidden_combination_is_refused_without_data(scene):
    client, tokens, train_id, envelope, outsiders = scene
    attempts = []
    # researcher endpoints on alice's train: any other caller, and the hop's own station
    for who, token in {**outsiders, "hospital-a (station)": tokens["hospital-a"]}.items():
        for method, path in TRAIN_ENDPOINTS + ADMIN_ENDPOINTS * (who != "admin"):
            attempts.append((who, method, path.format(t=train_id), token))
    # station endpoints on hospital-a's hop: any other caller, alice included
    for who, token in {**outsiders, "alice (owner, not a station)": tokens["alice"]}.items():
        for method, path in HOP_ENDPOINTS:
            attempts.append((who, method, path.format(t=train_id), token))
        if not who.startswith("hospital"):
            attempts.append((who, "POST", "/api/v1/hops/next", token))
    # stations and researchers may not administer
    for who in ("alice", "hospital-a"):
        for method, path in ADMIN_ENDPOINTS:
            attempts.append((who, method, path, tokens[who]))
    failures = []
    for who, method, path, token in attempts:
        response = call(client, method, path, token, envelope)
        leaked = envelope.payload[:60] in response.text or "initial" in response.text
        if response.status_code not in (401, 403, 404) or leaked:
            failures.append(f"{who}: {method} {path} -> {response.status_code} {response.text}")
        assert set(response.json()) == {"code", "message", "detail"}
    assert not failures, "\n".join(failures)
    assert len(attempts) > 80
    # nothing changed: hop 0 still runs at hospital-a, alice still sees her train
    status = client.get(f"/api/v1/trains/{train_id}", headers=auth(tokens["alice"])).json()
    assert status["status"] == "running"
    assert [h["status"] for h in status["hops"]] == ["running", "waiting"]
    assert client.get("/api/v1/admin/parties", headers=auth(tokens["alice"])).status_code == 403


def test_other_researchers_list_is_empty_and_a_station_gets_no_foreign_hop(scene):
    client, tokens, _, _, outsiders = scene
    bob = outsiders["bob (other researcher)"]
    assert client.get("/api/v1/trains", headers=auth(bob)).json() == []
    assert client.post("/api/v1/hops/next", headers=auth(tokens["hospital-b"])).status_code == 204


def test_admin_manages_identities_over_http_and_revocation_is_immediate(world):
    client, researcher, stations, tokens = world
    service = client.app.state.service
    root = auth(service.identities.register("admin", "root"))
    carol = Identity.generate("carol")
    made = client.post(
        "/api/v1/admin/parties",
        json={"role": "researcher", "name": "carol", "identity": carol.public.model_dump()},
        headers=root,
    )
    assert made.status_code == 201, made.text
    carol_token = made.json()["token"]
    assert client.get("/api/v1/me", headers=auth(carol_token)).json() == {
        "role": "researcher",
        "name": "carol",
    }
    listed = client.get("/api/v1/admin/parties", headers=root)
    assert {p["name"] for p in listed.json()} >= {"alice", "carol", "root", "hospital-a"}
    assert "token" not in listed.text and carol_token not in listed.text
    again = client.post(
        "/api/v1/admin/parties", json={"role": "researcher", "name": "carol"}, headers=root
    )
    assert again.status_code == 422  # a researcher needs keys
    # the admin can neither read a train nor claim a hop
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    assert client.get(f"/api/v1/trains/{manifest.train_id}", headers=root).status_code == 403
    assert client.post("/api/v1/hops/next", headers=root).status_code == 403
    # revoke: the next request with that token is refused
    revoked = client.post("/api/v1/admin/parties/researcher/carol/revoke", headers=root)
    assert revoked.status_code == 200
    assert client.get("/api/v1/me", headers=auth(carol_token)).status_code == 401
    # a revoked station cannot be routed to any more
    client.post("/api/v1/admin/parties/station/hospital-b/revoke", headers=root)
    envelope = sign(make_manifest(researcher, stations), MANIFEST_TYPE, researcher.signing)
    refused = client.post(
        "/api/v1/trains",
        json={"manifest": envelope.model_dump(mode="json")},
        headers=auth(tokens["alice"]),
    )
    assert refused.status_code == 422 and refused.json()["code"] == "unknown_station"


def test_a_revocation_by_another_process_is_heard_within_the_token_cache(world, tmp_path):
    """``pht-central admin revoke`` writes the database while central serves: central, which
    remembers a token that worked for ``token_cache_s``, refuses it once that passed."""
    client, *_ = world
    service = client.app.state.service
    now = [1000.0]
    service.identities.cache.clock = lambda: now[0]
    token = service.register("researcher", Identity.generate("erin").public)
    assert client.get("/api/v1/me", headers=auth(token)).status_code == 200
    url = str(service.sessions.kw["bind"].url.render_as_string(hide_password=False))
    assert (
        central_cli(["admin", "revoke", "--data-dir", str(tmp_path), "--database-url", url, "erin"])
        == 0
    )
    assert client.get("/api/v1/me", headers=auth(token)).status_code == 200  # within 1 s
    now[0] += service.identities.cache.ttl_s
    assert client.get("/api/v1/me", headers=auth(token)).status_code == 401


def test_without_the_token_cache_a_revocation_elsewhere_is_immediate(tmp_path, database_url):
    app = create_app(CentralSettings(data_dir=tmp_path, database_url=database_url, token_cache_s=0))
    client = TestClient(app)
    token = app.state.service.register("researcher", Identity.generate("erin").public)
    assert client.get("/api/v1/me", headers=auth(token)).status_code == 200
    other = Service(make_sessions(make_engine(database_url)))  # another process's view
    other.identities.revoke("erin")
    assert client.get("/api/v1/me", headers=auth(token)).status_code == 401


def test_an_expired_token_is_refused(world):
    client, *_ = world
    service = client.app.state.service
    soon = utcnow() + timedelta(seconds=1)
    token = service.register("researcher", Identity.generate("dave").public, soon)
    assert client.get("/api/v1/me", headers=auth(token)).status_code == 200
    time.sleep(1.2)
    response = client.get("/api/v1/me", headers=auth(token))
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


def test_operator_cli_adds_lists_and_revokes(tmp_path, capsys):
    data = ["--data-dir", str(tmp_path)]
    assert central_cli(["admin", "add-admin", *data, "root", "--expires-days", "30"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("pht_adm_")
    public = tmp_path / "alice.json"
    public.write_text(Identity.generate("alice").public.model_dump_json())
    assert central_cli(["admin", "add-researcher", *data, str(public)]) == 0
    capsys.readouterr()
    assert central_cli(["admin", "list", *data]) == 0
    listing = capsys.readouterr().out
    assert "root" in listing and "alice" in listing and token not in listing
    assert central_cli(["admin", "revoke", *data, "alice"]) == 0
    assert central_cli(["admin", "revoke", *data, "alice"]) == 1
    assert "no active party" in capsys.readouterr().err.replace(
        "an active party", "no active party"
    )
    assert central_cli(["admin", "list", *data]) == 0
    assert "revoked" in capsys.readouterr().out


def test_a_station_cannot_run_another_stations_queued_hop(world):
    """hospital-b cannot claim, read or complete hop 0 even after hospital-a gives it up."""
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    with pytest.raises(AssertionError):
        run_hop(client, stations[1], tokens["hospital-b"], b"forged")
    status = client.get(f"/api/v1/trains/{manifest.train_id}", headers=auth(tokens["alice"]))
    assert status.json()["hops"][0]["status"] == "queued"
