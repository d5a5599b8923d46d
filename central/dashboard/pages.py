"""The dashboard's pages and actions (login and sessions are in ``central.dashboard.app``).

Each page reads through ``central.dashboard.queries``, which applies the API's rules; the
actions call the same identity functions as ``/api/v1/admin``. A page that needs the admin
role answers a researcher 403, as the API does.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

from fastapi import FastAPI, Form, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from central.dashboard import queries
from central.dashboard.graph import route_svg
from central.db import utcnow
from central.errors import ServiceError
from central.identities import Caller
from trains.keys import NAME_PATTERN, PublicIdentity
from trains.manifest import TRAIN_ID_PATTERN

if TYPE_CHECKING:
    from central.dashboard.app import Web

TrainId = Annotated[str, Path(pattern=TRAIN_ID_PATTERN, max_length=36)]
Name = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]
MAX_IDENTITY_CHARS = 4096  # a public.json is about 250 characters


def _admin(request: Request) -> Caller:
    who: Caller = request.state.who
    if who.role != "admin":
        raise ServiceError(403, "forbidden", f"this page needs the role admin, you are {who.role}")
    return who


def add_pages(app: FastAPI, web: Web) -> None:
    """Register the pages on the dashboard ``app``."""
    service = web.ctx.service
    settings = web.ctx.settings

    @app.get("/")
    def overview(request: Request) -> Response:
        who: Caller = request.state.who
        train_counts, hop_counts = queries.state_counts(service, who)
        return web.page(request, "overview.html", train_counts=train_counts,
                        hop_counts=hop_counts, trains=queries.trains(service, who),
                        listed=queries.MAX_LISTED, live=True)  # fmt: skip

    @app.get("/trains/{train_id}")
    def train(request: Request, train_id: TrainId) -> Response:
        view = queries.route(service, request.state.who, train_id)
        return web.page(request, "train.html", view=view, svg=route_svg(view),
                        live_train=train_id, live=True)  # fmt: skip

    @app.get("/live.json")
    def live(request: Request, train: str | None = None) -> Response:
        if train is not None and not _is_train_id(train):
            raise ServiceError(404, "not_found", "no such train")
        body = queries.live(service, request.state.who, train)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/stations")
    def stations(request: Request) -> Response:
        _admin(request)
        usage = _usage(web, queries.trains(service, request.state.who))
        return web.page(request, "stations.html", stations=queries.stations(service),
                        usage=usage, retention_h=settings.retention_h,
                        max_train_mb=settings.max_train_mb)  # fmt: skip

    @app.get("/parties")
    def parties(request: Request) -> Response:
        _admin(request)
        return web.page(request, "parties.html", parties=service.identities.parties())

    @app.post("/parties")
    async def add_party(
        request: Request,
        role: Annotated[str, Form(pattern="^(researcher|station|admin)$")],
        name: Annotated[str, Form(max_length=63)] = "",
        identity: Annotated[str, Form(max_length=MAX_IDENTITY_CHARS)] = "",
        expires_in_days: Annotated[float | None, Form(gt=0, le=36500)] = None,
    ) -> Response:
        _admin(request)
        public = _public(identity) if identity.strip() else None
        if public is not None and name and public.name != name:
            raise ServiceError(422, "name_mismatch", "the identity's name is not the name given")
        name = public.name if public is not None else name
        expires = None if expires_in_days is None else utcnow() + timedelta(days=expires_in_days)
        token = await run_in_threadpool(
            service.identities.register, role, name, public, expires, None
        )
        # shown once, in this answer only (like the CLI): central keeps its hash
        return web.page(request, "token.html", role=role, name=name, token=token,
                        expires=expires)  # fmt: skip

    @app.post("/parties/{role}/{name}/revoke")
    async def revoke(request: Request, role: str, name: Name) -> Response:
        _admin(request)
        if role not in ("researcher", "station", "admin"):
            raise ServiceError(404, "not_found", "no such role")
        await run_in_threadpool(service.identities.revoke, name, role)
        return web.go(request, "/parties", request.state.session, "revoked")


def _is_train_id(value: str) -> bool:
    import re

    return len(value) <= 36 and re.fullmatch(TRAIN_ID_PATTERN, value) is not None


def _public(text: str) -> PublicIdentity:
    """A pasted ``public.json`` (its stated fingerprints are derived again, not trusted)."""
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        for derived in ("signing_fingerprint", "sealing_fingerprint"):
            raw.pop(derived, None)
        return PublicIdentity.model_validate(raw)
    except (ValueError, ValidationError):
        raise ServiceError(
            422, "identity_invalid", "paste the public.json the researcher's 'keys new' wrote"
        ) from None


def _usage(web: Web, trains: list[dict[str, object]]) -> list[dict[str, object]]:
    """Blob bytes each listed train holds at central, against the per-train quota."""
    quota = web.ctx.settings.max_train_mb * 1024 * 1024
    rows = []
    for t in trains:
        used = web.ctx.blobs.usage(str(t["id"]))
        rows.append({**t, "bytes": used, "percent": round(100 * used / quota, 1)})
    return rows
