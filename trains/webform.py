"""Bounds on what a web page's POST may send, checked before a byte of it is parsed.

The station console and central's dashboard read forms of a few short fields (a CSRF
token, a password or an API token, a reason, a pasted ``public.json``). Starlette would
parse up to 1000 fields of 1 MB each, and multipart files of any size to temporary disk,
before a route's CSRF check could refuse them: anyone who can reach the page, logged in or
not, could make the server hold gigabytes. This ASGI middleware lets a POST through only
as a URL-encoded form with a Content-Length of at most ``MAX_FORM_BYTES`` (browsers always
send one for a form), and counts the bytes as they arrive in case the length lies. Plain
ASGI, no imports: it wraps either app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_FORM_BYTES = 64 * 1024
FORM_TYPE = b"application/x-www-form-urlencoded"
_NO_BODY = {"GET", "HEAD", "OPTIONS"}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(Exception):
    pass


class FormLimit:
    """ASGI middleware: refuse a request body that is not a small URL-encoded form."""

    def __init__(self, app: App, max_bytes: int = MAX_FORM_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length_text = headers.get(b"content-length")
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        try:
            length = int(length_text) if length_text is not None else None
        except ValueError:
            length = None
        if length is None or length < 0:
            await _refuse(send, 411, "A form must be sent with its Content-Length.")
            return
        if length > self.max_bytes:
            await _refuse(send, 413, f"A form may hold at most {self.max_bytes} bytes.")
            return
        if length > 0 and kind != FORM_TYPE:
            await _refuse(send, 415, "Only URL-encoded forms are accepted here.")
            return
        seen = 0
        started = False

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max(length, 0):
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded, watched)
        except _TooLarge:
            if started:
                raise
            await _refuse(send, 413, "The form was longer than its Content-Length.")


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
