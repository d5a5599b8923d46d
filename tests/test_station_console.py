"""The station console in a real browser (Debian's chromium through chromium-driver and
Selenium), served by real station daemons (separate processes) on the session's real
central and registry, running real containers.

Two stations, each with its console: ``st-console-a`` asks for approval of every hop
(``approval = "manual"``), ``st-console-b`` holds every output for release
(``release = "manual"``). The tests share one network and one browser and run in order:
the brute-force test locks this client out, so it comes last.

Screenshots of the main pages are taken every run; with ``PHT_SCREENSHOTS=1`` they are
written into docs/img/ (the ones checked in were made so), else into a temporary folder.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from central.client import CentralClient
from station.queue import HopQueue, HopRecord, HopState
from tests.webwait import next_page
from train_builder.localnet import Station, free_port, wait_http
from train_builder.researcher import Researcher

pytestmark = pytest.mark.docker
MARKER = "ZZCONSOLEMARKER-7d2"  # a category that exists only in patient data
PASSWORD = "correct horse battery staple"
TRAIN_PY = """
def local(data, state, ctx):
    rows = len(data["cohort"]) + (state or {}).get("rows", 0)
    if ctx.is_last:  # the release point: the count leaves typed (an untyped state is held)
        ctx.publish.frequency_table("rows", ["all"], [rows])
    return {"rows": rows}
"""
CHANGE = """
def finalize(state, ctx):
    return {"rows": state["rows"], "note": "sent home"}
"""
TRAIN_TOML = """datasets = ["cohort"]
outputs = ["state.json"]

[train]
name = "roundcount"
version = "0.1.0"

[resources]
memory_mb = 256
timeout_s = 120
max_output_mb = 1
"""


def records(station: Station) -> list[HopRecord]:
    return HopQueue(station.directory / "state").all()


def wait_for(predicate, what: str, station: Station, timeout_s: float = 180.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    tail = station.log.read_text()[-3000:] if station.log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def pending_of(station: Station, train_id: str, state: HopState = HopState.PENDING):
    return next((r for r in records(station) if r.train_id == train_id and r.state == state), None)


def console_station(net, name: str, data: Path, researcher: Researcher, policy: str) -> Station:
    station = net.add_station(name, {"cohort": data}, trusted=[researcher.identity], poll_s=0.2)
    port = free_port()
    with station.config.open("a") as handle:  # [policy] is the last table localnet writes
        handle.write(f"{policy}\n\n[console]\nport = {port}\n")
    added = subprocess.run(
        [sys.executable, "-m", "station.cli", "console-user", "add", "steward",
         "--password-stdin", "--config", str(station.config)],
        input=PASSWORD + "\n", capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    net.start_station(name)
    station.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    wait_http(f"{station.url}/login", timeout_s=120)  # type: ignore[attr-defined]
    return station


@pytest.fixture(scope="module")
def world(localnet, image_for, tmp_path_factory):
    root = tmp_path_factory.mktemp("station-console")
    data = root / "cohort.csv"
    frame = pd.DataFrame({"age": range(30, 70), "ward": ["cardio", "onco"] * 20})
    frame.loc[0, "ward"] = MARKER
    frame.to_csv(data, index=False)
    identity, keys, token = localnet.add_researcher("dr-console")
    researcher = Researcher(
        identity, CentralClient(localnet.central_url, token.read_text().strip()),
        trust=localnet.trust(),
    )  # fmt: skip
    folder = root / "roundcount"
    folder.mkdir()
    (folder / "train.toml").write_text(TRAIN_TOML)
    (folder / "train.py").write_text(TRAIN_PY)
    image = image_for(folder)
    changed = root / "roundcount-changed"  # the next version: what the admin should see
    changed.mkdir()
    (changed / "train.toml").write_text(TRAIN_TOML.replace('"0.1.0"', '"0.2.0"'))
    (changed / "train.py").write_text(TRAIN_PY + CHANGE)
    images = {folder: image, changed: image_for(changed)}
    a = console_station(localnet, "st-console-a", data, researcher, 'approval = "manual"')
    b = console_station(localnet, "st-console-b", data, researcher, 'release = "manual"')

    def submit(station: Station, rounds: int = 1, train: Path = folder) -> str:
        stops = researcher.route_stops([station.name])
        return researcher.submit_manifest(
            researcher.make_manifest(train, images[train], stops, rounds=rounds)
        )

    cli = ["--central", localnet.central_url, "--token-file", str(token), "--keys", str(keys),
           "--network-root", localnet.network_root]  # fmt: skip
    yield {
        "a": a,
        "b": b,
        "submit": submit,
        "changed": changed,
        "researcher": researcher,
        "cli": cli,
    }
    researcher.close()


def log_in(browser, station: Station, password: str = PASSWORD) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{station.url}/login")  # type: ignore[attr-defined]
    browser.find_element(By.ID, "user").send_keys("steward")
    browser.find_element(By.ID, "password").send_keys(password)
    click(browser, browser.find_element(By.CSS_SELECTOR, "form.login button"))


def click(browser, element) -> None:
    """Click a link or a form's button and wait until the next page has loaded."""
    from selenium.webdriver.common.by import By

    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    next_page(browser, page)


def shoot(browser, path: Path) -> None:
    """A screenshot of the whole page (the window grown to its height, then back)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(max(height, 600), 4000))
    browser.save_screenshot(str(path))
    browser.set_window_size(1280, 1000)


def no_patient_data(browser) -> None:
    assert MARKER not in browser.page_source and "cardio" not in browser.page_source


def test_log_in_see_the_code_approve_once_and_every_round_runs(browser, world, shots):
    from selenium.webdriver.common.by import By

    a = world["a"]
    train_id = world["submit"](a, rounds=3)
    first = wait_for(lambda: pending_of(a, train_id), "a pending hop", a)
    browser.get(f"{a.url}/login")
    browser.save_screenshot(str(shots / "console-login.png"))
    log_in(browser, a)
    assert "Hops waiting here" in browser.page_source
    browser.save_screenshot(str(shots / "console-pending.png"))
    click(browser, browser.find_element(By.CSS_SELECTOR, f'a[href="/hops/{first.id}"]'))
    page = browser.page_source
    assert "roundcount 0.1.0" in page and "train.py" in page and "def local" in page
    assert world["researcher"].identity.public.signing_fingerprint in page
    assert a.identity.public.signing_fingerprint in page  # each stop's key on the route
    no_patient_data(browser)
    shoot(browser, shots / "console-hop.png")

    click(browser, browser.find_element(By.ID, "approve-train"))
    assert "Approved train" in browser.page_source
    status = world["researcher"].wait(train_id, timeout_s=300)
    assert status["status"] == "done", status
    hops = sorted((r for r in records(a) if r.train_id == train_id), key=lambda r: r.hop)
    assert [r.hop for r in hops] == [0, 1, 2]
    assert {r.approved_by for r in hops} == {"console:steward"}  # one approval, three rounds
    browser.get(f"{a.url}/history")
    assert "roundcount" in browser.page_source
    no_patient_data(browser)
    browser.save_screenshot(str(shots / "console-history.png"))


def test_reject_with_a_reason_that_reaches_pht_train_status(browser, world, shots):
    from selenium.webdriver.common.by import By

    a = world["a"]
    train_id = world["submit"](a, train=world["changed"])  # a new version of the train
    hop = wait_for(lambda: pending_of(a, train_id), "a pending hop", a)
    browser.get(f"{a.url}/hops/{hop.id}")
    diff = browser.find_element(By.ID, "code-diff").text  # against 0.1.0, approved before
    assert '+    return {"rows": state["rows"], "note": "sent home"}' in diff
    assert '-version = "0.1.0"' in diff and '+version = "0.2.0"' in diff
    shoot(browser, shots / "console-diff.png")
    browser.find_element(By.ID, "reason").send_keys("no ethics approval for this cohort yet")
    click(browser, browser.find_element(By.ID, "reject"))
    assert "rejected" in browser.find_element(By.ID, "hop-state").text
    world["researcher"].wait(train_id, timeout_s=120)
    status = subprocess.run(
        [sys.executable, "-m", "train_builder.cli", *world["cli"], "status", train_id],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert "no ethics approval for this cohort yet" in status.stdout, status.stdout
    assert "st-console-a" in status.stdout


def test_a_post_without_the_csrf_token_is_refused(browser, world):
    """Logged in, a form without the token (as another site would post it) changes
    nothing; nor does one with a token of another session."""
    from selenium.webdriver.common.by import By

    a = world["a"]
    train_id = world["submit"](a)
    hop = wait_for(lambda: pending_of(a, train_id), "a pending hop", a)
    for token in (None, "a-token-of-another-session"):
        browser.get(f"{a.url}/hops/{hop.id}")
        browser.execute_script(
            "const f = document.createElement('form'); f.method = 'post';"
            "f.action = arguments[0];"
            "if (arguments[1]) { const i = document.createElement('input');"
            "  i.name = 'csrf'; i.value = arguments[1]; f.appendChild(i); }"
            "document.body.appendChild(f); f.submit();",
            f"/hops/{hop.id}/approve-train",
            token,
        )
        assert "Refused" in browser.find_element(By.TAG_NAME, "body").text
        assert HopQueue(a.directory / "state").get(hop.id).state == HopState.PENDING
    # the same page's own form works: the token was what was missing
    browser.get(f"{a.url}/hops/{hop.id}")
    click(browser, browser.find_element(By.ID, "approve-hop"))
    assert world["researcher"].wait(train_id, timeout_s=120)["status"] == "done"


def test_release_a_held_output_and_the_audit_log_verifies(browser, world, shots):
    from selenium.webdriver.common.by import By

    b = world["b"]
    train_id = world["submit"](b)
    held = wait_for(lambda: pending_of(b, train_id, HopState.HELD), "a held output", b)
    log_in(browser, b)
    browser.get(f"{b.url}/hops/{held.id}")
    page = browser.page_source
    assert "Output (summary only: no values)" in page and "state.json" in page
    no_patient_data(browser)
    shoot(browser, shots / "console-release.png")
    click(browser, browser.find_element(By.ID, "release"))
    assert world["researcher"].wait(train_id, timeout_s=120)["status"] == "done"

    browser.get(f"{b.url}/audit")
    assert browser.find_element(By.ID, "audit-result").text.startswith("Verified")
    assert "by=console:steward" in browser.page_source  # the release, as the CLI writes it
    no_patient_data(browser)
    browser.save_screenshot(str(shots / "console-audit.png"))
    browser.get(f"{b.url}/health")
    assert "docker" in browser.page_source and "base image" in browser.page_source
    browser.save_screenshot(str(shots / "console-health.png"))

    # an edited line shows on the page as it does in 'pht-station audit verify'
    log = b.directory / "state" / "audit.jsonl"
    lines = log.read_text().splitlines()
    lines[1] = lines[1].replace('"event":"', '"event":"x', 1)
    log.write_text("\n".join(lines) + "\n")
    browser.get(f"{b.url}/audit")
    assert "NOT intact" in browser.find_element(By.ID, "audit-result").text


def test_logins_are_limited_after_five_wrong_passwords(browser, world):
    from selenium.webdriver.common.by import By

    b = world["b"]
    browser.delete_all_cookies()
    browser.get(f"{b.url}/")
    assert browser.current_url.endswith("/login")  # a new browser session is logged out
    for _ in range(5):
        log_in(browser, b, password="not the password at all")
        assert "Wrong user name or password" in browser.page_source
    log_in(browser, b)  # the right password, too late
    assert "Too many failed logins" in browser.page_source
    browser.get(f"{b.url}/")
    assert browser.current_url.endswith("/login")
    assert "Log in" in browser.find_element(By.TAG_NAME, "h1").text
