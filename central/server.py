"""Serving central: uvicorn with its httptools parser, the request head bounded where it is
read. httptools buffers a request's URL and headers without limit before the app sees any
of them, so a protocol that counts the bytes of the head answers 431 and closes the
connection as soon as they pass ``max_header_bytes`` (plus at most one read of the socket);
``central.api.middleware`` then bounds the size and number of headers the app accepts."""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_SLACK = 8 * 1024  # the request line and the parser's own framing


class BoundedHttpTools(HttpToolsProtocol):
    max_head_bytes = 16 * 1024 + HEAD_SLACK
    _in_head = False
    _head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self._in_head = False
            body = json.dumps(
                {
                    "code": "headers_too_large",
                    "message": f"the request's headers pass {self.max_head_bytes} bytes",
                    "detail": None,
                }
            ).encode()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/json\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            self.transport.close()


def bounded_http(max_header_bytes: int) -> type[BoundedHttpTools]:
    """The protocol class to hand uvicorn (``http=``) for this limit on headers."""
    return type(
        "BoundedHttpTools",
        (BoundedHttpTools,),
        {"max_head_bytes": max_header_bytes + HEAD_SLACK},
    )
