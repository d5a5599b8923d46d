"""A held output at the release point, on the console's hop page (security review, MEDIUM
3): the page shows what the output is (typed quantities, untyped files, "held because
untyped": types, shapes and counts only: the summary holds no value to show) and says
where a release sends it.

In process (fast, no browser), as tests/test_station_console_auth.py."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from station.console.app import create_app
from station.console.users import Users
from station.disclosure import Disclosure, FileSummary
from station.queue import HopState
from station.release import ReleaseSummary
from tests.factories import make_manifest
from tests.test_station_approval import admit, offers, world  # noqa: F401 (the fixture)

PASSWORD = "correct horse battery staple"


def _log_in(client: TestClient) -> None:
    page = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    client.post("/login", data={"csrf": token.group(1), "user": "steward", "password": PASSWORD})


def test_a_held_release_shows_its_summary_and_goes_to_the_researcher(world):  # noqa: F811
    alice, _, here, config, service = world
    manifest = make_manifest(alice, [here], rounds=1)
    (offer,) = offers(manifest, alice, here, 1)
    record = admit(offer, here, service)
    record.state = HopState.HELD
    record.disclosure = Disclosure(
        [
            FileSummary("published.json", 900, "JSON object, 3 keys", False, 0),
            FileSummary("weights.npy", 4096, "binary", False, 0),
        ],
        ReleaseSummary(
            quantities=[{"name": "ages", "type": "frequency_table", "shape": "4 x 2 cells"}],
            suppressed=3,
            untyped=[{"name": "weights.npy", "shape": "binary"}],
            held=True,
        ),
    ).to_dict()
    service.queue.save(record)
    Users(config.state_dir).add("steward", PASSWORD)
    client = TestClient(create_app(config))
    _log_in(client)
    page = client.get(f"/hops/{record.id}").text
    assert "frequency_table" in page and "4 x 2 cells" in page and "ages" in page
    assert "weights.npy" in page and "untyped" in page
    assert "held because" in page and "3 part(s) suppressed" in page
    assert "Release the output to the researcher" in page
    assert "next stop" not in page
