"""Central's dashboard in process (fast; SQLite and PostgreSQL): every page for every role,
the same answers the API gives, sessions, CSRF and the login limit. The browser flows are
in test_central_dashboard.py."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from central.db import utcnow
from tests import test_central_protocol as protocol
from tests.factories import make_parallel_manifest
from tests.test_central_protocol import auth, submit
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE
from trains.signing import sign

database_url = protocol.database_url  # every test on SQLite and on PostgreSQL
world = protocol.world
D = "/dashboard"


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return found.group(1)


def log_in(client: TestClient, token: str):
    csrf = csrf_of(client.get(f"{D}/login").text)
    return client.post(f"{D}/login", data={"csrf": csrf, "token": token})


def went(answer, path: str, note: str | None = None) -> bool:
    """A redirect to ``path`` whose page shows the fixed note ``note`` (or none)."""
    return (
        answer.status_code == 303
        and answer.headers["location"] == D + path
        and answer.cookies.get("pht_dashboard_note") == note
    )


def browser_of(client: TestClient) -> TestClient:
    """Another browser (its own cookie jar) on the same app."""
    return TestClient(client.app, follow_redirects=False)


@pytest.fixture
def scene(world):
    """alice's train, bob (another researcher), an admin, a station and a revoked researcher."""
    client, researcher, stations, tokens = world
    service = client.app.state.service
    manifest, envelope = submit(client, researcher, stations, tokens["alice"], rounds=2)
    tokens["bob"] = service.register("researcher", Identity.generate("bob").public)
    tokens["root"] = service.identities.register("admin", "root")
    client.secret_of_alice = envelope.digest  # on alice's train page, on no page bob sees
    client.world_identities = (researcher, stations)
    return client, tokens, manifest.train_id


def test_every_page_answers_every_role_as_the_api_does(scene):
    client, tokens, train_id = scene
    pages = {
        "overview": f"{D}/",
        "own train": f"{D}/trains/{train_id}",
        "stations": f"{D}/stations",
        "parties": f"{D}/parties",
        "live": f"{D}/live.json",
        "live train": f"{D}/live.json?train={train_id}",
    }
    expected = {  # alice owns the train; bob is another researcher
        "root": dict.fromkeys(pages, 200),
        "alice": {**dict.fromkeys(pages, 200), "stations": 403, "parties": 403},
        "bob": {**dict.fromkeys(pages, 200), "stations": 403, "parties": 403,
                "own train": 404, "live train": 404},
        "hospital-a": {**dict.fromkeys(pages, 303), "live": 401, "live train": 401},
        "anonymous": {**dict.fromkeys(pages, 303), "live": 401, "live train": 401},
    }  # fmt: skip
    api_404 = client.get(f"/api/v1/trains/{train_id}", headers=auth(tokens["bob"])).json()
    failures = []
    for who, outcomes in expected.items():
        browser = browser_of(client)
        if who != "anonymous":
            answer = log_in(browser, tokens[who])
            # a station token opens no dashboard: a 403 page and no logged-in session
            assert answer.status_code == (403 if who == "hospital-a" else 303), who
        for page, path in pages.items():
            response = browser.get(path)
            if response.status_code != outcomes[page]:
                failures.append(f"{who} {page}: {response.status_code}, not {outcomes[page]}")
            if response.status_code == 303:
                assert response.headers["location"] == f"{D}/login"
            if who == "bob":  # not one page shows alice's train to another researcher
                assert client.secret_of_alice not in response.text, f"bob sees it on {page}"
                assert page in ("own train", "live train") or train_id not in response.text
            if who in ("root", "alice") and page == "own train":
                assert client.secret_of_alice in response.text
        if who == "bob":  # the very 404 the API gives
            assert api_404["message"] in browser.get(pages["own train"]).text
    assert not failures, "\n".join(failures)


def test_the_operators_counts_are_the_metrics(scene):
    client, tokens, _ = scene
    browser = browser_of(client)
    log_in(browser, tokens["root"])
    page = browser.get(f"{D}/").text
    metrics = client.get("/metrics").text
    for family, prefix in (("pht_trains", "trains"), ("pht_hops", "hops")):
        reported = dict(re.findall(rf'^{family}{{state="(\w+)"}} ([\d.]+)$', metrics, re.M))
        shown = dict(re.findall(rf'id="{prefix}-(\w+)">(\d+)<', page))
        assert reported and {k: float(v) for k, v in shown.items()} == {
            k: float(v) for k, v in reported.items()
        }
    live = browser.get(f"{D}/live.json").json()
    assert live["trains"]["running"] == 1 and live["hops"]["queued"] == 1


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(scene):
    client, tokens, _ = scene
    browser = browser_of(client)
    log_in(browser, tokens["root"])
    refused = browser.post(f"{D}/parties/researcher/alice/revoke", data={})
    assert refused.status_code == 403
    wrong = browser.post(f"{D}/parties/researcher/alice/revoke", data={"csrf": "forged"})
    assert wrong.status_code == 403
    added = browser.post(f"{D}/parties", data={"role": "admin", "name": "eve"})
    assert added.status_code == 403 and "pht_adm_" not in added.text
    assert client.get("/api/v1/trains", headers=auth(tokens["alice"])).status_code == 200
    names = [p["name"] for p in client.app.state.service.identities.parties()]
    assert "eve" not in names


def test_a_token_revoked_on_the_dashboard_ends_the_api_and_its_sessions(scene):
    client, tokens, train_id = scene
    admin, alice = browser_of(client), browser_of(client)
    log_in(admin, tokens["root"])
    log_in(alice, tokens["alice"])
    assert alice.get(f"{D}/trains/{train_id}").status_code == 200
    csrf = csrf_of(admin.get(f"{D}/parties").text)
    done = admin.post(f"{D}/parties/researcher/alice/revoke", data={"csrf": csrf})
    assert went(done, "/parties", "revoked")
    assert client.get("/api/v1/trains", headers=auth(tokens["alice"])).status_code == 401
    ended = alice.get(f"{D}/trains/{train_id}")
    assert went(ended, "/login", "ended")
    assert "revoked" in admin.get(f"{D}/parties").text


def test_a_new_token_is_shown_once_and_works(scene):
    client, tokens, _ = scene
    browser = browser_of(client)
    log_in(browser, tokens["root"])
    carol = Identity.generate("carol").public
    csrf = csrf_of(browser.get(f"{D}/parties").text)
    shown = browser.post(
        f"{D}/parties",
        data={"csrf": csrf, "role": "researcher", "identity": carol.model_dump_json(),
              "expires_in_days": "30"},
    )  # fmt: skip
    assert shown.status_code == 200
    token = re.search(r'value="(pht_res_[^"]+)"', shown.text)
    assert token is not None
    me = client.get("/api/v1/me", headers=auth(token.group(1))).json()
    assert me == {"role": "researcher", "name": "carol"}
    listing = browser.get(f"{D}/parties").text
    assert "carol" in listing
    for secret in (token.group(1), tokens["root"], tokens["alice"]):
        assert secret not in listing and secret not in browser.get(f"{D}/").text


def test_sessions_are_new_at_login_and_the_cookie_is_strict(scene):
    client, tokens, _ = scene
    browser = browser_of(client)
    first = browser.get(f"{D}/login")
    before = browser.cookies.get("pht_dashboard")
    answer = log_in(browser, tokens["root"])
    after = browser.cookies.get("pht_dashboard")
    assert before and after and before != after  # no session fixation
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    assert tokens["root"] not in cookie
    policy = first.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert first.headers["x-frame-options"] == "DENY"


def test_a_url_cannot_put_text_on_a_page(scene):
    client, tokens, _ = scene
    browser = browser_of(client)
    planted = browser.get(f"{D}/login", params={"m": "Call 555-0100 to verify your token"})
    assert "555-0100" not in planted.text
    picked = browser.get(f"{D}/login", params={"m": "locked"})  # a link picks no note either
    assert "Too many failed logins" not in picked.text
    log_in(browser, tokens["root"])
    for path in ("/no-such-page", "/trains/not-a-train-id", "/trains/%3Cb%3Eplanted%3C%2Fb%3E"):
        missing = browser.get(D + path)
        assert missing.status_code == 404 and "There is no such page." in missing.text
        assert "planted" not in missing.text and "not-a-train-id" not in missing.text


def test_the_login_limit_refuses_the_right_token_after_five_wrong_ones(scene):
    client, tokens, _ = scene
    browser = browser_of(client)
    for _ in range(5):
        wrong = log_in(browser, "pht_adm_wrong-token")
        assert went(wrong, "/login", "wrong")
    locked = log_in(browser, tokens["root"])
    assert went(locked, "/login", "locked")
    assert browser.get(f"{D}/").status_code == 303


def test_a_station_token_does_not_clear_the_failed_logins(scene):
    """A station token opens no page; it must not reset the count of wrong tokens (review
    finding: four wrong tokens, a station's, four more, and the limit never came)."""
    client, tokens, _ = scene
    browser = browser_of(client)
    for _ in range(4):
        log_in(browser, "pht_adm_wrong-token")
    assert log_in(browser, tokens["hospital-a"]).status_code == 403
    log_in(browser, "pht_adm_wrong-token")
    assert went(log_in(browser, tokens["root"]), "/login", "locked")


def test_the_session_cookie_is_secure_over_https_only(scene):
    client, tokens, _ = scene
    plain = browser_of(client)
    assert "secure" not in log_in(plain, tokens["root"]).headers["set-cookie"].lower()
    tls = TestClient(client.app, base_url="https://testserver", follow_redirects=False)
    assert "secure" in log_in(tls, tokens["root"]).headers["set-cookie"].lower()


def test_a_revoked_token_cannot_log_in_and_an_expired_one_neither(scene):
    client, tokens, _ = scene
    service = client.app.state.service
    service.identities.revoke("bob", "researcher")
    refused = log_in(browser_of(client), tokens["bob"])
    assert went(refused, "/login", "wrong")
    brief = service.identities.register("admin", "brief", None, utcnow() + timedelta(seconds=1))
    session = browser_of(client)
    assert log_in(session, brief).headers["location"] == f"{D}/"
    time.sleep(1.2)  # the token expires: its session ends with it
    assert went(session.get(f"{D}/"), "/login", "ended")
    assert went(log_in(browser_of(client), brief), "/login", "wrong")


def test_logging_out_ends_the_session(scene):
    client, tokens, _ = scene
    browser = browser_of(client)
    log_in(browser, tokens["root"])
    old = browser.cookies.get("pht_dashboard")
    csrf = csrf_of(browser.get(f"{D}/").text)
    assert went(browser.post(f"{D}/logout", data={"csrf": csrf}), "/login", "ended")
    replay = TestClient(client.app, follow_redirects=False, cookies={"pht_dashboard": old})
    assert replay.get(f"{D}/").headers["location"] == f"{D}/login"


def test_a_parallel_routes_graph_puts_each_aggregate_right_of_its_round(scene):
    client, tokens, _ = scene
    researcher, stations = client.world_identities
    aggregator = Identity.generate("aggregator")
    client.app.state.service.register("station", aggregator.public)
    manifest = make_parallel_manifest(researcher, stations, aggregator, rounds=2)
    envelope = sign(manifest, MANIFEST_TYPE, researcher.signing)
    body = {"manifest": envelope.model_dump(mode="json")}
    assert (
        client.post("/api/v1/trains", json=body, headers=auth(tokens["alice"])).status_code == 201
    )
    browser = browser_of(client)
    log_in(browser, tokens["alice"])
    page = browser.get(f"{D}/trains/{manifest.train_id}").text
    boxes = re.findall(r'<rect x="(\d+)" y="(\d+)"', page)
    kinds = re.findall(r"<text x=\"\d+\" y=\"\d+\">(hop|aggregate) (\d+) · r(\d+)</text>", page)
    assert [k for k, _, _ in kinds] == ["hop", "hop", "aggregate"] * 2
    xs = [int(x) for x, _ in boxes]
    # round 0: two local hops in one column, its aggregate right of them; round 1 further
    assert xs[0] == xs[1] < xs[2] < xs[3] == xs[4] < xs[5]
    assert page.count('class="edge"') == 2 + 2 + 2  # locals->aggregate, aggregate->locals
