"""Claiming one queued hop under a lease and building the offer a station receives."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from central.db import HopRow, TrainRow, as_utc, utcnow
from central.messages import HopOffer
from central.records import inputs_of, skip_trail
from central.routing import HopStatus
from trains.signing import Envelope


def claim(
    db: Session, hop_id: int, lease_s: float, waited: Callable[[float], None]
) -> HopOffer | None:
    """Claim hop ``hop_id`` if it is still queued (else None) and return its offer;
    ``waited`` hears how long the hop waited in the queue."""
    now = utcnow()
    claimed = db.execute(
        update(HopRow)
        .where(HopRow.id == hop_id, HopRow.status == HopStatus.QUEUED)
        .values(
            status=HopStatus.RUNNING,
            claimed_at=now,
            lease_expires_at=now + timedelta(seconds=lease_s),
            attempts=HopRow.attempts + 1,
        )
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        return None
    hop = db.get(HopRow, hop_id)
    assert hop is not None
    train = db.get(TrainRow, hop.train_id)
    assert train is not None
    inputs = inputs_of(hop)
    sources = [i.hop for i in inputs if i.hop is not None]
    # a first hop has no sources: no query for their receipts or a skip trail
    rows = (
        db.execute(
            select(HopRow.index, HopRow.receipt, HopRow.status).where(
                HopRow.train_id == hop.train_id, HopRow.index.in_(sources)
            )
        ).all()
        if sources
        else []
    )
    receipts = {index: receipt for index, receipt, _ in rows}
    passed_on = any(status == HopStatus.SKIPPED for _, _, status in rows)
    previous = []
    for source in sources:
        receipt = receipts.get(source)
        assert receipt is not None  # a hop is queued only once its inputs are done
        previous.append(Envelope.model_validate_json(receipt))
    if hop.queued_at is not None:
        waited(max(0.0, (now - as_utc(hop.queued_at)).total_seconds()))
    return HopOffer(
        train_id=train.id,
        hop=hop.index,
        manifest=Envelope.model_validate_json(train.manifest),
        kind=hop.kind,
        inputs=inputs,
        previous_receipts=previous,
        # a trail starts only at a source a skipped hop passed on
        skip_trail=skip_trail(db, hop.train_id, sources) if passed_on else [],
        lease_s=lease_s,
    )
