"""What every route needs, built once per app, and the authentication dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from central.blobs import BlobStore
from central.doorbell import Doorbell
from central.errors import ServiceError
from central.identities import Caller
from central.metrics import Metrics
from central.service import Service
from central.settings import CentralSettings


@dataclass
class Context:
    settings: CentralSettings
    service: Service
    blobs: BlobStore
    doorbell: Doorbell
    metrics: Metrics


async def context(request: Request) -> Context:
    # async: FastAPI would run a plain def in the thread pool, one more hop per request
    ctx: Context = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False, description="the API token `pht-central admin` printed")


async def caller(
    request: Request,
    ctx: Annotated[Context, Depends(context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None:
        raise ServiceError(401, "unauthenticated", "send 'Authorization: Bearer <token>'")
    token = credentials.credentials
    found = ctx.service.identities.cached(token) or await run_in_threadpool(
        ctx.service.authenticate, token
    )
    if found is None:
        raise ServiceError(
            401, "unauthenticated", "unknown, expired or revoked token; ask the operator"
        )
    request.state.caller = found
    return found


def _role(role: str):  # type: ignore[no-untyped-def]
    async def check(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if who.role != role:
            raise ServiceError(403, "forbidden", f"this needs the role {role}, you are {who.role}")
        return who

    return check


Ctx = Annotated[Context, Depends(context)]
Anyone = Annotated[Caller, Depends(caller)]
Researcher = Annotated[Caller, Depends(_role("researcher"))]
Station = Annotated[Caller, Depends(_role("station"))]
Admin = Annotated[Caller, Depends(_role("admin"))]
