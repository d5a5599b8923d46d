"""Central refuses what a lying station, researcher or client sends: identifiers out of
range, receipts that do not fit the hop, failures from a station that does not hold the
hop, manifests whose times are absurd (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from central.api import create_app
from central.settings import CentralSettings
from tests import test_central_protocol as protocol
from tests.factories import make_manifest, sign_receipt
from tests.test_central_protocol import auth, result_body, submit
from trains.errors import ConfigError
from trains.keys import Identity, PublicIdentity
from trains.manifest import MANIFEST_TYPE
from trains.sealing import digest_bytes, output_context, seal
from trains.signing import sign

database_url = protocol.database_url
world = protocol.world


def hops_of(client, train_id, token):
    status = client.get(f"/api/v1/trains/{train_id}", headers=auth(token)).json()
    return status, [h["status"] for h in status["hops"]]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/trains/{t}/hops/9223372036854775808/heartbeat",
        "/api/v1/trains/{t}/hops/9223372036854775807/heartbeat",
        "/api/v1/trains/{t}/hops/-1/heartbeat",
        "/api/v1/trains/{t}/hops/2147483648/fail",
        "/api/v1/trains/{t}/hops/0/inputs/9223372036854775808",
        "/api/v1/trains/{t}/hops/0/inputs/-1",
        "/api/v1/trains/" + "a" * 5000 + "/hops/0/heartbeat",
        "/api/v1/trains/..%2F..%2Fetc/hops/0/heartbeat",
        "/api/v1/trains/not-a-uuid/hops/0/result",
    ],
)
def test_out_of_range_identifiers_give_422_never_500(world, path):
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    a = auth(tokens["hospital-a"])
    assert client.post("/api/v1/hops/next", headers=a).status_code == 200
    url = path.format(t=manifest.train_id)
    method = "GET" if "/inputs/" in url else "POST"
    response = client.request(method, url, headers=a, json={"reason": "x"})
    if "%2F" in path:  # the server decodes the slashes: no route has that shape
        assert response.status_code == 404, response.text
        return
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize(
    "path", ["/api/v1/trains/" + "a" * 5000, "/api/v1/trains/x'); DROP TABLE hops;--/cancel"]
)
def test_a_researcher_path_with_a_hostile_train_id_gives_422(world, path):
    client, _, _, tokens = world
    method = "POST" if path.endswith("/cancel") else "GET"
    response = client.request(method, path, headers=auth(tokens["alice"]))
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "train_id", ["../../../../tmp/x/PWNED", "x'); DROP TABLE hops;--", "a" * 5000, ""]
)
def test_a_manifest_whose_train_id_is_not_a_uuid_is_refused(world, train_id):
    client, researcher, stations, tokens = world
    with pytest.raises(ValueError, match="train_id"):
        make_manifest(researcher, stations, train_id=train_id)
    # signed anyway, bypassing the model: central refuses it at the door
    hostile = make_manifest(researcher, stations).model_copy(update={"train_id": train_id})
    envelope = sign(hostile, MANIFEST_TYPE, researcher.signing)
    response = client.post(
        "/api/v1/trains",
        json={"manifest": envelope.model_dump(mode="json")},
        headers=auth(tokens["alice"]),
    )
    assert response.status_code == 422, response.text


# -- receipts that do not fit the hop: 422, and the hop keeps running ---------------------


def _receipts(manifest, envelope, stations, outsider, sealed):
    """(the honest receipt's fields, each lie's fields)."""
    digest = digest_bytes(sealed)
    good = dict(
        manifest=manifest,
        manifest_digest=envelope.digest,
        index=0,
        signer=stations[0],
        inputs=[],
        previous=[],
        output=digest,
    )
    b = stations[1].public.sealing_fingerprint
    return good, {
        "manifest_digest": {**good, "manifest_digest": "sha256:" + "1" * 64},
        "image_digest": {**good, "image_digest": "sha256:" + "2" * 64},
        "round": {**good, "round": 1},
        "kind": {**good, "kind": "aggregate"},
        "station": {**good, "station": "hospital-b"},
        "station_key": {**good, "station_key": stations[1].public.signing_fingerprint},
        "signer": {**good, "signer": outsider},
        "recipients_extra": {**good, "output_sealed_to": [b, outsider.public.sealing_fingerprint]},
        "recipients_other": {**good, "output_sealed_to": [outsider.public.sealing_fingerprint]},
        "recipients_none": {**good, "output_sealed_to": []},
        "recipients_twice": {**good, "output_sealed_to": [b, b]},
        "hop": {**good, "hop": 1},
        "train": {**good, "train_id": "00000000-0000-4000-8000-000000000000"},
    }


@pytest.mark.parametrize(
    "lie",
    [
        "manifest_digest",
        "image_digest",
        "round",
        "kind",
        "station",
        "station_key",
        "signer",
        "recipients_extra",
        "recipients_other",
        "recipients_none",
        "recipients_twice",
        "hop",
        "train",
    ],
)
def test_an_inconsistent_receipt_is_refused_and_the_hop_stays_running(world, lie):
    client, researcher, stations, tokens = world
    manifest, envelope = submit(client, researcher, stations, tokens["alice"])
    a = auth(tokens["hospital-a"])
    assert client.post("/api/v1/hops/next", headers=a).status_code == 200
    outsider = Identity.generate("hospital-a")  # same name, other keys
    sealed = seal(b"state", [stations[1].public], output_context(manifest.train_id, 0))
    good, lies = _receipts(manifest, envelope, stations, outsider, sealed)
    receipt = sign_receipt(**lies[lie])
    url = f"/api/v1/trains/{manifest.train_id}/hops/0/result"
    response = client.post(url, content=result_body(receipt, sealed), headers=a)
    assert response.status_code == 422, response.text
    status, states = hops_of(client, manifest.train_id, tokens["alice"])
    assert states == ["running", "waiting"] and status["error"] is None
    # the honest receipt still completes the hop
    honest = sign_receipt(**good)
    assert client.post(url, content=result_body(honest, sealed), headers=a).status_code == 200
    assert hops_of(client, manifest.train_id, tokens["alice"])[1] == ["done", "queued"]


# -- /fail: only the station holding the hop's live lease ----------------------------------


def test_a_station_cannot_fail_its_hop_before_its_turn(world):
    client, researcher, stations, tokens = world
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    b = auth(tokens["hospital-b"])
    early = client.post(
        f"/api/v1/trains/{manifest.train_id}/hops/1/fail", json={"reason": "I say so"}, headers=b
    )
    assert early.status_code == 409, early.text
    status, states = hops_of(client, manifest.train_id, tokens["alice"])
    assert states == ["queued", "waiting"] and status["error"] is None
    # hop 0 then fails for real; a later /fail of hop 1 blames no one else
    a = auth(tokens["hospital-a"])
    assert client.post("/api/v1/hops/next", headers=a).status_code == 200
    real = client.post(
        f"/api/v1/trains/{manifest.train_id}/hops/0/fail", json={"reason": "real"}, headers=a
    )
    assert real.status_code == 204
    late = client.post(
        f"/api/v1/trains/{manifest.train_id}/hops/1/fail", json={"reason": "blame"}, headers=b
    )
    assert late.status_code == 409
    status, states = hops_of(client, manifest.train_id, tokens["alice"])
    assert states == ["failed", "failed"]
    assert status["error"] == "hop 0 at hospital-a: real"


def test_a_station_whose_lease_ran_out_cannot_fail_the_hop(tmp_path, database_url):
    settings = CentralSettings(data_dir=tmp_path, database_url=database_url, lease_s=0.3)
    app = create_app(settings, background=False)
    service = app.state.service
    researcher = Identity.generate("alice")
    stations = [Identity.generate(n) for n in ("hospital-a", "hospital-b")]
    tokens = {"alice": service.register("researcher", researcher.public)}
    for s in stations:
        tokens[s.name] = service.register("station", s.public)
    client = TestClient(app)
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    a = auth(tokens["hospital-a"])
    assert client.post("/api/v1/hops/next", headers=a).status_code == 200
    time.sleep(0.4)
    assert service.expire_leases() == 1  # the hop is queued again, nobody holds it
    stale = client.post(
        f"/api/v1/trains/{manifest.train_id}/hops/0/fail", json={"reason": "stale"}, headers=a
    )
    assert stale.status_code == 409, stale.text
    status, states = hops_of(client, manifest.train_id, tokens["alice"])
    assert states == ["queued", "waiting"] and status["error"] is None


# -- time ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "times",
    [
        "year_9999",
        "created_in_2099",
        "created_beyond_skew",
        "lifetime_over_max",
    ],
)
def test_absurd_manifest_times_are_refused_at_submit(world, times):
    client, researcher, stations, tokens = world
    now = datetime.now(UTC).replace(microsecond=0)
    created, expires = {
        "year_9999": (now, datetime(9999, 12, 31, tzinfo=UTC)),
        "created_in_2099": (datetime(2099, 1, 1, tzinfo=UTC), datetime(2099, 1, 2, tzinfo=UTC)),
        "created_beyond_skew": (now + timedelta(minutes=10), now + timedelta(days=1)),
        "lifetime_over_max": (now, now + timedelta(days=31)),
    }[times]
    manifest = make_manifest(researcher, stations).model_copy(
        update={"created_at": created, "expires_at": expires}
    )
    envelope = sign(manifest, MANIFEST_TYPE, researcher.signing)
    response = client.post(
        "/api/v1/trains",
        json={"manifest": envelope.model_dump(mode="json")},
        headers=auth(tokens["alice"]),
    )
    assert response.status_code == 422, response.text
    # within the allowance (a clock a little ahead) it is accepted
    ok = make_manifest(
        researcher,
        stations,
        created_at=now + timedelta(minutes=2),
        expires_at=now + timedelta(days=29),
    )
    good = sign(ok, MANIFEST_TYPE, researcher.signing)
    accepted = client.post(
        "/api/v1/trains",
        json={"manifest": good.model_dump(mode="json")},
        headers=auth(tokens["alice"]),
    )
    assert accepted.status_code == 201, accepted.text


# -- names: one pattern in the keys, the admin API, the operator CLI and station.toml -------

BAD_NAMES = ["Hospital-A", "../evil", "a/b", "x\n", "-lead", "a" * 64, "", "rtl\u202egpj"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_one_name_pattern_everywhere(world, tmp_path, name):
    from central.cli import main as central_cli
    from station.config import StationInfo

    client, _, _, _ = world
    with pytest.raises(ConfigError, match="not a valid name"):
        Identity.generate(name)
    with pytest.raises(ValueError, match="name"):
        PublicIdentity.model_validate({**Identity.generate("x").public.model_dump(), "name": name})
    with pytest.raises(ValueError, match="name"):
        StationInfo(name=name, central_url="http://127.0.0.1:1")
    admin = client.app.state.service.identities.register("admin", "root")
    good = Identity.generate("fine").public.model_dump()
    for body in (
        {"role": "admin", "name": name},
        {"role": "station", "name": name, "identity": {**good, "name": name}},
    ):
        refused = client.post("/api/v1/admin/parties", json=body, headers=auth(admin))
        assert refused.status_code == 422, refused.text
    public = tmp_path / "public.json"
    public.write_text(json.dumps({**good, "name": name}))
    data = ["--data-dir", str(tmp_path / "cli")]
    assert central_cli(["admin", "add-station", *data, str(public)]) == 1
    assert central_cli(["admin", "add-admin", *data, "--", name]) == 1
    assert central_cli(["admin", "add-admin", *data, "fine-admin"]) == 0
