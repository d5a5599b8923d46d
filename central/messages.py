"""Every message between central and its clients, and every identifier in them: one
pydantic model each, used by the API (request bodies, ``response_model``) and parsed by the
client. A station keeps the offer it was handed as it came (``station.queue.HopRecord``).

Identifiers are bounded here once: a train id is a UUID (``trains.manifest``), a hop index
and an input position are integers below ``MAX_HOPS``, names follow ``trains.keys``. A
message that does not fit is refused whole, at the door, by whoever receives it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from trains.keys import NAME_PATTERN
from trains.manifest import DIGEST_RE, MAX_HOPS, TRAIN_ID_PATTERN, HopKind
from trains.signing import Envelope

TrainId = Annotated[str, Field(pattern=TRAIN_ID_PATTERN, max_length=36)]
HopIndex = Annotated[int, Field(ge=0, lt=MAX_HOPS)]
Digest = Annotated[str, Field(pattern=DIGEST_RE.pattern, max_length=71)]
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
TrainState = Literal["waiting_for_state", "running", "done", "failed", "cancelled"]
HopState = Literal["waiting", "queued", "running", "done", "skipped", "failed", "not_needed"]
MAX_REASON = 2000  # characters of a failure's reason central keeps


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# -- station <-> central -----------------------------------------------------------------


class HopInput(Message):
    """One state a hop reads: the hop that wrote it (None: the initial state), its digest."""

    hop: HopIndex | None
    digest: Digest


class HopOffer(Message):
    """A hop central hands a station. ``inputs`` and ``previous_receipts`` are in the order
    the hop reads them. ``kind`` is what central says; the station runs what the manifest
    pins, and checks that ``train_id`` is the one its signed manifest names."""

    train_id: TrainId
    hop: HopIndex
    kind: HopKind
    manifest: Envelope
    inputs: list[HopInput] = Field(max_length=MAX_HOPS)
    previous_receipts: list[Envelope] = Field(max_length=MAX_HOPS)
    # where an input was passed on by a skipped hop: the receipts behind it, back to the
    # hop that wrote the state, so the station checks each skip (station.verify check 9)
    skip_trail: list[Envelope] = Field(default_factory=list, max_length=MAX_HOPS)
    lease_s: float = Field(ge=0, le=7 * 24 * 3600)  # renew well within this


class Heartbeat(Message):
    """A renewed lease, and the train's status (``cancelled``: stop working on it)."""

    lease_s: float = Field(ge=0)
    train_status: TrainState


class Delivered(Message):
    """A hop's output stored and its receipt accepted."""

    digest: Digest
    train_status: TrainState


class FailRequest(Message):
    reason: str = Field(min_length=1, max_length=MAX_REASON)


# -- researcher <-> central --------------------------------------------------------------


class SubmitRequest(Message):
    manifest: Envelope
    has_initial_state: bool = False


class Submitted(Message):
    train_id: TrainId


class Cancelled(Message):
    status: TrainState


class HopView(Message):
    index: HopIndex
    round: int = Field(ge=0)
    kind: HopKind
    station: Name
    status: HopState
    error: str | None
    attempts: int = Field(ge=0)
    # central's side of the hop's timeline (the station's steps are in its receipt)
    queued_at: AwareDatetime | None
    claimed_at: AwareDatetime | None
    finished_at: AwareDatetime | None


class TrainView(Message):
    train_id: TrainId
    name: Name
    status: TrainState
    error: str | None
    manifest_digest: Digest
    initial_state_digest: Digest | None
    final_state_digest: Digest | None
    hops: list[HopView]


class TrainSummary(Message):
    train_id: TrainId
    name: Name
    status: TrainState
    created_at: AwareDatetime


# -- everyone ---------------------------------------------------------------------------


class Me(Message):
    role: Literal["station", "researcher", "admin"]
    name: Name
