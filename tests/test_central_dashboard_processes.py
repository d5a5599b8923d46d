"""The dashboard behind several central processes (compose runs two uvicorn workers by
default; a browser's requests land on either): a session, its CSRF token and the note after
an action hold whichever process answers. Two apps on one database are two processes here:
each has its own memory, as a worker has. SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from central.api import create_app
from central.dashboard.store import DashboardSessionRow, SessionStore
from central.identities import hash_token
from central.settings import CentralSettings
from tests import test_central_protocol as protocol
from tests.test_central_dashboard_auth import csrf_of
from tests.test_central_protocol import auth

database_url = protocol.database_url
D = "/dashboard"


@pytest.fixture
def two(tmp_path, database_url):
    """Two central processes on one database, and the admin's and alice's tokens."""
    # no token cache: a revocation by one process is heard by the other at once
    settings = CentralSettings(data_dir=tmp_path, database_url=database_url, token_cache_s=0)
    first, second = create_app(settings), create_app(settings)
    service = first.state.service
    tokens = {
        "root": service.identities.register("admin", "root"),
        "alice": service.identities.register("admin", "alice"),
    }
    return first, second, tokens


class Browser:
    """One cookie jar whose requests go to either process, as behind one address."""

    def __init__(self, *apps) -> None:
        self.clients = [TestClient(app, follow_redirects=False) for app in apps]

    def on(self, which: int) -> TestClient:
        client = self.clients[which]
        for other in self.clients:  # the browser's cookies, whoever set them last
            if other is not client:
                client.cookies.update(other.cookies)
        return client

    def sync(self, which: int) -> None:
        for other in self.clients:
            if other is not self.clients[which]:
                other.cookies.clear()
                other.cookies.update(self.clients[which].cookies)


def test_a_login_on_one_process_holds_on_the_other(two):
    first, second, tokens = two
    browser = Browser(first, second)
    form = browser.on(0).get(f"{D}/login").text
    browser.sync(0)
    logged = browser.on(1).post(f"{D}/login", data={"csrf": csrf_of(form), "token": tokens["root"]})
    assert logged.status_code == 303 and logged.headers["location"] == f"{D}/"
    browser.sync(1)
    for which in (0, 1, 0):
        page = browser.on(which).get(f"{D}/parties")
        assert page.status_code == 200, (which, page.headers.get("location"))
        browser.sync(which)
    csrf = csrf_of(page.text)
    revoked = browser.on(1).post(f"{D}/parties/admin/alice/revoke", data={"csrf": csrf})
    assert revoked.status_code == 303
    browser.sync(1)
    after = browser.on(0).get(revoked.headers["location"])
    assert after.status_code == 200 and "Revoked: that token no longer works" in after.text
    browser.sync(0)
    again = browser.on(1).get(f"{D}/parties")
    assert "Revoked: that token" not in again.text  # the note is shown once


def test_a_logout_or_a_revocation_on_one_process_ends_the_session_on_the_other(two):
    first, second, tokens = two
    browser = Browser(first, second)
    form = browser.on(0).get(f"{D}/login").text
    browser.on(0).post(f"{D}/login", data={"csrf": csrf_of(form), "token": tokens["alice"]})
    browser.sync(0)
    assert browser.on(1).get(f"{D}/").status_code == 200
    browser.sync(1)
    second.state.service.identities.revoke("alice", "admin")  # the other process
    ended = browser.on(0).get(f"{D}/")
    assert ended.status_code == 303 and ended.headers["location"].startswith(f"{D}/login")
    root = Browser(first, second)
    form = root.on(1).get(f"{D}/login").text
    root.on(1).post(f"{D}/login", data={"csrf": csrf_of(form), "token": tokens["root"]})
    root.sync(1)
    page = root.on(0).get(f"{D}/")
    assert page.status_code == 200
    root.sync(0)
    out = root.on(1).post(f"{D}/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    root.sync(1)
    assert root.on(0).get(f"{D}/").status_code == 303


def test_a_link_cannot_pick_a_note(two):
    first, _, tokens = two
    browser = TestClient(first, follow_redirects=False)
    for key in ("locked", "revoked", "ended", "wrong"):
        page = browser.get(f"{D}/login", params={"m": key})
        assert "Too many failed logins" not in page.text and "Revoked" not in page.text
        assert "session ended" not in page.text and "unknown, expired" not in page.text
    csrf = csrf_of(browser.get(f"{D}/login").text)
    wrong = browser.post(f"{D}/login", data={"csrf": csrf, "token": "pht_adm_wrong"})
    assert wrong.status_code == 303
    assert "unknown, expired or revoked" in browser.get(wrong.headers["location"]).text
    assert "unknown, expired or revoked" not in browser.get(f"{D}/login").text  # once
    assert client_api_ok(browser, tokens["root"])


def client_api_ok(client: TestClient, token: str) -> bool:
    return client.get("/api/v1/me", headers=auth(token)).status_code == 200


def test_a_session_ends_after_its_lifetime_and_the_database_holds_no_secret(two):
    first, _, tokens = two
    service = first.state.service
    store = SessionStore(service.sessions, lifetime_s=1.0)
    opened = store.log_in("root", hash_token(tokens["root"]))
    assert store.get_or_start(opened.id).user == "root"
    with service.sessions() as db:
        rows = [tuple(r) for r in db.execute(select(DashboardSessionRow)).all()]
        stored = repr([vars(r[0]) for r in rows])
    assert opened.id not in stored and tokens["root"] not in stored  # hashes only
    time.sleep(1.2)
    assert store.get_or_start(opened.id).user is None  # ended: an anonymous visitor now
    anonymous = store.get_or_start(None)
    assert store.get_or_start(anonymous.id).csrf == anonymous.csrf  # stable, no row written
    with service.sessions() as db:
        assert db.scalar(select(func.count()).select_from(DashboardSessionRow)) == 1
