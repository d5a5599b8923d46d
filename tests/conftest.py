"""Shared fixtures. Docker-backed tests need a running Docker Engine and the base image;
``scripts/test.sh`` (and so CI) sets both up, so there they run rather than skip."""

from __future__ import annotations

import os

import pytest


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
