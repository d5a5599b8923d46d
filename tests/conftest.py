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
