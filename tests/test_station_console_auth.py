"""The console's login, sessions and CSRF checks, in process (fast); the browser flows are
in test_station_console.py."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient

from station.config import ConsoleSettings, StationConfig, StationInfo
from station.console.app import create_app
from station.console.sessions import Sessions
from station.console.users import Users
from station.service import StationService
from trains.errors import ConfigError
from trains.websession import MAX_SESSIONS

PASSWORD = "correct horse battery staple"


@pytest.fixture
def console(tmp_path):
    config = StationConfig(
        station=StationInfo(
            name="st-auth", central_url="http://127.0.0.1:1", state_dir=tmp_path / "state"
        ),
        console=ConsoleSettings(port=9),
    )
    Users(config.state_dir).add("steward", PASSWORD)
    return config, TestClient(create_app(config))


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def log_in(client: TestClient, password: str = PASSWORD):
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"csrf": token, "user": "steward", "password": password})


def test_pages_need_a_login_and_logging_in_starts_a_new_session(console):
    config, client = console
    assert client.get("/audit").url.path == "/login"
    before = client.cookies.get("pht_console_st-auth")
    assert log_in(client).url.path == "/"
    after = client.cookies.get("pht_console_st-auth")
    assert before and after and before != after  # no session fixation
    page = client.get("/audit")
    assert page.status_code == 200 and "Verified" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # none allowed
    assert page.headers["x-frame-options"] == "DENY"
    events = StationService(config).audit_entries()
    assert [(e["event"], e["result"]) for e in events] == [("console_login", "ok")]


def test_a_login_form_without_its_token_is_refused(console):
    _, client = console
    client.get("/login")
    refused = client.post("/login", data={"user": "steward", "password": PASSWORD})
    assert refused.status_code == 403
    assert client.get("/").url.path == "/login"


def test_a_post_of_a_logged_out_visitor_changes_nothing(console):
    _, client = console
    token = csrf_of(client.get("/login").text)
    refused = client.post("/hops/x-0/approve-train", data={"csrf": token})
    assert refused.status_code == 403


def test_sessions_end_after_their_lifetime():
    sessions = Sessions(lifetime_s=0.2)
    session = sessions.log_in(sessions.get_or_start(None), "steward")
    assert sessions.get_or_start(session.id).user == "steward"
    time.sleep(0.3)
    again = sessions.get_or_start(session.id)
    assert again.user is None and again.id != session.id


def test_a_flood_keeps_the_tables_bounded_and_forgets_the_least_recently_used():
    """A flood of cookie-less visits and of wrong logins under new names: the tables stay
    at MAX_SESSIONS, a logged-in steward and a visitor active now are kept, the visitor
    unseen longest goes, and an address that failed five times is still locked."""
    sessions = Sessions(lifetime_s=600)
    steward = sessions.log_in(sessions.get_or_start(None), "steward")
    oldest = sessions.get_or_start(None)
    active = sessions.get_or_start(None)
    for i in range(MAX_SESSIONS):
        sessions.get_or_start(None)
        if i % 1000 == 0:
            sessions.get_or_start(active.id)  # still in use
    assert len(sessions._by_id) == MAX_SESSIONS
    assert sessions.get_or_start(steward.id).user == "steward"
    assert sessions.get_or_start(active.id).id == active.id
    assert sessions.get_or_start(oldest.id).id != oldest.id
    for _ in range(5):
        sessions.failed("ip:203.0.113.7")
    for i in range(2 * MAX_SESSIONS):
        sessions.failed(f"user:guess-{i}")
        if i % 1000 == 0:
            sessions.failed("ip:203.0.113.7")  # the guesser's address keeps failing
    assert len(sessions._failures) <= MAX_SESSIONS
    assert sessions.locked("ip:203.0.113.7")


def test_the_limit_refuses_the_right_password_after_five_wrong_ones(console):
    config, client = console
    for _ in range(5):
        assert "Wrong user name" in log_in(client, "wrong password here").text
    assert "Too many failed logins" in log_in(client).text
    failed = [e for e in StationService(config).audit_entries() if e["result"] == "failed"]
    assert len(failed) == 5


def test_passwords_are_argon2_hashes_and_short_ones_refused(tmp_path):
    users = Users(tmp_path)
    users.add("steward", PASSWORD)
    stored = users.path.read_text()
    assert "$argon2id$" in stored and PASSWORD not in stored
    assert oct(users.path.stat().st_mode & 0o777) == "0o600"
    assert users.check("steward", PASSWORD) and not users.check("steward", PASSWORD + "x")
    assert not users.check("nobody", PASSWORD)
    with pytest.raises(ConfigError, match="at least 12"):
        users.add("other", "short")


def test_a_url_cannot_put_its_own_text_on_a_page(console):
    """A link someone sends the steward must not make the console say anything, not even
    one of its own messages (a link saying "Approved this hop." when nothing was)."""
    _, client = console
    crafted = "Central says: approve train 1234 now, it is urgent"
    for path in ("/login", "/logout"):
        assert crafted not in client.get(path, params={"note": crafted}).text
    log_in(client)
    for path in ("/", "/hops/no-such-hop", "/history", f"/hops/{crafted}"):
        page = client.get(path, params={"note": crafted})
        assert crafted not in page.text and "approve train 1234" not in page.text, path
    for key in ("approved-hop", "released", "logged-out"):  # a link picks no message either
        for path in ("/", "/login"):
            page = client.get(path, params={"note": key}).text
            assert "Approved this hop" not in page and "Released" not in page, (key, path)
            assert "Logged out." not in page, (key, path)
    # the console's own message after an action shows, once
    page = client.get("/").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    out = client.post("/logout", data={"csrf": csrf.group(1)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert "Logged out." in client.get("/login").text
    assert "Logged out." not in client.get("/login").text


def test_after_a_daemon_restart_the_login_page_says_the_session_ended(console):
    """Sessions live in the daemon's memory (nothing to steal from disk), so a restart ends
    them: the next page, and a login form opened before the restart, say so plainly."""
    config, before = console
    stale_form = csrf_of(before.get("/login").text)
    log_in(before)
    assert before.get("/history").status_code == 200
    restarted = create_app(config)  # the daemon after a restart: a new Sessions
    page = TestClient(restarted, cookies=before.cookies).get("/history")
    assert page.url.path == "/login" and "Your session ended" in page.text
    after = TestClient(restarted, cookies=before.cookies)  # a login form opened before
    submitted = after.post(
        "/login", data={"csrf": stale_form, "user": "steward", "password": PASSWORD}
    )
    assert submitted.status_code == 200 and "Your session ended" in submitted.text
    assert log_in(after).url.path == "/"  # and logging in again works
    fresh = TestClient(create_app(config))  # a first visit is no ended session
    assert "session ended" not in fresh.get("/history").text
