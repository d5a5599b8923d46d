"""A hop record: what the station knows of one hop it was offered, and where it stands.

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
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from central.messages import HopOffer
from trains.errors import ConfigError
from trains.manifest import TRAIN_ID_PATTERN
from trains.signing import Envelope
from trains.text import printable

RECORD_ID = re.compile(TRAIN_ID_PATTERN.rstrip("$") + r"-(0|[1-9][0-9]{0,5})$")


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
    if not RECORD_ID.fullmatch(rid):
        raise ConfigError(f"{rid[:80]!r} is not a hop record id (<train id>-<hop>)")
    return rid


def is_live(record: HopRecord) -> bool:
    """The daemon's loop still has something to do with the record: an open hop, a refusal
    or failure central has not heard of yet (or to pass on), or an image a preparation
    pulled that is still to be given back. A re-offered refusal is unheard again: live."""
    if record.state in OPEN or record.pulled_image is not None:
        return True
    return record.state in (HopState.REJECTED, HopState.FAILED) and not record.reported


def is_record_id(text: str) -> bool:
    """``text`` is a whole hop id (``<train id>-<hop>``), not a train id or a start of one."""
    return RECORD_ID.fullmatch(text) is not None


def split_id(rid: str) -> tuple[str, int]:
    train_id, _, hop = rid.rpartition("-")
    if not (RECORD_ID.fullmatch(rid) and hop.isdigit()):
        raise ConfigError(f"{rid[:80]!r} is not a hop record id (<train id>-<hop>)")
    return train_id, int(hop)


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
