"""Rows to routing and back: the small helpers the service's parts share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import routing
from central.db import HopRow, TrainRow, utcnow
from central.errors import ServiceError
from central.routing import HopStatus
from trains.errors import PhtError
from trains.keys import PublicIdentity
from trains.signing import Envelope, M, open_envelope


def state_blob(index: int) -> str:
    """Blob name of the state that hop ``index`` reads (index N: the final state)."""
    return f"state-{index:05d}.sealed"


@dataclass(frozen=True)
class HopOffer:
    train_id: str
    hop: int
    manifest: Envelope
    input_digest: str | None
    previous_receipt: Envelope | None
    lease_s: float = 0.0


@dataclass
class Hooks:
    """What the service tells its host: which stations got work, how long a hop waited."""

    queued: Callable[[set[str]], None] = lambda stations: None
    claimed: Callable[[float], None] = lambda waited_s: None


def hops_of(db: Session, train_id: str) -> list[HopRow]:
    return list(
        db.scalars(select(HopRow).where(HopRow.train_id == train_id).order_by(HopRow.index))
    )


def statuses_of(hops: list[HopRow]) -> dict[int, HopStatus]:
    return {h.index: HopStatus(h.status) for h in hops}


def verify_envelope(
    envelope: Envelope, signer: PublicIdentity, kind: str, model: type[M], what: str
) -> M:
    try:
        return open_envelope(envelope, kind, signer, model, what)
    except PhtError as exc:
        raise ServiceError(422, "signature_invalid", str(exc)) from None


def apply_step(train: TrainRow, hops: list[HopRow], step: routing.Step) -> set[str]:
    """Write a routing step to the rows; return the stations that got a hop to run."""
    now = utcnow()
    by_index = {h.index: h for h in hops}
    queued: set[str] = set()
    for index, status in step.hop_status.items():
        hop = by_index[index]
        hop.status = status
        if status == HopStatus.QUEUED:
            hop.queued_at = now
            hop.lease_expires_at = None
            queued.add(hop.station)
        if status in (HopStatus.DONE, HopStatus.FAILED):
            hop.finished_at = now
    for index, digest in step.input_for.items():
        by_index[index].input_digest = digest
    if train.status not in routing.FINISHED:
        train.status = step.train_status
        if step.train_status in routing.FINISHED:
            train.finished_at = now
    return queued
