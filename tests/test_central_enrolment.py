"""Central stores and serves what the network root signed, and cannot make it: the admin
API and the operator CLI take enrolment statements and revocation lists, refuse ones that
do not fit, and /api/v1/stations serves them (on SQLite and on PostgreSQL)."""

from __future__ import annotations

from central.cli import main as central_cli
from tests import test_central_protocol as protocol
from tests.test_central_protocol import auth
from trains.enrolment import NetworkRoot, StationDirectory, enrol, open_revocations, revoke
from trains.keys import Identity

database_url = protocol.database_url
world = protocol.world


def test_admin_api_stores_statements_and_stations_serves_them(world):
    client, _, stations, tokens = world
    service = client.app.state.service
    admin = auth(service.identities.register("admin", "root"))
    root = NetworkRoot.generate("consortium")
    ward = Identity.generate("ward-7")
    made = client.post(
        "/api/v1/admin/parties",
        json={
            "role": "station",
            "name": "ward-7",
            "identity": ward.public.model_dump(),
            "enrolment": enrol(root, ward.public, 30).model_dump(mode="json"),
        },
        headers=admin,
    )
    assert made.status_code == 201, made.text
    # a statement for other keys is refused (an operator's mix-up, or a swap)
    other = Identity.generate("ward-8")
    mixed = client.post(
        "/api/v1/admin/parties",
        json={
            "role": "station",
            "name": "ward-8",
            "identity": other.public.model_dump(),
            "enrolment": enrol(root, ward.public, 30).model_dump(mode="json"),
        },
        headers=admin,
    )
    assert mixed.status_code == 422 and mixed.json()["code"] == "enrolment_invalid"
    # a renewed statement for hospital-a (registered without one)
    renewal = enrol(root, stations[0].public, 60)
    renewed = client.put(
        "/api/v1/admin/enrolments", json=renewal.model_dump(mode="json"), headers=admin
    )
    assert renewed.status_code == 200, renewed.text
    first = revoke(root, None, "ward-9")
    assert client.put(
        "/api/v1/admin/revocations", json=first.model_dump(mode="json"), headers=admin
    ).json() == {"serial": 1}
    stale = client.put(
        "/api/v1/admin/revocations", json=first.model_dump(mode="json"), headers=admin
    )
    assert stale.status_code == 409  # no going back to an older (or the same) list
    # only admins store anything
    assert (
        client.put(
            "/api/v1/admin/revocations",
            json=revoke(
                root, open_revocations(first, root.public.signing_fingerprint), "x"
            ).model_dump(mode="json"),
            headers=auth(tokens["alice"]),
        ).status_code
        == 403
    )
    served = StationDirectory.model_validate_json(
        client.get("/api/v1/stations", headers=auth(tokens["alice"])).content
    )
    by_name = {entry.identity.name: entry for entry in served.stations}
    assert by_name["ward-7"].enrolment is not None and by_name["hospital-b"].enrolment is None
    assert by_name["hospital-a"].enrolment == renewal
    assert served.revocations == first


def test_operator_cli_takes_enrolment_and_revocations(tmp_path, capsys):
    data = ["--data-dir", str(tmp_path)]
    root = NetworkRoot.generate("consortium")
    ward = Identity.generate("ward-1")
    ward.save(tmp_path / "keys")
    statement = tmp_path / "ward-1.enrolment.json"
    statement.write_text(enrol(root, ward.public, 30).model_dump_json())
    public = str(tmp_path / "keys" / "public.json")
    assert central_cli(["admin", "add-station", *data, public, "--enrolment", str(statement)]) == 0
    assert "enrolled by the network root" in capsys.readouterr().out
    foreign = tmp_path / "foreign.json"
    foreign.write_text(enrol(root, Identity.generate("ward-1").public, 30).model_dump_json())
    assert central_cli(["admin", "set-enrolment", *data, str(foreign)]) == 1
    assert "ask the root holder to enrol" in capsys.readouterr().err
    listing = tmp_path / "revocations.json"
    listing.write_text(revoke(root, None, "ward-2").model_dump_json())
    assert central_cli(["admin", "set-revocations", *data, str(listing)]) == 0
    assert central_cli(["admin", "set-revocations", *data, str(listing)]) == 1
    assert "central holds revocation list 1" in capsys.readouterr().err
