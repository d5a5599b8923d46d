"""Central's request heads are bounded: too large or too many headers are answered 4xx, on
a real ``pht-central serve`` process (the limit sits in its HTTP parser, not only the app)."""

from __future__ import annotations

import socket

import httpx
import pytest

from central.testing_server import CentralServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with CentralServer(tmp_path_factory.mktemp("central-headers")) as running:
        yield running


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Big": "a" * 200_000},
        {f"X-H{i}": "v" for i in range(500)},
        {"Authorization": "Bearer " + "t" * 100_000},
    ],
    ids=["one_huge_header", "too_many_headers", "huge_token"],
)
def test_oversized_or_too_many_headers_get_4xx_never_5xx(server, headers):
    try:
        response = httpx.get(f"{server.url}/api/v1/me", headers=headers, timeout=30)
    except httpx.RemoteProtocolError:
        pytest.fail("the server dropped the connection instead of answering 4xx")
    assert response.status_code in (400, 431), response.text
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_an_endless_header_is_cut_off_early_not_buffered(server):
    """64 MB of one header value: central answers 431 and closes the connection long
    before the sender is done (httptools alone would buffer all of it)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):
                sock.sendall(b"a" * (1 << 20))
                sent += 1
        except OSError:  # central closed the connection: the rest is refused unread
            pass
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except OSError:
            pass
    assert sent < 64, "central read a 64 MB header to its end"
    # the 431 arrives, unless the reset of the unread rest overtook it on the way
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
