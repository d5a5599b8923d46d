"""The web pages read a POST's body only within bounds (review finding: before, anyone
without a session could make central or a station's console parse a form of 1000 fields of
1 MB each, or multipart files of any size, before the CSRF check refused it).

A form body is at most ``MAX_FORM_BYTES``, URL-encoded, and counted while it arrives (a
Content-Length that lies, or none, changes nothing); everything else is refused before a
byte of it is parsed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from central.api import create_app as create_central
from central.settings import CentralSettings
from tests.test_station_console_auth import console  # noqa: F401  (a fixture)
from trains.webform import MAX_FORM_BYTES


@pytest.fixture
def dashboard(tmp_path):
    settings = CentralSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/c.db")
    app = create_central(settings, False)
    return TestClient(app)


def cases() -> list[tuple[str, dict[str, object], int]]:
    big = "x" * (MAX_FORM_BYTES + 1)
    return [
        ("too large", {"content": f"csrf=a&token={big}",
                       "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 413),
        ("multipart", {"files": {"token": ("t.bin", b"0" * 1000)}}, 415),
        ("chunked, no length", {"content": iter([b"csrf=a&token=", big.encode()]),
                                "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
         411),
    ]  # fmt: skip


@pytest.mark.parametrize("name, request_args, status", cases(), ids=[c[0] for c in cases()])
def test_the_dashboard_refuses_a_form_out_of_bounds_before_parsing(
    dashboard, name, request_args, status
):
    answer = dashboard.post("/dashboard/login", **request_args)
    assert answer.status_code == status, (name, answer.status_code, answer.text[:200])


@pytest.mark.parametrize("name, request_args, status", cases(), ids=[c[0] for c in cases()])
def test_the_station_console_refuses_a_form_out_of_bounds_before_parsing(
    console,  # noqa: F811
    name,
    request_args,
    status,
):
    _, client = console
    answer = client.post("/login", **request_args)
    assert answer.status_code == status, (name, answer.status_code, answer.text[:200])


def test_a_small_form_still_reaches_the_login(dashboard):
    page = dashboard.get("/dashboard/login").text
    assert 'name="csrf"' in page
    answer = dashboard.post("/dashboard/login", data={"csrf": "wrong", "token": "x"})
    assert answer.status_code == 403  # parsed, then refused by the CSRF check as before
