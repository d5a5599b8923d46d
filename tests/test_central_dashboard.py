"""Central's dashboard in a real browser (Debian's chromium through chromium-driver and
Selenium), served by a real ``pht-central serve`` process on 127.0.0.1 (SQLite). Trains are
submitted and hops claimed through central's HTTP API, as researchers and stations do.

The tests share one central and one browser and run in order: the login-limit test locks
this client's address out, so it comes last. Screenshots of the main pages are taken every
run; with ``PHT_SCREENSHOTS=1`` they are written into docs/img/, else into a temporary folder.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from central.db import make_engine, make_sessions
from central.service import Service
from central.testing_server import CentralServer
from tests.test_central_protocol import auth, submit
from tests.webwait import next_page
from trains.keys import Identity


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """One served central with an admin, two researchers, two stations and three trains:
    alice's 2-round train (hop 0 queued), alice's 1-round train, bob's train."""
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'central.db'}"
    service = Service(make_sessions(make_engine(url)))  # registers, as `pht-central admin` does
    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    stations = [Identity.generate(n) for n in ("hospital-a", "hospital-b")]
    tokens = {"root": service.identities.register("admin", "root")}
    for party in (alice, bob):
        tokens[party.name] = service.register("researcher", party.public)
    for station in stations:
        tokens[station.name] = service.register("station", station.public)
    with (
        CentralServer(folder / "central", url) as central,
        httpx.Client(base_url=central.url, timeout=30) as api,
    ):
        trains = {
            "alice": submit(api, alice, stations, tokens["alice"], rounds=2)[0].train_id,
            "alice-2": submit(api, alice, stations[:1], tokens["alice"])[0].train_id,
            "bob": submit(api, bob, stations, tokens["bob"])[0].train_id,
        }
        yield {"url": central.url, "api": api, "tokens": tokens, "trains": trains}


def shoot(browser, path: Path) -> None:
    """A screenshot of the whole page (the window grown to its height, then back)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(max(height, 600), 4000))
    browser.save_screenshot(str(path))
    browser.set_window_size(1280, 1000)


def click(browser, css: str) -> None:
    """Click and wait for the next page (else the old page's elements are read)."""
    from selenium.webdriver.common.by import By

    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, css).click()
    next_page(browser, page, timeout_s=20)


def log_in(browser, net, token: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{net['url']}/dashboard/login")
    browser.find_element(By.ID, "token").send_keys(token)
    click(browser, "form.login button")


def log_out(browser) -> None:
    click(browser, "form.logout button")


def wait_until(predicate, what: str, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_operator_sees_trains_by_state_as_metrics_counts_them(browser, net, shots):
    from selenium.webdriver.common.by import By

    browser.get(f"{net['url']}/dashboard/login")
    shoot(browser, shots / "dashboard-login.png")
    log_in(browser, net, net["tokens"]["root"])
    assert browser.current_url == f"{net['url']}/dashboard/"
    metrics = httpx.get(f"{net['url']}/metrics").text
    for family, prefix in (("pht_trains", "trains"), ("pht_hops", "hops")):
        reported = re.findall(rf'^{family}{{state="(\w+)"}} ([\d.]+)$', metrics, re.M)
        assert reported
        for state, value in reported:
            shown = browser.find_element(By.ID, f"{prefix}-{state}").text
            assert int(shown) == int(float(value)), (family, state)
    assert browser.find_element(By.ID, "trains-running").text == "3"
    listed = browser.find_element(By.ID, "trains").text
    assert "alice" in listed and "bob" in listed  # the operator sees every researcher's
    shoot(browser, shots / "dashboard-trains.png")


def test_the_operator_opens_a_trains_route_graph(browser, net, shots):
    from selenium.webdriver.common.by import By

    train_id = net["trains"]["alice"]
    click(browser, f'a[href="/dashboard/trains/{train_id}"]')
    assert browser.current_url.endswith(f"/dashboard/trains/{train_id}")
    nodes = browser.find_elements(By.CSS_SELECTOR, "svg g.node")
    assert len(nodes) == 4  # 2 stops x 2 rounds
    assert "state-queued" in nodes[0].get_attribute("class")
    assert all("state-waiting" in n.get_attribute("class") for n in nodes[1:])
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg line.edge")) == 3
    rows = browser.find_elements(By.CSS_SELECTOR, "#hops tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[2].text for r in rows] == [
        "hospital-a", "hospital-b", "hospital-a", "hospital-b"
    ]  # fmt: skip
    shoot(browser, shots / "dashboard-route.png")


def test_a_hop_changing_state_shows_without_a_reload(browser, net, shots):
    from selenium.webdriver.common.by import By

    browser.execute_script("window.pageNeverReloaded = true")
    claimed = net["api"].post("/api/v1/hops/next", headers=auth(net["tokens"]["hospital-a"]))
    assert claimed.status_code == 200 and claimed.json()["hop"] == 0
    wait_until(
        lambda: browser.find_element(By.ID, "hop-0").text == "running", "hop 0 shown running"
    )
    assert "state-running" in browser.find_element(By.ID, "node-0").get_attribute("class")
    assert browser.execute_script("return window.pageNeverReloaded") is True
    browser.get(f"{net['url']}/dashboard/")
    assert browser.find_element(By.ID, "hops-running").text == "1"


def test_the_operator_adds_a_researcher_and_revokes_a_token(browser, net, shots):
    from selenium.webdriver.common.by import By

    click(browser, 'nav a[href$="/stations"]')
    row = browser.find_element(By.ID, "station-hospital-a").text
    assert "never" not in row  # it claimed a hop: central saw it
    assert "never" in browser.find_element(By.ID, "station-hospital-b").text
    shoot(browser, shots / "dashboard-stations.png")
    click(browser, 'nav a[href$="/parties"]')
    carol = Identity.generate("carol").public
    browser.find_element(By.ID, "identity").send_keys(carol.model_dump_json())
    browser.find_element(By.ID, "expires").send_keys("30")
    click(browser, "form.add button")
    token = browser.find_element(By.ID, "new-token").get_attribute("value")
    assert token.startswith("pht_res_")
    me = net["api"].get("/api/v1/me", headers=auth(token))
    assert me.json() == {"role": "researcher", "name": "carol"}
    click(browser, 'main a[href$="/parties"]')
    assert token not in browser.page_source  # shown once, never again
    shoot(browser, shots / "dashboard-parties.png")
    click(browser, 'form[action$="/researcher/carol/revoke"] button')
    assert "Revoked" in browser.find_element(By.CSS_SELECTOR, "p.note").text
    assert "revoked" in browser.find_element(By.ID, "party-researcher-carol").text
    assert net["api"].get("/api/v1/me", headers=auth(token)).status_code == 401


def test_a_form_without_its_csrf_token_is_refused(browser, net):
    from selenium.webdriver.common.by import By

    form = 'form[action$="/researcher/bob/revoke"]'
    browser.execute_script(f"document.querySelector('{form} input[name=csrf]').remove()")
    click(browser, f"{form} button")
    assert "Refused" in browser.find_element(By.TAG_NAME, "h1").text
    assert net["api"].get("/api/v1/me", headers=auth(net["tokens"]["bob"])).status_code == 200


def test_a_researcher_sees_only_their_own_trains(browser, net, shots):
    from selenium.webdriver.common.by import By

    browser.get(f"{net['url']}/dashboard/")
    log_out(browser)
    log_in(browser, net, net["tokens"]["bob"])
    listed = browser.find_element(By.ID, "trains").text
    assert net["trains"]["bob"][:8] in listed
    assert net["trains"]["alice"][:8] not in listed and "alice" not in listed
    assert browser.find_element(By.ID, "trains-running").text == "1"  # bob's one train
    assert not browser.find_elements(By.LINK_TEXT, "Researchers and tokens")
    browser.get(f"{net['url']}/dashboard/trains/{net['trains']['alice']}")
    assert "not found" in browser.find_element(By.TAG_NAME, "main").text
    assert not browser.find_elements(By.CSS_SELECTOR, "svg")
    browser.get(f"{net['url']}/dashboard/parties")
    assert "needs the role admin" in browser.find_element(By.TAG_NAME, "main").text
    browser.get(f"{net['url']}/dashboard/trains/{net['trains']['bob']}")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg g.node")) == 2
    log_out(browser)


def test_a_station_token_opens_no_page_and_failed_logins_are_limited(browser, net):
    from selenium.webdriver.common.by import By

    log_in(browser, net, net["tokens"]["hospital-b"])
    assert "No dashboard for stations" in browser.find_element(By.TAG_NAME, "h1").text
    for _ in range(5):
        log_in(browser, net, "pht_adm_not-the-token")
        assert "unknown, expired or revoked" in browser.find_element(By.CSS_SELECTOR, "p.note").text
    log_in(browser, net, net["tokens"]["root"])  # the right token, refused for now
    assert "Too many failed logins" in browser.find_element(By.CSS_SELECTOR, "p.note").text
    assert browser.current_url.startswith(f"{net['url']}/dashboard/login")


def test_behind_a_proxy_on_this_host_the_login_limit_counts_each_browser(net):
    """A TLS proxy on the same host connects from 127.0.0.1 and names the browser in
    X-Forwarded-For; uvicorn (central's server) takes the client address from it only for a
    connection from FORWARDED_ALLOW_IPS (default 127.0.0.1). So one browser's wrong tokens
    lock that browser, not everyone behind the proxy."""

    def log_in_from(address: str, token: str) -> httpx.Response:
        with httpx.Client(base_url=net["url"], headers={"X-Forwarded-For": address}) as tab:
            form = tab.get("/dashboard/login").text
            csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            return tab.post("/dashboard/login", data={"csrf": csrf, "token": token})

    for _ in range(5):
        assert log_in_from("203.0.113.7", "pht_adm_wrong").cookies["pht_dashboard_note"] == "wrong"
    locked = log_in_from("203.0.113.7", net["tokens"]["root"])
    assert locked.cookies["pht_dashboard_note"] == "locked"
    other = log_in_from("203.0.113.8", net["tokens"]["root"])
    assert other.status_code == 303 and other.headers["location"] == "/dashboard/"
