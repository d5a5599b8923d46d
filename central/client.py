"""The httpx client stations and researchers use to talk to central.

Every answer is parsed into its model from ``central.messages`` (or refused as a
:class:`~trains.errors.BadAnswer`), and every identifier that goes into a URL is checked
first: what central or a man-in-the-middle sends never becomes a path unchecked."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from central.messages import (
    MAX_REASON,
    Cancelled,
    Delivered,
    Heartbeat,
    HopOffer,
    Me,
    Submitted,
    TrainSummary,
    TrainView,
)
from trains.chunkreader import ChunkReader, Prefetch
from trains.enrolment import StationDirectory
from trains.errors import (
    BadAnswer,
    CentralError,
    CentralUnreachable,
    ConfigError,
)
from trains.keys import PublicIdentity
from trains.manifest import MAX_HOPS, TRAIN_ID_PATTERN
from trains.sealstream import Hashing
from trains.signing import Envelope

T = TypeVar("T")
MB = 1024 * 1024
MAX_MESSAGE_BYTES = 64 * MB  # the largest JSON answer read (an offer of a long route)
ERROR_BYTES = 64 * 1024  # of an error answer, read at most this much
ERROR_CHARS = 500  # and keep this much of its words
_TRAIN_ID = re.compile(TRAIN_ID_PATTERN)


def _version() -> str:
    try:
        return metadata.version("pht")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


VERSION = _version()  # sent as X-PHT-Version: a station's dashboard row shows it


class CentralClient:
    def __init__(
        self,
        url: str,
        token: str,
        timeout: float = 30.0,
        max_download_bytes: int | None = None,
    ) -> None:
        """``max_download_bytes``: the largest sealed state this side will download (a
        station: what its caps let a hop write; None: no bound)."""
        self.url = url.rstrip("/")
        self.max_download_bytes = max_download_bytes
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "X-PHT-Version": VERSION},
            timeout=httpx.Timeout(timeout, read=max(timeout, 300.0)),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CentralClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; its answer read whole, but never past ``MAX_MESSAGE_BYTES`` (large
        states are streamed to files by :meth:`_download` instead)."""
        try:
            request = self._http.build_request(method, path, **kwargs)
            streamed = self._http.send(request, stream=True)
            try:
                body = bytearray()
                for chunk in streamed.iter_bytes():
                    body += chunk
                    if len(body) > MAX_MESSAGE_BYTES:
                        raise BadAnswer(
                            f"central's answer to {method} {path} is over "
                            f"{MAX_MESSAGE_BYTES // MB} MB; ignored, asking again later"
                        )
            finally:
                streamed.close()
        except httpx.HTTPError as exc:
            raise CentralUnreachable(
                f"cannot reach central at {self.url} ({exc.__class__.__name__}: {exc}); "
                "check the URL and that central is running"
            ) from None
        kept = [(k, v) for k, v in streamed.headers.items() if k.lower() not in _FRAMING]
        response = httpx.Response(
            streamed.status_code, headers=kept, content=bytes(body), request=request
        )
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _parse(self, response: httpx.Response, model: type[T] | TypeAdapter[T]) -> T:
        """The answer as its message model; anything else is a BadAnswer (worth retrying:
        a man-in-the-middle or a broken proxy, never the station's or researcher's fault)."""
        adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
        try:
            return adapter.validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            raise BadAnswer(
                f"central's answer to {response.request.method} {response.request.url.path} "
                f"is not a valid message ({where}: {first['msg']}); ignored, asking again later"
            ) from None

    # -- everyone ---------------------------------------------------------------------

    def me(self) -> Me:
        return self._parse(self._request("GET", "/api/v1/me"), Me)

    def stations(self) -> list[PublicIdentity]:
        return [entry.identity for entry in self.station_directory().stations]

    def station_directory(self) -> StationDirectory:
        """Every station's keys and enrolment, and the revocation list: all as central
        claims them; trains.enrolment / train_builder.trust decide what to believe."""
        return self._parse(self._request("GET", "/api/v1/stations"), StationDirectory)

    # -- researcher -------------------------------------------------------------------

    def submit(self, manifest: Envelope, initial_state: bytes | None = None) -> str:
        body = {
            "manifest": manifest.model_dump(mode="json"),
            "has_initial_state": initial_state is not None,
        }
        train_id = self._parse(self._request("POST", "/api/v1/trains", json=body), Submitted)
        if initial_state is not None:
            self._request(
                "PUT",
                f"{_train(train_id.train_id)}/initial-state",
                content=initial_state,
                headers={"X-Content-Sha256": "sha256:" + hashlib.sha256(initial_state).hexdigest()},
            )
        return train_id.train_id

    def status(self, train_id: str) -> dict[str, Any]:
        view = self._parse(self._request("GET", _train(train_id)), TrainView)
        return view.model_dump(mode="json")

    def list_trains(self) -> list[dict[str, Any]]:
        trains = self._parse(self._request("GET", "/api/v1/trains"), _SUMMARIES)
        return [t.model_dump(mode="json") for t in trains]

    def cancel(self, train_id: str) -> str:
        return self._parse(self._request("POST", f"{_train(train_id)}/cancel"), Cancelled).status

    def manifest(self, train_id: str) -> Envelope:
        return self._parse(self._request("GET", f"{_train(train_id)}/manifest"), Envelope)

    def receipts(self, train_id: str) -> list[Envelope]:
        return self._parse(self._request("GET", f"{_train(train_id)}/receipts"), _ENVELOPES)

    def result(self, train_id: str) -> bytes:
        return self._request("GET", f"{_train(train_id)}/result").content

    # -- station ----------------------------------------------------------------------

    def next_hop(self, wait: float = 0) -> HopOffer | None:
        """Claim this station's next hop, or None. With ``wait`` > 0 central holds the
        request until a hop is queued for this station (answered at once) or ``wait``
        seconds pass: a long poll, so a station need not poll in a tight loop."""
        params = {"wait": wait} if wait > 0 else None
        response = self._request("POST", "/api/v1/hops/next", params=params)
        if response.status_code == 204:
            return None
        return self._parse(response, HopOffer)

    def heartbeat(self, train_id: str, hop: int) -> str:
        """Renew the lease on a hop this station runs; return the train's status.

        Raises CentralError (409, lease_lost) when the lease already ran out and the hop was
        offered again: stop working on it. A status of ``cancelled`` means: stop too."""
        response = self._request("POST", f"{_hop(train_id, hop)}/heartbeat")
        return self._parse(response, Heartbeat).train_status

    def download_input(self, train_id: str, hop: int, target: Path, position: int) -> str:
        """Stream input ``position`` (the offer's order) of our hop to ``target``; its sha256."""
        _index(position, "input position")
        url = f"{_hop(train_id, hop)}/inputs/{position}"
        return self._download(url, target, f"input {position} of hop {hop}")

    def open_input(
        self, train_id: str, hop: int, position: int, consume: Callable[[ChunkReader], T]
    ) -> tuple[str, T]:
        """Hand input ``position`` of our hop to ``consume`` as it arrives (no file): the
        sha256 of every byte central sent (the rest is received after ``consume`` returns)
        and what ``consume`` returned. The caller checks the digest before it uses
        anything ``consume`` made of the bytes."""
        _index(position, "input position")
        url = f"{_hop(train_id, hop)}/inputs/{position}"
        return self._stream(url, f"input {position} of hop {hop}", consume)

    def download_result(self, train_id: str, target: Path) -> str:
        """Stream a finished train's final sealed state into ``target``; its sha256."""
        return self._download(f"{_train(train_id)}/result", target, "the result")

    def _download(self, url: str, target: Path, what: str) -> str:
        """Stream ``url`` into ``target``, at most ``max_download_bytes``: central or a
        man-in-the-middle cannot fill this machine's disk (past the bound, the file is
        removed and StateTooLarge raised). Returns the sha256 of what was written."""

        def write(source: ChunkReader) -> None:
            with target.open("wb") as out:
                buffer = memoryview(bytearray(1 << 20))
                while got := source.readinto(buffer):
                    out.write(buffer[:got])

        try:
            return self._stream(url, what, write)[0]
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def _stream(self, url: str, what: str, consume: Callable[[ChunkReader], T]) -> tuple[str, T]:
        """GET ``url`` into ``consume``, at most ``max_download_bytes``, hashing every byte
        (hashed in a thread while the next piece arrives)."""
        digest = Hashing()
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise _error(response, _bounded(response, ERROR_BYTES))
                with Prefetch(response.iter_bytes(1 << 20)) as chunks:
                    source = ChunkReader(iter(chunks), digest, self.max_download_bytes, what)
                    result = consume(source)
                    source.drain()  # the digest covers every byte sent, as a file's would
        except httpx.HTTPError as exc:
            raise CentralUnreachable(f"downloading {what} failed: {exc}") from None
        finally:
            digest.close()
        return "sha256:" + digest.hexdigest(), result

    def deliver(
        self, train_id: str, hop: int, sealed: bytes | Path, receipt: Envelope
    ) -> tuple[str, str]:
        """Upload a hop's sealed output and complete it with its receipt in one request (a
        file is streamed, never read whole); return (the output's digest, the train's
        status). Safe to repeat: central accepts the same bytes and receipt again."""
        line = receipt.model_dump_json().encode() + b"\n"
        if isinstance(sealed, Path):
            size = sealed.stat().st_size
            content: bytes | Iterator[bytes] = itertools.chain([line], _file_chunks(sealed))
        else:
            size, content = len(sealed), line + sealed
        response = self._request(
            "POST",
            f"{_hop(train_id, hop)}/result",
            content=content,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(line) + size),
            },
        )
        done = self._parse(response, Delivered)
        return done.digest, done.train_status

    def fail(self, train_id: str, hop: int, reason: str) -> None:
        """Tell central a hop we run failed or was refused (the reason is cut to what
        central keeps)."""
        body = {"reason": reason[:MAX_REASON] or "refused by the station"}
        self._request("POST", f"{_hop(train_id, hop)}/fail", json=body)


_FRAMING = {"content-encoding", "content-length", "transfer-encoding"}  # already undone
_SUMMARIES = TypeAdapter(list[TrainSummary])
_ENVELOPES = TypeAdapter(list[Envelope])


def _train(train_id: str) -> str:
    """The URL of a train; a train id that is not a UUID never reaches a URL."""
    if not _TRAIN_ID.fullmatch(train_id):
        raise ConfigError(
            f"{train_id[:80]!r} is not a train id (a UUID such as "
            "0b5e9a4e-8c1f-4f43-9d2a-6f0f2f3e1a7b); 'pht-train list' shows yours"
        )
    return f"/api/v1/trains/{train_id}"


def _index(value: int, what: str) -> int:
    if not 0 <= value < MAX_HOPS:
        raise ConfigError(f"{what} {value} is out of range (0..{MAX_HOPS - 1})")
    return value


def _hop(train_id: str, hop: int) -> str:
    return f"{_train(train_id)}/hops/{_index(hop, 'hop')}"


def _bounded(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of a streamed body (the rest is not read)."""
    body = b""
    for chunk in response.iter_bytes(1 << 16):
        body += chunk
        if len(body) >= limit:
            break
    return body[:limit]


def _error(response: httpx.Response, body: bytes | None = None) -> CentralError:
    """Central's refusal as an error, its words cut to ERROR_CHARS: they travel on into
    logs, the audit log and the researcher's terminal."""
    raw = response.content[:ERROR_BYTES] if body is None else body
    message = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        message = parsed["message"]
        if isinstance(parsed.get("detail"), str) and parsed["detail"]:
            message += f" ({parsed['detail']})"
    if len(message) > ERROR_CHARS:
        message = message[:ERROR_CHARS] + "..."
    kind = CentralUnreachable if response.status_code >= 500 else CentralError
    return kind(f"central refused ({response.status_code}): {message}")


def _file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk
