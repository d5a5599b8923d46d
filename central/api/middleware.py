"""Request ids, access logs, request metrics, header limits and the catch-all for unexpected
errors, as one plain ASGI middleware (it must see streamed bodies pass without buffering).

Header limits: uvicorn's httptools parser bounds neither the size nor the number of request
headers, so every request whose headers are over ``max_header_bytes`` together or more than
``max_header_count`` is answered 431 before any route, authentication or database sees it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central import logs
from central.metrics import Metrics

log = logging.getLogger("pht.central")


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_header_bytes: int = 16 * 1024,
        max_header_count: int = 64,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_headers = scope.get("headers") or []
        if len(raw_headers) > self.max_header_count or (
            sum(len(k) + len(v) for k, v in raw_headers) > self.max_header_bytes
        ):
            await _answer(
                send,
                431,
                "headers_too_large",
                f"send at most {self.max_header_count} headers and "
                f"{self.max_header_bytes} bytes of them",
            )
            return
        headers = dict(raw_headers)
        raw = headers.get(b"x-request-id")
        request_id = logs.accept_request_id(None if raw is None else raw.decode("latin-1"))
        logs.request_id.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error", extra={"path": scope.get("path")})
            if response_started:
                raise
            await _internal_error(send_with_id, request_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.request_latency.labels(scope["method"], template, str(status)).observe(
                elapsed
            )
            caller: Any = getattr(scope.get("state", {}).get("caller"), "name", None)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope.get("path"),
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "caller": caller,
                },
            )


async def _internal_error(send: Send, request_id: str) -> None:
    await _answer(
        send,
        500,
        "internal",
        "central hit an unexpected error; the operator finds it in the log "
        f"under request id {request_id}",
    )


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message, "detail": None}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
