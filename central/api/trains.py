"""Researcher routes: submit, watch, cancel, fetch manifest, receipts and result."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from central.api.context import Ctx, Researcher
from central.api.params import TrainIdPath
from central.api.uploads import blob_response, receive_body
from central.messages import Cancelled, SubmitRequest, Submitted, TrainSummary, TrainView
from central.records import output_blob
from trains.signing import Envelope

router = APIRouter(prefix="/api/v1/trains", tags=["researcher"])


@router.post("", status_code=201)
def submit(body: SubmitRequest, who: Researcher, ctx: Ctx) -> Submitted:
    return Submitted(train_id=ctx.service.submit(who, body.manifest, body.has_initial_state))


@router.put("/{train_id}/initial-state", status_code=204)
async def initial_state(train_id: TrainIdPath, request: Request, who: Researcher, ctx: Ctx) -> None:
    await run_in_threadpool(ctx.service.status, who, train_id)  # 404 unless the caller's
    upload = await receive_body(ctx, request, train_id, output_blob(None))
    try:  # published only by the transaction that records its digest
        await run_in_threadpool(ctx.service.initial_state_stored, who, train_id, upload)
    finally:
        upload.discard()


@router.get("")
def list_trains(who: Researcher, ctx: Ctx) -> list[TrainSummary]:
    return [TrainSummary.model_validate(t) for t in ctx.service.list_trains(who)]


@router.post("/{train_id}/cancel")
def cancel(train_id: TrainIdPath, who: Researcher, ctx: Ctx) -> Cancelled:
    return Cancelled(status=ctx.service.cancel(who, train_id))


@router.get("/{train_id}")
def status(train_id: TrainIdPath, who: Researcher, ctx: Ctx) -> TrainView:
    return TrainView.model_validate(ctx.service.status(who, train_id))


@router.get("/{train_id}/manifest")
def manifest(train_id: TrainIdPath, who: Researcher, ctx: Ctx) -> Envelope:
    return ctx.service.manifest_envelope(who, train_id)


@router.get("/{train_id}/receipts")
def receipts(train_id: TrainIdPath, who: Researcher, ctx: Ctx) -> list[Envelope]:
    return ctx.service.receipts(who, train_id)


@router.get("/{train_id}/result", response_class=FileResponse)
def result(train_id: TrainIdPath, who: Researcher, ctx: Ctx) -> FileResponse:
    name, digest = ctx.service.final_state(who, train_id)
    return blob_response(ctx.blobs.path(train_id, name), digest)
