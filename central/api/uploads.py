"""Blob uploads and downloads over HTTP: streamed, hashed, size-limited, idempotent. An
upload becomes a blob only when the service publishes it (see ``central.blobs``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from central.api.context import Context
from central.blobs import Upload
from central.errors import ServiceError
from trains.errors import StateTooLarge

MB = 1024 * 1024


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def split_first_line(
    body: AsyncIterator[bytes], limit: int
) -> tuple[bytes, AsyncIterator[bytes]]:
    """The first line of a streamed body (without its newline), and the rest, still
    streamed."""
    buffer = b""
    while b"\n" not in buffer:
        if len(buffer) > limit:
            raise ServiceError(
                413, "too_large", f"the first line of the body is over {limit} bytes"
            )
        try:
            buffer += await body.__anext__()
        except StopAsyncIteration:
            raise ServiceError(
                422, "bad_body", "the body ended before the newline after its first line"
            ) from None
    line, rest = buffer.split(b"\n", 1)

    async def remainder() -> AsyncIterator[bytes]:
        if rest:
            yield rest
        async for chunk in body:
            yield chunk

    return line, remainder()


async def receive_body(ctx: Context, request: Request, train_id: str, name: str) -> Upload:
    """:func:`receive` for a request's whole body (checked against the
    ``X-Content-Sha256`` header when the client sent one)."""
    expected = request.headers.get("x-content-sha256")
    return await receive(ctx, _chunks(request), train_id, name, expected)


async def receive(
    ctx: Context,
    chunks: AsyncIterator[bytes],
    train_id: str,
    name: str,
    expected: str | None = None,
) -> Upload:
    """Stream an upload for blob ``name`` to a file of its own, within the state and
    train quotas; the caller publishes it (in the transaction that records its digest)
    or discards it."""
    blobs, settings = ctx.blobs, ctx.settings
    target = blobs.path(train_id, name)
    existing = target.stat().st_size if target.exists() else 0
    room = settings.max_train_mb * MB - await run_in_threadpool(blobs.usage, train_id) + existing
    limit = min(settings.max_state_mb * MB, room)
    try:
        upload = await blobs.stage(train_id, name, chunks, limit)
    except StateTooLarge:
        which = (
            f"the per-state limit of {settings.max_state_mb} MB"
            if limit == settings.max_state_mb * MB
            else f"this train's remaining quota ({settings.max_train_mb} MB for all its states)"
        )
        raise ServiceError(
            413, "too_large", f"the upload exceeds {which}; make the state smaller"
        ) from None
    if expected is not None and expected != upload.digest:
        upload.discard()
        raise ServiceError(
            422, "digest_mismatch", "the upload does not match its X-Content-Sha256; send again"
        )
    return upload


class BlobResponse(FileResponse):
    chunk_size = MB  # 1 MB reads: fewer event-loop round trips than Starlette's 64 kB


def blob_response(path: Path, digest: str) -> FileResponse:
    """Stream a blob from disk in chunks, with its digest for the client to check."""
    if not path.exists():
        raise ServiceError(404, "not_found", "state blob missing (pruned after retention?)")
    return BlobResponse(
        path, media_type="application/octet-stream", headers={"X-Content-Sha256": digest}
    )
