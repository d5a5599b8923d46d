"""The httpx client stations and researchers use to talk to central."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from trains.enrolment import StationDirectory
from trains.errors import CentralError, CentralUnreachable
from trains.keys import PublicIdentity
from trains.sealing import digest_file
from trains.signing import Envelope


@dataclass(frozen=True)
class HopInput:
    """One state a hop reads: the hop that wrote it (None: the initial state), its digest."""

    hop: int | None
    digest: str


@dataclass(frozen=True)
class HopOffer:
    """A hop central hands a station. ``inputs`` and ``previous_receipts`` are in the order
    the hop reads them; an offer made with the single ``input_digest``/``previous_receipt``
    of a sequential hop gets them filled in (input from hop - 1, or the initial state)."""

    train_id: str
    hop: int
    manifest: Envelope
    input_digest: str | None = None
    previous_receipt: Envelope | None = None
    lease_s: float = 0.0  # renew with CentralClient.heartbeat well within this
    kind: str = "local"  # what central says; the station runs what the manifest pins
    inputs: tuple[HopInput, ...] = ()
    previous_receipts: tuple[Envelope, ...] = ()

    def __post_init__(self) -> None:
        if not self.inputs and self.input_digest is not None:
            source = self.hop - 1 if self.hop > 0 else None
            object.__setattr__(self, "inputs", (HopInput(source, self.input_digest),))
        if not self.previous_receipts and self.previous_receipt is not None:
            object.__setattr__(self, "previous_receipts", (self.previous_receipt,))


class CentralClient:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, read=max(timeout, 300.0)),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CentralClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CentralUnreachable(
                f"cannot reach central at {self.url} ({exc.__class__.__name__}: {exc}); "
                "check the URL and that central is running"
            ) from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    # -- everyone ---------------------------------------------------------------------

    def me(self) -> dict[str, str]:
        return self._request("GET", "/api/v1/me").json()  # type: ignore[no-any-return]

    def stations(self) -> list[PublicIdentity]:
        return [entry.identity for entry in self.station_directory().stations]

    def station_directory(self) -> StationDirectory:
        """Every station's keys and enrolment, and the revocation list: all as central
        claims them; trains.enrolment / train_builder.trust decide what to believe."""
        response = self._request("GET", "/api/v1/stations")
        try:
            return StationDirectory.model_validate_json(response.content)
        except ValueError as exc:
            raise CentralError(f"central's station list is malformed: {exc}") from None

    # -- researcher -------------------------------------------------------------------

    def submit(self, manifest: Envelope, initial_state: bytes | None = None) -> str:
        body = {
            "manifest": manifest.model_dump(mode="json"),
            "has_initial_state": initial_state is not None,
        }
        train_id: str = self._request("POST", "/api/v1/trains", json=body).json()["train_id"]
        if initial_state is not None:
            self._request(
                "PUT",
                f"/api/v1/trains/{train_id}/initial-state",
                content=initial_state,
                headers={"X-Content-Sha256": "sha256:" + hashlib.sha256(initial_state).hexdigest()},
            )
        return train_id

    def status(self, train_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/trains/{train_id}").json()  # type: ignore[no-any-return]

    def list_trains(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v1/trains").json()  # type: ignore[no-any-return]

    def cancel(self, train_id: str) -> str:
        return self._request("POST", f"/api/v1/trains/{train_id}/cancel").json()["status"]  # type: ignore[no-any-return]

    def manifest(self, train_id: str) -> Envelope:
        return Envelope.model_validate(
            self._request("GET", f"/api/v1/trains/{train_id}/manifest").json()
        )

    def receipts(self, train_id: str) -> list[Envelope]:
        raw = self._request("GET", f"/api/v1/trains/{train_id}/receipts").json()
        return [Envelope.model_validate(r) for r in raw]

    def result(self, train_id: str) -> bytes:
        return self._request("GET", f"/api/v1/trains/{train_id}/result").content

    # -- station ----------------------------------------------------------------------

    def next_hop(self, wait: float = 0) -> HopOffer | None:
        """Claim this station's next hop, or None. With ``wait`` > 0 central holds the
        request until a hop is queued for this station (answered at once) or ``wait``
        seconds pass: a long poll, so a station need not poll in a tight loop."""
        params = {"wait": wait} if wait > 0 else None
        response = self._request("POST", "/api/v1/hops/next", params=params)
        if response.status_code == 204:
            return None
        raw = response.json()
        prev = raw.get("previous_receipt")
        return HopOffer(
            train_id=raw["train_id"],
            hop=raw["hop"],
            manifest=Envelope.model_validate(raw["manifest"]),
            input_digest=raw.get("input_digest"),
            previous_receipt=None if prev is None else Envelope.model_validate(prev),
            lease_s=float(raw.get("lease_s", 0.0)),
            kind=raw.get("kind", "local"),
            inputs=tuple(HopInput(i["hop"], i["digest"]) for i in raw.get("inputs", [])),
            previous_receipts=tuple(
                Envelope.model_validate(r) for r in raw.get("previous_receipts", [])
            ),
        )

    def heartbeat(self, train_id: str, hop: int) -> str:
        """Renew the lease on a hop this station runs; return the train's status.

        Raises CentralError (409, lease_lost) when the lease already ran out and the hop was
        offered again: stop working on it. A status of ``cancelled`` means: stop too."""
        return self._request(  # type: ignore[no-any-return]
            "POST", f"/api/v1/trains/{train_id}/hops/{hop}/heartbeat"
        ).json()["train_status"]

    def download_input(
        self, train_id: str, hop: int, target: Path, position: int | None = None
    ) -> None:
        """Stream input ``position`` of a hop we run (None: its only input) to ``target``."""
        if position is None:
            url, what = f"/api/v1/trains/{train_id}/hops/{hop}/input", f"the input of hop {hop}"
        else:
            url = f"/api/v1/trains/{train_id}/hops/{hop}/inputs/{position}"
            what = f"input {position} of hop {hop}"
        self._download(url, target, what)

    def download_result(self, train_id: str, target: Path) -> None:
        """Stream the final sealed state of a finished train into ``target``."""
        self._download(f"/api/v1/trains/{train_id}/result", target, "the result")

    def _download(self, url: str, target: Path, what: str) -> None:
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                with target.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise CentralUnreachable(f"downloading {what} failed: {exc}") from None

    def upload_output(self, train_id: str, hop: int, sealed: bytes | Path) -> str:
        """Upload a hop's sealed output; a file is streamed, never read whole."""
        if isinstance(sealed, Path):
            digest = digest_file(sealed)
            content: bytes | Iterator[bytes] = _file_chunks(sealed)
            headers = {"X-Content-Sha256": digest, "Content-Length": str(sealed.stat().st_size)}
        else:
            digest = "sha256:" + hashlib.sha256(sealed).hexdigest()
            content, headers = sealed, {"X-Content-Sha256": digest}
        self._request(
            "PUT", f"/api/v1/trains/{train_id}/hops/{hop}/output", content=content, headers=headers
        )
        return digest

    def complete(self, train_id: str, hop: int, receipt: Envelope) -> str:
        body = {"receipt": receipt.model_dump(mode="json")}
        return self._request(  # type: ignore[no-any-return]
            "POST", f"/api/v1/trains/{train_id}/hops/{hop}/complete", json=body
        ).json()["train_status"]

    def deliver(
        self, train_id: str, hop: int, sealed: bytes | Path, receipt: Envelope
    ) -> tuple[str, str]:
        """Upload a hop's sealed output and complete it with its receipt in one request (a
        file is streamed, never read whole); return (the output's digest, the train's
        status). Safe to repeat, as upload + complete are."""
        line = receipt.model_dump_json().encode() + b"\n"
        if isinstance(sealed, Path):
            size = sealed.stat().st_size
            content: bytes | Iterator[bytes] = _chained(line, _file_chunks(sealed))
        else:
            size, content = len(sealed), line + sealed
        body = self._request(
            "POST",
            f"/api/v1/trains/{train_id}/hops/{hop}/result",
            content=content,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(line) + size),
            },
        ).json()
        return body["digest"], body["train_status"]

    def fail(self, train_id: str, hop: int, reason: str) -> None:
        self._request("POST", f"/api/v1/trains/{train_id}/hops/{hop}/fail", json={"reason": reason})


def _error(response: httpx.Response) -> CentralError:
    try:
        body = response.json()
        message = body.get("message") or str(body)
        if body.get("detail"):
            message += f" ({body['detail']})"
    except ValueError:
        message = response.text[:300]
    kind = CentralUnreachable if response.status_code >= 500 else CentralError
    return kind(f"central refused ({response.status_code}): {message}")


def _file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def _chained(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
