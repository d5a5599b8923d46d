"""Central records when each station last asked for work and the version it reports, and the
operator's dashboard shows both (issue 14: stations with last seen and version).

A station that has nothing to do still polls: its "last seen" must move with the polls, not
only with claimed hops. The version is the station's own word (a header), so it is stored
only when it looks like a version, never echoed raw."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from central.dashboard import queries
from central.db import Party, utcnow
from tests import test_central_protocol as protocol
from tests.test_central_dashboard_auth import log_in
from tests.test_central_protocol import auth

database_url = protocol.database_url
world = protocol.world


def station_row(client, name: str) -> Party:
    with client.app.state.service.reads() as db:
        return db.scalars(select(Party).where(Party.name == name)).one()


def poll(client, token: str, version: str | None):
    headers = auth(token) | ({"X-PHT-Version": version} if version is not None else {})
    return client.post("/api/v1/hops/next", headers=headers)


def test_an_idle_station_is_seen_when_it_polls_and_its_version_is_shown(world):
    client, _, _, tokens = world
    service = client.app.state.service
    before = utcnow() - timedelta(seconds=1)
    answer = poll(client, tokens["hospital-b"], "0.1.0")
    assert answer.status_code in (200, 204)
    row = station_row(client, "hospital-b")
    assert row.version == "0.1.0"
    assert row.last_seen_at is not None and row.last_seen_at >= before.replace(tzinfo=None)
    listed = {s["name"]: s for s in queries.stations(service)}
    assert listed["hospital-b"]["version"] == "0.1.0"
    assert listed["hospital-b"]["last_seen"] is not None
    tokens["root"] = service.identities.register("admin", "root")
    log_in(client, tokens["root"])
    page = client.get("/dashboard/stations").text
    assert "0.1.0" in page


def test_a_version_that_is_not_one_is_not_stored(world):
    client, _, _, tokens = world
    for bad in ("<script>alert(1)</script>", "x" * 200, "1.0 DROP TABLE", ""):
        poll(client, tokens["hospital-a"], bad)
        client.app.state.service.presence.forget()  # each poll writes (no throttle in between)
        assert station_row(client, "hospital-a").version is None, bad
    poll(client, tokens["hospital-a"], "2.0.0rc1+local.3")
    assert station_row(client, "hospital-a").version == "2.0.0rc1+local.3"
