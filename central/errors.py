"""The one error central's service raises: an HTTP status, a stable code and a message that
says what to do. ``central.api`` turns it into the body ``{code, message, detail}``."""

from __future__ import annotations

from trains.errors import PhtError


class ServiceError(PhtError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(what: str) -> ServiceError:
    return ServiceError(404, "not_found", f"{what} not found")
