"""Station routes: long-poll for the next hop, renew its lease, fetch its inputs, upload its
output, complete or fail it. A station only ever sees hops routed to it."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from central.api.context import Ctx, Station
from central.api.uploads import blob_response, pending_output, receive, split_first_line, store
from central.errors import ServiceError
from central.records import HopOffer, output_blob
from trains.signing import Envelope

router = APIRouter(prefix="/api/v1", tags=["station"])


class FailRequest(BaseModel):
    reason: str


class CompleteRequest(BaseModel):
    receipt: Envelope


@router.post("/hops/next", responses={204: {"description": "no hop for you (yet)"}})
async def next_hop(
    who: Station,
    ctx: Ctx,
    wait: Annotated[float, Query(ge=0, le=3600, description="long-poll up to this many s")] = 0,
) -> Response:
    """Claim this station's oldest queued hop. With ``wait`` the request is held until a hop
    is queued for the station (answered at once) or ``wait`` seconds pass (204)."""
    deadline = time.monotonic() + min(wait, ctx.settings.long_poll_max_s)
    while True:
        rung = ctx.doorbell.event(who.name)  # before the check: a ring in between counts
        offer = await run_in_threadpool(ctx.service.claim_next, who)
        remaining = deadline - time.monotonic()
        if offer is not None:
            return JSONResponse(offer_body(offer))
        if remaining <= 0:
            return Response(status_code=204)
        await ctx.doorbell.wait(rung, remaining)


def offer_body(offer: HopOffer) -> dict[str, object]:
    """An offer as JSON: ``inputs`` and ``previous_receipts`` in the order the hop reads
    them; ``input_digest`` and ``previous_receipt`` repeat a single one (older stations)."""
    single = len(offer.inputs) <= 1 and len(offer.previous_receipts) <= 1
    return {
        "train_id": offer.train_id,
        "hop": offer.hop,
        "kind": offer.kind,
        "manifest": offer.manifest.model_dump(mode="json"),
        "inputs": [{"hop": i.hop, "digest": i.digest} for i in offer.inputs],
        "previous_receipts": [r.model_dump(mode="json") for r in offer.previous_receipts],
        "input_digest": offer.inputs[0].digest if single and offer.inputs else None,
        "previous_receipt": offer.previous_receipts[0].model_dump(mode="json")
        if single and offer.previous_receipts
        else None,
        "lease_s": offer.lease_s,
    }


@router.post("/trains/{train_id}/hops/{index}/heartbeat")
def heartbeat(train_id: str, index: int, who: Station, ctx: Ctx) -> dict[str, object]:
    """Renew the lease of a running hop; answers the train's status (stop if cancelled)."""
    return ctx.service.heartbeat(who, train_id, index)


@router.get("/trains/{train_id}/hops/{index}/inputs/{position}", response_class=FileResponse)
def hop_input(train_id: str, index: int, position: int, who: Station, ctx: Ctx) -> FileResponse:
    """Input ``position`` (0-based, in the order of the offer's ``inputs``) of a running hop."""
    source = ctx.service.hop_input(who, train_id, index, position)
    return blob_response(ctx.blobs.path(train_id, output_blob(source.hop)), source.digest)


@router.get("/trains/{train_id}/hops/{index}/input", response_class=FileResponse)
def hop_only_input(train_id: str, index: int, who: Station, ctx: Ctx) -> FileResponse:
    """The input of a hop that reads one state."""
    source = ctx.service.hop_input(who, train_id, index, None)
    return blob_response(ctx.blobs.path(train_id, output_blob(source.hop)), source.digest)


@router.put("/trains/{train_id}/hops/{index}/output", status_code=200)
async def hop_output(
    train_id: str, index: int, request: Request, who: Station, ctx: Ctx
) -> dict[str, str]:
    target, replace = await run_in_threadpool(ctx.service.may_upload_output, who, train_id, index)
    return {"digest": await store(ctx, request, train_id, output_blob(target), replace)}


@router.post("/trains/{train_id}/hops/{index}/complete")
def hop_complete(
    train_id: str, index: int, body: CompleteRequest, who: Station, ctx: Ctx
) -> dict[str, str]:
    target, _ = ctx.service.may_upload_output(who, train_id, index)
    upload = pending_output(ctx, train_id, output_blob(target), body.receipt)
    status = ctx.service.complete_hop(who, train_id, index, body.receipt, upload)
    return {"train_status": status}


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
    train_id: str, index: int, request: Request, who: Station, ctx: Ctx
) -> dict[str, str]:
    """Upload a hop's sealed output and complete it with its receipt, in one request: the
    body is the receipt (one line of JSON), a newline, then the sealed state, streamed.
    The same as ``PUT .../output`` then ``POST .../complete``, and as safe to repeat."""
    target, _ = await run_in_threadpool(ctx.service.may_upload_output, who, train_id, index)
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
    return {"digest": upload.digest, "train_status": status}


@router.post("/trains/{train_id}/hops/{index}/fail", status_code=204)
def hop_fail(train_id: str, index: int, body: FailRequest, who: Station, ctx: Ctx) -> None:
    ctx.service.fail_hop(who, train_id, index, body.reason)
