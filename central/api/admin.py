"""Admin routes: register, list and revoke identities. An admin reads no train and claims
no hop; these routes are all it may call besides /me and /stations."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from central.api.context import Admin, Ctx
from central.db import utcnow
from central.errors import ServiceError
from trains.keys import NAME_PATTERN, PublicIdentity
from trains.signing import Envelope

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class NewParty(BaseModel):
    role: Literal["station", "researcher", "admin"]
    name: str = Field(pattern=NAME_PATTERN)
    identity: PublicIdentity | None = None
    expires_in_days: float | None = Field(None, gt=0, le=36500)
    enrolment: Envelope | None = None  # a station's statement signed by the network root


@router.get("/parties")
def parties(_: Admin, ctx: Ctx) -> list[dict[str, object]]:
    return ctx.service.identities.parties()


@router.post("/parties", status_code=201)
def add_party(body: NewParty, _: Admin, ctx: Ctx) -> dict[str, str]:
    """Register a party and return its token, once."""
    if body.identity is not None and body.identity.name != body.name:
        raise ServiceError(422, "name_mismatch", "the identity's name is not the party's name")
    expires = (
        None if body.expires_in_days is None else utcnow() + timedelta(days=body.expires_in_days)
    )
    token = ctx.service.identities.register(
        body.role, body.name, body.identity, expires, body.enrolment
    )
    return {"role": body.role, "name": body.name, "token": token}


@router.put("/enrolments")
def set_enrolment(body: Envelope, _: Admin, ctx: Ctx) -> dict[str, str]:
    """Store a (renewed) enrolment statement for the active station it names."""
    return {"enrolled": ctx.service.identities.set_enrolment(body)}


@router.put("/revocations")
def set_revocations(body: Envelope, _: Admin, ctx: Ctx) -> dict[str, int]:
    """Store the network root's newest revocation list (a higher serial than any stored)."""
    return {"serial": ctx.service.identities.set_revocations(body)}


@router.post("/parties/{role}/{name}/revoke")
def revoke(
    role: Literal["station", "researcher", "admin"],
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
    _: Admin,
    ctx: Ctx,
) -> dict[str, str]:
    return {"revoked": ctx.service.identities.revoke(name, role), "name": name}
