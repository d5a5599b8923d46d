"""Central's HTTP API (``/api/v1``): authenticate, translate, delegate to the service.

Every error leaves as ``{code, message, detail}``; ``/healthz`` and ``/metrics`` sit outside
``/api/v1``; the OpenAPI schema is at ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from central.api import admin, hops, trains
from central.api.context import Anyone, Context, Ctx
from central.api.middleware import RequestMiddleware
from central.blobs import BlobStore
from central.dashboard.app import create_dashboard
from central.db import make_engine, make_sessions
from central.doorbell import Doorbell
from central.errors import ServiceError
from central.messages import Me
from central.metrics import Metrics
from central.retention import collect_garbage
from central.service import Hooks, Service
from central.settings import CentralSettings
from central.wakeup import Wakeups
from trains.enrolment import StationDirectory

log = logging.getLogger("pht.central")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated"}


def error_body(status: int, code: str, message: str, detail: Any = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"code": code, "message": message, "detail": detail}
    )


def create_app(settings: CentralSettings, background: bool = True) -> FastAPI:
    """The app; its database is upgraded to the newest schema first. With ``background``
    (when served), lease expiry, train expiry and blob retention run as periodic tasks."""
    engine = make_engine(settings.database_url)
    doorbell = Doorbell()
    service = Service(
        make_sessions(engine),
        lease_s=settings.lease_s,
        max_attempts=settings.max_attempts,
        token_cache_s=settings.token_cache_s,
        max_lifetime_days=settings.max_manifest_days,
    )
    metrics = Metrics(service.counts)
    wakeups = Wakeups(
        engine, doorbell, service.queued_stations, settings.poll_recheck_s, settings.poll_fallback_s
    )
    service.hooks = Hooks(
        queued=wakeups.queued, notify=wakeups.notify, claimed=metrics.dispatch_latency.observe
    )
    wakeups.add_gauges(metrics.registry)
    blobs = BlobStore(settings.data_dir / "blobs")
    ctx = Context(settings, service, blobs, doorbell, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = []
        if background:

            def sweep() -> None:
                metrics.leases_expired.inc(service.expire_leases())

            def expire() -> None:  # trains past their manifest's expiry
                service.expire_trains()

            def gc() -> None:
                collect_garbage(service, blobs, settings.retention_h)

            # after a restart, give every station one lease period to renew before expiring
            tasks = [
                asyncio.create_task(_every(settings.lease_check_s, sweep, settings.lease_s)),
                asyncio.create_task(_every(settings.gc_interval_s, gc, 0.0)),
                asyncio.create_task(_every(settings.lease_check_s, expire, 0.0)),
                asyncio.create_task(wakeups.listen()),  # hops queued by other processes
                asyncio.create_task(wakeups.run_checks()),  # ... if a notification is lost
            ]
        yield
        for task in tasks:
            task.cancel()
        engine.dispose()

    app = FastAPI(title="pht central", version="1", lifespan=lifespan)
    app.state.ctx = ctx
    app.state.service = service
    app.add_middleware(
        RequestMiddleware,
        metrics=metrics,
        max_header_bytes=settings.max_header_bytes,
        max_header_count=settings.max_header_count,
    )

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_body(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        response = error_body(exc.status_code, code, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return error_body(422, "invalid_request", "the request is not valid", detail)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def prometheus() -> Response:
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4")

    @app.get("/api/v1/stations", tags=["everyone"], response_model=StationDirectory)
    def list_stations(_: Anyone, c: Ctx) -> StationDirectory:
        """Every station's keys with the network root's enrolment of them (if the operator
        stored one), and the root's newest revocation list: central serves, never signs."""
        return c.service.identities.directory()

    @app.get("/api/v1/me", tags=["everyone"])
    def me(who: Anyone) -> Me:
        return Me.model_validate({"role": who.role, "name": who.name})

    app.include_router(trains.router)
    app.include_router(hops.router)
    app.include_router(admin.router)
    app.mount("/dashboard", create_dashboard(ctx))  # web pages, same service and tokens
    return app


async def _every(interval_s: float, job: Callable[[], None], first_after_s: float) -> None:
    await asyncio.sleep(first_after_s)
    while True:
        try:
            await run_in_threadpool(job)
        except Exception:  # a failed sweep must not stop the next one
            log.exception("background job failed", extra={"job": job.__name__})
        await asyncio.sleep(interval_s)


__all__ = ["create_app", "error_body"]
