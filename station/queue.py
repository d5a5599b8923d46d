"""The station's own record of every hop it was offered, persisted as JSON files.

Central knows a claimed hop only as ``running``; everything the station still owes it lives
here, so that a restart loses nothing. A hop record moves along::

    pending --approve--> approved --> running --> sealed --> done
       |                                 |   \\--> held --release--> sealed
       +--reject--> rejected             +--> failed          (held --reject--> rejected)

``pending`` waits for the admin; ``approved`` runs on the daemon's next loop; ``running``
found at start-up runs again from the beginning (nothing left the station yet); ``held``
has its sealed output and signed receipt on disk and waits for ``pht-station release``;
``sealed`` is uploaded (the same bytes, again and again if need be) until central accepts;
``rejected`` and ``failed`` are reported to central until it has heard (``reported``) —
except a refusal on a route that skips refusing stops: its input is passed on unchanged
(``station.passage``) and it goes ``rejected -> sealed -> done`` instead. Telling central
is retried per record with backoff, and given up after a bound (``station.delivery``):
``sealed -> failed``, then ``rejected``/``failed -> quarantined``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from central.messages import HopOffer
from trains.errors import ConfigError
from trains.manifest import TRAIN_ID_PATTERN
from trains.signing import Envelope
from trains.text import printable

log = logging.getLogger("pht.station")
_RECORD_ID = re.compile(TRAIN_ID_PATTERN.rstrip("$") + r"-(0|[1-9][0-9]{0,5})$")
_PREFIX = re.compile(r"^[0-9a-f-]{1,43}$")  # what 'pending' prints, or the start of it


class HopState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    RUNNING = "running"
    HELD = "held"
    SEALED = "sealed"
    DONE = "done"
    REJECTED = "rejected"
    FAILED = "failed"
    QUARANTINED = "quarantined"  # central would not hear of it after bounded tries


OPEN = {HopState.PENDING, HopState.APPROVED, HopState.RUNNING, HopState.HELD, HopState.SEALED}


def now() -> datetime:
    return datetime.now(UTC)


class HopRecord(BaseModel):
    """A hop as this station knows it: the offer exactly as central made it (validated as
    a ``central.messages.HopOffer``: its train id a UUID, its indices bounded), and where it
    stands here."""

    model_config = ConfigDict(extra="forbid")

    offer: HopOffer
    state: HopState
    needs_approval: list[str] = []
    received_at: datetime
    updated_at: datetime
    reason: str | None = None  # why it was rejected or failed; central is told this
    reported: bool = False  # central has heard of the rejection or failure
    approved_by: str | None = None  # "policy" or "admin"
    disclosure: dict[str, Any] | None = None  # station.disclosure.Disclosure.to_dict()
    output_digest: str | None = None
    attempts: int = 0  # runs started; a restart mid-run counts one more
    runner_id: str | None = None  # labels the containers of the run (pht.runner)
    # a refused hop on a route that skips refusing stops (station.passage): True once its
    # input was sealed on unchanged, False if it could not be (the refusal is reported)
    passed_on: bool | None = None
    # telling central (upload or report) failed this many times in a row; the next try is
    # not before retry_at (station.delivery)
    tries: int = 0
    retry_at: datetime | None = None
    # prepare while waiting (station.prepare): when the image was made ready for a pending
    # hop, and the reference it pulled (given back if the hop ends without running)
    prepared_at: datetime | None = None
    pulled_image: str | None = None

    @property
    def train_id(self) -> str:
        return self.offer.train_id

    @property
    def hop(self) -> int:
        return self.offer.hop

    @property
    def manifest(self) -> Envelope:
        return self.offer.manifest

    @property
    def kind(self) -> str:
        return self.offer.kind

    @property
    def id(self) -> str:
        return record_id(self.offer.train_id, self.offer.hop)

    @classmethod
    def from_offer(cls, offer: HopOffer, state: HopState, **fields: Any) -> HopRecord:
        at = now()
        return cls(offer=offer, state=state, received_at=at, updated_at=at, **fields)


def record_id(train_id: str, hop: int) -> str:
    """The id (and file name) of a hop's record: ``<train id>-<hop>``, both validated."""
    rid = f"{train_id}-{hop}"
    if not _RECORD_ID.fullmatch(rid):
        raise ConfigError(f"{rid[:80]!r} is not a hop record id (<train id>-<hop>)")
    return rid


class HopQueue:
    """Hop records in ``<state_dir>/hops``, sealed outputs and receipts in ``outbox``."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir
        self.hops = state_dir / "hops"
        self.outbox = state_dir / "outbox"
        for folder in (state_dir, self.hops, self.outbox):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, rid: str) -> Path:
        """The record's file; an id that is not ``<train id>-<hop>`` never becomes a path."""
        return self.hops / f"{record_id(*_split(rid))}.json"

    def save(self, record: HopRecord) -> HopRecord:
        record.updated_at = now()
        _write_atomic(self._path(record.id), record.model_dump_json(indent=2).encode())
        return record

    def all(self) -> list[HopRecord]:
        records = []
        for path in sorted(self.hops.glob("*.json")):
            try:
                records.append(HopRecord.model_validate_json(path.read_bytes()))
            except ValueError as exc:  # a damaged file must not stop every other hop
                os.replace(path, path.with_suffix(".unreadable"))
                log.error(
                    "hop record %s is unreadable (%s); set aside", path.name, type(exc).__name__
                )
        return sorted(records, key=lambda r: (r.received_at, r.hop))

    def in_state(self, *states: HopState) -> list[HopRecord]:
        return [r for r in self.all() if r.state in states]

    def get(self, rid: str) -> HopRecord:
        """A record by its id or any unique prefix of it (as ``pending`` prints them)."""
        if not _PREFIX.fullmatch(rid):
            raise ConfigError(f"{rid[:80]!r} is not a hop id; 'pht-station pending' lists them")
        if _RECORD_ID.fullmatch(rid):
            exact = self._path(rid)
            if exact.exists():
                return HopRecord.model_validate_json(exact.read_text())
        matches = [p for p in self.hops.glob("*.json") if p.stem.startswith(rid)]
        if len(matches) == 1:
            return HopRecord.model_validate_json(matches[0].read_text())
        if not matches:
            raise ConfigError(f"no hop {rid!r} here; 'pht-station pending' lists them")
        raise ConfigError(f"{rid!r} names {len(matches)} hops; give more of the id")

    def knows(self, offer: HopOffer) -> bool:
        return self._path(record_id(offer.train_id, offer.hop)).exists()

    # -- the outbox: sealed output and signed receipt, kept until central accepts both --

    def sealed_path(self, record: HopRecord) -> Path:
        return self.outbox / f"{record.id}.sealed"

    def receipt_path(self, record: HopRecord) -> Path:
        return self.outbox / f"{record.id}.receipt.json"

    def store_output(self, record: HopRecord, sealed: Path, receipt: Envelope) -> None:
        """Keep the sealed output file (moved in, fsynced) and its receipt until delivered."""
        with sealed.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(sealed, self.sealed_path(record))
        _write_atomic(self.receipt_path(record), receipt.model_dump_json().encode())

    def load_output(self, record: HopRecord) -> tuple[Path, Envelope]:
        """The kept sealed output (a file: it may be large) and its receipt."""
        receipt = Envelope.model_validate_json(self.receipt_path(record).read_text())
        return self.sealed_path(record), receipt

    def clear_output(self, record: HopRecord) -> None:
        self.sealed_path(record).unlink(missing_ok=True)
        self.receipt_path(record).unlink(missing_ok=True)


def is_record_id(text: str) -> bool:
    """``text`` is a whole hop id (``<train id>-<hop>``), not a train id or a start of one."""
    return _RECORD_ID.fullmatch(text) is not None


def _split(rid: str) -> tuple[str, int]:
    train_id, _, hop = rid.rpartition("-")
    if not (_RECORD_ID.fullmatch(rid) and hop.isdigit()):
        raise ConfigError(f"{rid[:80]!r} is not a hop record id (<train id>-<hop>)")
    return train_id, int(hop)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write then rename, fsynced: a crash leaves the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def summary_line(record: HopRecord) -> str:
    """One line for ``pht-station pending``."""
    try:  # the manifest of a refused offer may be anything
        manifest = json.loads(record.manifest.payload_bytes)
        train = f"{manifest['name']} {manifest['version']}"
        researcher = manifest["researcher"]["name"]
    except (ValueError, TypeError, KeyError):
        train, researcher = "(unreadable manifest)", "?"
    return (
        f"{record.id}  {record.state:<8}  {printable(train)}  "
        f"hop {record.hop} ({record.kind})  by {printable(str(researcher))}  "
        f"received {record.received_at:%Y-%m-%d %H:%M:%S}Z"
    )
