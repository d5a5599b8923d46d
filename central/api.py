"""Central's HTTP API (``/api/v1``): authenticate, translate, delegate to the service."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from central.blobs import BlobStore
from central.db import make_engine, make_sessions
from central.service import Caller, Service, ServiceError, state_blob
from central.settings import CentralSettings
from trains.errors import StateTooLarge
from trains.keys import PublicIdentity
from trains.sealing import digest_file
from trains.signing import Envelope


class SubmitRequest(BaseModel):
    manifest: Envelope
    has_initial_state: bool = False


class FailRequest(BaseModel):
    reason: str


class CompleteRequest(BaseModel):
    receipt: Envelope


def error_body(status: int, code: str, message: str, detail: Any = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"code": code, "message": message, "detail": detail}
    )


def create_app(settings: CentralSettings) -> FastAPI:
    engine = make_engine(settings.database_url)
    service = Service(make_sessions(engine))
    blobs = BlobStore(settings.data_dir / "blobs")
    max_bytes = settings.max_state_mb * 1024 * 1024
    app = FastAPI(title="pht central", version="1")
    app.state.service = service

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_body(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_body(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return error_body(422, "invalid_request", "the request is not valid", detail)

    def caller(authorization: Annotated[str | None, Header()] = None) -> Caller:
        if not authorization or not authorization.startswith("Bearer "):
            raise ServiceError(401, "unauthenticated", "send 'Authorization: Bearer <token>'")
        found = service.authenticate(authorization.removeprefix("Bearer ").strip())
        if found is None:
            raise ServiceError(401, "unauthenticated", "unknown or revoked token")
        return found

    def role(*roles: str):  # type: ignore[no-untyped-def]
        def check(who: Annotated[Caller, Depends(caller)]) -> Caller:
            if who.role not in roles:
                raise ServiceError(403, "forbidden", f"this needs the role {' or '.join(roles)}")
            return who

        return check

    Researcher = Annotated[Caller, Depends(role("researcher"))]
    Station = Annotated[Caller, Depends(role("station"))]
    Anyone = Annotated[Caller, Depends(caller)]

    async def body_chunks(request: Request) -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            if chunk:
                yield chunk

    async def store(request: Request, train_id: str, name: str) -> str:
        """Stream the request body into blob ``name``; idempotent for identical bytes."""
        try:
            tmp, digest = await blobs.write(train_id, name, body_chunks(request), max_bytes)
        except StateTooLarge as exc:
            raise ServiceError(413, "too_large", str(exc)) from None
        expected = request.headers.get("x-content-sha256")
        target = blobs.path(train_id, name)
        if expected is not None and expected != digest:
            blobs.discard(tmp)
            raise ServiceError(422, "digest_mismatch", "the upload does not match its sha256")
        if target.exists():
            if digest_file(target) != digest:
                blobs.discard(tmp)
                raise ServiceError(409, "exists", "a different state was already uploaded here")
            blobs.discard(tmp)
            return digest
        blobs.commit(tmp, train_id, name)
        return digest

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/stations")
    def list_stations(_: Anyone) -> list[PublicIdentity]:
        return service.stations()

    @app.get("/api/v1/me")
    def me(who: Anyone) -> dict[str, str]:
        return {"role": who.role, "name": who.name}

    @app.post("/api/v1/trains", status_code=201)
    def submit(body: SubmitRequest, who: Researcher) -> dict[str, str]:
        return {"train_id": service.submit(who, body.manifest, body.has_initial_state)}

    @app.put("/api/v1/trains/{train_id}/initial-state", status_code=204)
    async def initial_state(train_id: str, request: Request, who: Researcher) -> None:
        service.status(who, train_id)  # 404 unless it is the caller's train
        digest = await store(request, train_id, state_blob(0))
        service.initial_state_stored(who, train_id, digest)

    @app.get("/api/v1/trains")
    def list_trains(who: Researcher) -> list[dict[str, object]]:
        return service.list_trains(who)

    @app.post("/api/v1/trains/{train_id}/cancel")
    def cancel(train_id: str, who: Researcher) -> dict[str, str]:
        return {"status": service.cancel(who, train_id)}

    @app.get("/api/v1/trains/{train_id}")
    def status(train_id: str, who: Researcher) -> dict[str, object]:
        return service.status(who, train_id)

    @app.get("/api/v1/trains/{train_id}/manifest")
    def manifest(train_id: str, who: Researcher) -> Envelope:
        return service.manifest_envelope(who, train_id)

    @app.get("/api/v1/trains/{train_id}/receipts")
    def receipts(train_id: str, who: Researcher) -> list[Envelope]:
        return service.receipts(who, train_id)

    @app.get("/api/v1/trains/{train_id}/result")
    def result(train_id: str, who: Researcher) -> FileResponse:
        name, digest = service.final_state(who, train_id)
        return _blob_response(blobs.path(train_id, name), digest)

    @app.post("/api/v1/hops/next")
    def next_hop(who: Station) -> Response:
        offer = service.claim_next(who)
        if offer is None:
            return Response(status_code=204)
        return JSONResponse(
            {
                "train_id": offer.train_id,
                "hop": offer.hop,
                "manifest": offer.manifest.model_dump(mode="json"),
                "input_digest": offer.input_digest,
                "previous_receipt": None
                if offer.previous_receipt is None
                else offer.previous_receipt.model_dump(mode="json"),
            }
        )

    @app.get("/api/v1/trains/{train_id}/hops/{index}/input")
    def hop_input(train_id: str, index: int, who: Station) -> FileResponse:
        digest = service.input_digest(who, train_id, index)
        return _blob_response(blobs.path(train_id, state_blob(index)), digest)

    @app.put("/api/v1/trains/{train_id}/hops/{index}/output", status_code=200)
    async def hop_output(
        train_id: str, index: int, request: Request, who: Station
    ) -> dict[str, str]:
        target = service.may_upload_output(who, train_id, index)
        return {"digest": await store(request, train_id, state_blob(target))}

    @app.post("/api/v1/trains/{train_id}/hops/{index}/complete")
    def hop_complete(
        train_id: str, index: int, body: CompleteRequest, who: Station
    ) -> dict[str, str]:
        target = service.may_upload_output(who, train_id, index)
        path = blobs.path(train_id, state_blob(target))
        if not path.exists():
            raise ServiceError(409, "no_output", "upload the output state before completing")
        status = service.complete_hop(who, train_id, index, body.receipt, digest_file(path))
        return {"train_status": status}

    @app.post("/api/v1/trains/{train_id}/hops/{index}/fail", status_code=204)
    def hop_fail(train_id: str, index: int, body: FailRequest, who: Station) -> None:
        service.fail_hop(who, train_id, index, body.reason)

    return app


def _blob_response(path: Path, digest: str) -> FileResponse:
    if not path.exists():
        raise ServiceError(404, "not_found", "state blob missing")
    return FileResponse(
        path, media_type="application/octet-stream", headers={"X-Content-Sha256": digest}
    )
