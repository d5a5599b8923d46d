"""Shared fixtures. Docker-backed tests need a running Docker Engine and the base image;
``scripts/test.sh`` (and so CI) sets both up, so there they run rather than skip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def docker_ready() -> str | None:
    """None when Docker and the base image are usable, else why not."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        client.images.get("pht-base:latest")
    except Exception as exc:  # any failure means: cannot run these tests here
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def docker_required() -> None:
    reason = docker_ready()
    if reason is not None:
        if os.environ.get("PHT_REQUIRE_DOCKER") == "1":
            pytest.fail(f"Docker tests must run here but cannot: {reason}")
        pytest.skip(f"Docker Engine / base image not available: {reason}")


@pytest.fixture(scope="session")
def localnet(tmp_path_factory, docker_required):
    """One registry and one central (real processes on 127.0.0.1) for the whole session.

    Tests add their own stations and researchers with unique names; pushing the base
    layers to a fresh registry costs about a minute, so the registry is shared."""
    from train_builder.localnet import LocalNet

    with LocalNet(tmp_path_factory.mktemp("localnet")) as net:
        net.start_registry()
        net.start_central()
        yield net


@pytest.fixture(scope="session")
def image_for(localnet):
    """Build and push a train folder once per session: ``image_for(path) -> Image``."""
    from train_builder.image import build_image, push_image

    cache: dict[str, object] = {}

    def build(folder):
        key = str(folder)
        if key not in cache:
            _, tag = build_image(folder, localnet.registry)
            cache[key] = push_image(tag)
        return cache[key]

    return build


# The end-to-end route tests' network: three station daemons holding the reference
# samples of three hospitals, an aggregator station holding no data, and one researcher
# they all trust. Started once per session on the session's localnet (each test module
# used to start its own four daemons, and one its own registry and central too).
SITE_STATIONS = ["site-a", "site-b", "site-c"]
SITE_AGGREGATOR = "site-agg"  # joins parallel rounds; holds no patient data
SITE_SAMPLES = ["hospital-a", "hospital-b", "hospital-c"]  # station i holds site i's rows


@pytest.fixture(scope="session")
def sites(localnet):
    """A :class:`Researcher` that :data:`SITE_STATIONS` and :data:`SITE_AGGREGATOR` trust.
    Each station offers, from its hospital's reference samples: ``cohort`` (the logreg and
    fedavg sample, one file), ``survival`` (km's) and ``counts`` (the cohort train's)."""
    from pathlib import Path

    from central.client import CentralClient
    from train_builder.researcher import Researcher

    reference = Path(__file__).resolve().parents[1] / "trains" / "reference"
    identity, _, token = localnet.add_researcher("dr-sites")
    for name, site in zip(SITE_STATIONS, SITE_SAMPLES, strict=True):
        datasets = {
            "cohort": reference / "logreg" / "sample" / f"{site}.csv",
            "survival": reference / "km" / "sample" / f"{site}.csv",
            "counts": reference / "cohort" / "sample" / f"{site}.csv",
        }
        localnet.add_station(name, datasets, trusted=[identity])
        localnet.start_station(name)
    localnet.add_station(SITE_AGGREGATOR, {}, trusted=[identity])
    localnet.start_station(SITE_AGGREGATOR)
    client = CentralClient(localnet.central_url, token.read_text().strip())
    with Researcher(identity, client, trust=localnet.trust()) as researcher:
        yield researcher


# --- a real browser for the web pages' tests (station console, central dashboard) ---------


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by chromium-driver through Selenium."""
    if shutil.which("chromedriver") is None or shutil.which("chromium") is None:
        reason = "chromium and chromium-driver are not installed (scripts/setup.sh installs them)"
        if os.environ.get("PHT_REQUIRE_DOCKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service as DriverService

    options = Options()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=DriverService(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Where the browser tests' screenshots go: docs/img/ with PHT_SCREENSHOTS=1."""
    if os.environ.get("PHT_SCREENSHOTS") == "1":
        folder = REPO / "docs" / "img"
        folder.mkdir(exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")
