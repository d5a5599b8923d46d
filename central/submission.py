"""Storing a submitted train: every check a station would make at the door, then the train
and its hops in one transaction (``Service.submit`` holds it and tells the hooks)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import routing
from central.db import HopRow, Party, TrainRow
from central.errors import ServiceError
from central.identities import Caller, public_identity
from central.records import apply_step, plan_of, verify_envelope
from central.routing import HopStatus
from trains.errors import PhtError
from trains.manifest import MANIFEST_TYPE, Manifest, check_times
from trains.signing import Envelope


def store_train(
    db: Session,
    caller: Caller,
    envelope: Envelope,
    claimed: Manifest,
    has_initial_state: bool,
    max_lifetime: timedelta,
) -> set[str]:
    """Check ``envelope`` (``claimed`` is its payload, parsed unverified to learn who signs
    it) and add its train and hops to ``db``; return the stations that got a hop to run."""
    manifest_stops = list(claimed.route.stops)
    if claimed.route.aggregator is not None:
        manifest_stops.append(claimed.route.aggregator)
    # the caller's row and every named station's in one round trip (issue 15 item 5)
    parties = db.scalars(
        select(Party).where(
            (Party.id == caller.id)
            | (
                (Party.role == "station")
                & Party.name.in_({stop.name for stop in manifest_stops})
                & Party.revoked_at.is_(None)
            )
        )
    ).all()
    researcher = next((p for p in parties if p.id == caller.id), None)
    assert researcher is not None  # the caller just authenticated
    stations = {p.name: p for p in parties if p.id != caller.id}
    if claimed.researcher != public_identity(researcher):
        raise ServiceError(
            403,
            "researcher_mismatch",
            "the manifest names researcher keys other than the ones registered for "
            "your token; sign with your registered identity",
        )
    manifest = verify_envelope(envelope, claimed.researcher, MANIFEST_TYPE, Manifest, "manifest")
    try:
        check_times(manifest, max_lifetime)
    except PhtError as exc:
        raise ServiceError(422, "manifest_times", str(exc)) from None
    stops = list(manifest.route.stops)
    if manifest.route.aggregator is not None:
        stops.append(manifest.route.aggregator)
    for stop in stops:
        row = stations.get(stop.name)
        if row is None:
            raise ServiceError(422, "unknown_station", f"no station named {stop.name!r}")
        if public_identity(row) != stop.station:
            raise ServiceError(
                422,
                "station_keys_changed",
                f"the keys pinned for {stop.name} are not the keys it registered",
            )
    # a train id submitted before: the insert below fails (IntegrityError -> 409),
    # so no round trip asks first
    plan = plan_of(manifest)
    step = routing.on_submit(plan, has_initial_state)
    train = TrainRow(
        id=manifest.train_id,
        researcher_id=caller.id,
        name=manifest.name,
        manifest=envelope.model_dump_json(),
        manifest_digest=envelope.digest,
        status=step.train_status,
        expires_at=manifest.expires_at,
    )
    db.add(train)
    db.flush()  # the train row must exist before its hops reference it
    hops = [
        HopRow(
            train_id=manifest.train_id,
            index=hop.index,
            round=hop.round,
            station=hop.stop.name,
            kind=hop.kind,
            status=HopStatus.WAITING,
        )
        for hop in manifest.hops()
    ]
    db.add_all(hops)
    return apply_step(train, hops, step, plan)
