"""Station routes: long-poll for the next hop, renew its lease, fetch its inputs, deliver
its output with its receipt, or fail it. A station only ever sees hops routed to it. Every
body and answer is a model from ``central.messages``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from central.api.context import Ctx, Station
from central.api.params import HopPath, PositionPath, TrainIdPath
from central.api.uploads import blob_response, receive, split_first_line
from central.errors import ServiceError
from central.messages import Delivered, FailRequest, Heartbeat, HopOffer
from central.presence import HEADER
from central.records import output_blob
from trains.signing import Envelope

router = APIRouter(prefix="/api/v1", tags=["station"])


@router.post(
    "/hops/next",
    response_model=HopOffer,
    responses={204: {"description": "no hop for you (yet)"}},
)
async def next_hop(
    who: Station,
    ctx: Ctx,
    wait: Annotated[float, Query(ge=0, le=3600, description="long-poll up to this many s")] = 0,
    version: Annotated[
        str | None, Header(alias=HEADER, description="the station's software version")
    ] = None,
) -> HopOffer | Response:
    """Claim this station's oldest queued hop. With ``wait`` the request is held until a hop
    is queued for the station (answered at once) or ``wait`` seconds pass (204). The poll
    is the station's sign of life (``central.presence``)."""
    if ctx.service.presence.due(who, version):  # at most one write per station per 5 s
        await run_in_threadpool(ctx.service.presence.seen, who, version)
    deadline = time.monotonic() + min(wait, ctx.settings.long_poll_max_s)
    while True:
        rung = ctx.doorbell.event(who.name)  # before the check: a ring in between counts
        offer = await run_in_threadpool(ctx.service.claim_next, who)
        remaining = deadline - time.monotonic()
        if offer is not None:
            return offer
        if remaining <= 0:
            return Response(status_code=204)
        if await ctx.doorbell.wait(rung, remaining):
            ctx.metrics.long_poll_wakes.inc()


@router.post("/trains/{train_id}/hops/{index}/heartbeat")
def heartbeat(train_id: TrainIdPath, index: HopPath, who: Station, ctx: Ctx) -> Heartbeat:
    """Renew the lease of a running hop; answers the train's status (stop if cancelled)."""
    return ctx.service.heartbeat(who, train_id, index)


@router.get("/trains/{train_id}/hops/{index}/inputs/{position}", response_class=FileResponse)
def hop_input(
    train_id: TrainIdPath, index: HopPath, position: PositionPath, who: Station, ctx: Ctx
) -> FileResponse:
    """Input ``position`` (0-based, in the order of the offer's ``inputs``) of a running hop."""
    source = ctx.service.hop_input(who, train_id, index, position)
    return blob_response(ctx.blobs.path(train_id, output_blob(source.hop)), source.digest)


RECEIPT_LINE_LIMIT = 1024 * 1024


@router.post(
    "/trains/{train_id}/hops/{index}/result",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                }
            },
            "description": "the hop's signed receipt as one line of JSON, a newline, then "
            "the sealed output state",
        }
    },
)
async def hop_result(
    train_id: TrainIdPath, index: HopPath, request: Request, who: Station, ctx: Ctx
) -> Delivered:
    """Upload a hop's sealed output and complete it with its receipt, in one request: the
    body is the receipt (one line of JSON), a newline, then the sealed state, streamed.
    Safe to repeat: the same bytes and receipt again are accepted."""
    target = await run_in_threadpool(ctx.service.may_upload_output, who, train_id, index)
    line, state = await split_first_line(request.stream(), RECEIPT_LINE_LIMIT)
    try:
        receipt = Envelope.model_validate_json(line)
    except ValidationError:
        raise ServiceError(
            422, "bad_receipt", "the first line of the body is not a receipt envelope"
        ) from None
    upload = await receive(ctx, state, train_id, output_blob(target))
    try:  # published only by the completing transaction, under the train's lock
        status = await run_in_threadpool(
            ctx.service.complete_hop, who, train_id, index, receipt, upload
        )
    finally:
        upload.discard()
    return Delivered(digest=upload.digest, train_status=status)


@router.post("/trains/{train_id}/hops/{index}/fail", status_code=204)
def hop_fail(
    train_id: TrainIdPath, index: HopPath, body: FailRequest, who: Station, ctx: Ctx
) -> None:
    """Report that a running hop failed or was refused (only its station, under a live
    lease); the train fails with this reason unless it already failed for another."""
    ctx.service.fail_hop(who, train_id, index, body.reason)
