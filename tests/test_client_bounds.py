"""What the client takes from central is bounded: a download past the largest state this
side can open, and an error's words. The answers come from a hostile server of our own on
127.0.0.1, standing in for a malicious central or a man-in-the-middle."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from central.client import ERROR_CHARS, CentralClient
from trains.errors import CentralError, StateTooLarge
from trains.sealing import sealed_size_bound

MB = 1024 * 1024
TRAIN = str(uuid.uuid4())


class Hostile(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        status, body = self.answers.get(self.path, (404, b"{}"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # the client may stop reading: what it should do past its bound
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[tuple[str, dict[str, tuple[int, bytes]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Hostile.answers = {}
    yield f"http://127.0.0.1:{server.server_address[1]}", Hostile.answers
    server.shutdown()


def test_a_download_past_the_bound_is_refused_and_leaves_no_file(hostile, tmp_path):
    url, answers = hostile
    answers[f"/api/v1/trains/{TRAIN}/hops/0/inputs/0"] = (200, b"\0" * (8 * MB))
    target = tmp_path / "input.sealed"
    client = CentralClient(url, "t", max_download_bytes=2 * MB)
    with client, pytest.raises(StateTooLarge, match="larger than any state"):
        client.download_input(TRAIN, 0, target, 0)
    assert not target.exists()


def test_a_download_within_the_bound_arrives_whole(hostile, tmp_path):
    url, answers = hostile
    answers[f"/api/v1/trains/{TRAIN}/hops/0/inputs/0"] = (200, b"x" * MB)
    target = tmp_path / "input.sealed"
    with CentralClient(url, "t", max_download_bytes=sealed_size_bound(MB)) as client:
        client.download_input(TRAIN, 0, target, 0)
    assert target.read_bytes() == b"x" * MB


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(["a", "list"]).encode(),
        json.dumps({"message": ["not", "text"], "detail": {"x": 1}}).encode(),
        json.dumps({"message": "m" * (10 * MB)}).encode(),
        b"\xff\xfe not json " * 100_000,
    ],
    ids=["list", "wrong-types", "10MB-message", "not-json"],
)
def test_an_error_answer_of_any_shape_is_a_short_central_error(hostile, tmp_path, body):
    url, answers = hostile
    answers["/api/v1/me"] = (403, body)
    answers[f"/api/v1/trains/{TRAIN}/hops/0/inputs/0"] = (403, body)
    with CentralClient(url, "t") as client:
        with pytest.raises(CentralError) as caught:
            client.me()
        assert len(str(caught.value)) < ERROR_CHARS + 100
        with pytest.raises(CentralError) as caught:
            client.download_input(TRAIN, 0, tmp_path / "x", 0)
        assert len(str(caught.value)) < ERROR_CHARS + 100
