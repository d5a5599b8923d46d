"""The reads the dashboard's pages need, over the service's read sessions.

Who sees what is decided here, exactly as the API decides it: an admin sees every train's
route and times (never a state: central holds none it can open), a researcher only their
own trains, and anyone else's train id answers the same 404 as ``GET /api/v1/trains/{id}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.db import HopRow, Party, TrainRow, as_utc
from central.errors import not_found
from central.identities import Caller
from central.records import manifest_of, plan_of
from central.routing import HopStatus, TrainStatus
from central.service import Service

MAX_LISTED = 200  # the newest trains a list shows; the counts above it cover them all


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def state_counts(service: Service, caller: Caller) -> tuple[dict[str, int], dict[str, int]]:
    """(trains by state, hops by state), every state listed. An admin gets the totals
    ``/metrics`` reports (the same query); a researcher the counts of their own trains."""
    if caller.role == "admin":
        hops, trains = service.counts()
    else:
        with service.reads() as db:
            owned = select(TrainRow.id).where(TrainRow.researcher_id == caller.id)
            trains = {
                s: int(n)
                for s, n in db.execute(
                    select(TrainRow.status, func.count())
                    .where(TrainRow.researcher_id == caller.id)
                    .group_by(TrainRow.status)
                )
            }
            hops = {
                s: int(n)
                for s, n in db.execute(
                    select(HopRow.status, func.count())
                    .where(HopRow.train_id.in_(owned))
                    .group_by(HopRow.status)
                )
            }
    return (
        {s.value: trains.get(s.value, 0) for s in TrainStatus},
        {s.value: hops.get(s.value, 0) for s in HopStatus},
    )


def trains(service: Service, caller: Caller) -> list[dict[str, object]]:
    """The newest trains the caller may see, with their researcher and hop progress."""
    with service.reads() as db:
        query = (
            select(TrainRow.id, TrainRow.name, TrainRow.status, TrainRow.created_at, Party.name)
            .join(Party, Party.id == TrainRow.researcher_id)
            .order_by(TrainRow.created_at.desc(), TrainRow.id)
            .limit(MAX_LISTED)
        )
        if caller.role != "admin":
            query = query.where(TrainRow.researcher_id == caller.id)
        rows = db.execute(query).all()
        progress = _progress(db, [r[0] for r in rows])
    return [
        {
            "id": train_id,
            "name": name,
            "status": status,
            "created_at": as_utc(created),
            "researcher": researcher,
            "done": progress.get(train_id, (0, 0))[0],
            "hops": progress.get(train_id, (0, 0))[1],
        }
        for train_id, name, status, created, researcher in rows
    ]


def _progress(db: Session, ids: list[str]) -> dict[str, tuple[int, int]]:
    """(hops finished, hops) of each train."""
    progress: dict[str, tuple[int, int]] = {}
    if not ids:
        return progress
    rows = db.execute(
        select(HopRow.train_id, HopRow.status, func.count())
        .where(HopRow.train_id.in_(ids))
        .group_by(HopRow.train_id, HopRow.status)
    )
    for train_id, status, n in rows:
        done, total = progress.get(train_id, (0, 0))
        finished = status in (HopStatus.DONE.value, HopStatus.SKIPPED.value)
        progress[train_id] = (done + int(n) * finished, total + int(n))
    return progress


@dataclass
class HopView:
    """One hop as the route page shows it; ``column`` and ``row`` place it in the graph."""

    index: int
    round: int
    kind: str
    station: str
    status: str
    error: str | None
    attempts: int
    queued_at: datetime | None
    claimed_at: datetime | None
    finished_at: datetime | None
    column: int
    row: int


@dataclass
class RouteView:
    """A train's route for the graph: its hops (with columns, rows and times) and edges."""

    train: dict[str, object]
    hops: list[HopView]
    edges: list[tuple[int, int]]
    stations: list[str]


def route(service: Service, caller: Caller, train_id: str) -> RouteView:
    """The route of a train the caller may see, else the API's 404."""
    with service.reads() as db:
        train = db.get(TrainRow, train_id)
        if train is None or (caller.role != "admin" and train.researcher_id != caller.id):
            raise not_found(f"train {train_id}")
        researcher = db.get(Party, train.researcher_id)
        rows = db.execute(
            select(
                HopRow.index, HopRow.round, HopRow.kind, HopRow.station, HopRow.status,
                HopRow.error, HopRow.attempts, HopRow.queued_at, HopRow.claimed_at,
                HopRow.finished_at,
            ).where(HopRow.train_id == train_id).order_by(HopRow.index)
        ).all()  # fmt: skip
        plan = plan_of(manifest_of(train))
        view: dict[str, object] = {
            "id": train.id,
            "name": train.name,
            "status": train.status,
            "error": train.error,
            "researcher": researcher.name if researcher else "?",
            "manifest_digest": train.manifest_digest,
            "created_at": as_utc(train.created_at),
            "expires_at": _utc(train.expires_at),
            "finished_at": _utc(train.finished_at),
            "pruned": train.blobs_pruned_at is not None,
        }
    stations: list[str] = []
    column: dict[int, int] = {}
    hops = []
    for r in rows:
        fields = r._asdict()
        index, station = int(fields["index"]), str(fields["station"])
        if station not in stations:
            stations.append(station)
        # a hop sits one column right of the latest hop it reads: a sequential route
        # becomes a staircase, a parallel round a column of local hops, then its aggregate
        column[index] = 1 + max((column.get(i, -1) for i in plan.get(index, [])), default=-1)
        hops.append(HopView(**fields, column=column[index], row=stations.index(station)))
        for hop_time in ("queued_at", "claimed_at", "finished_at"):
            setattr(hops[-1], hop_time, _utc(getattr(hops[-1], hop_time)))
    edges = [(i, j) for j, inputs in plan.items() for i in inputs]
    return RouteView(view, hops, edges, stations)


def stations(service: Service) -> list[dict[str, object]]:
    """Every registered station: last seen (its newest poll for work, claim or finish), the
    version it reports, queue length (hops queued for it), running, done and failed."""
    with service.reads() as db:
        parties = db.scalars(select(Party).where(Party.role == "station").order_by(Party.name))
        by_status = {
            (station, status): int(n)
            for station, status, n in db.execute(
                select(HopRow.station, HopRow.status, func.count()).group_by(
                    HopRow.station, HopRow.status
                )
            )
        }
        seen = {
            station: max((as_utc(t) for t in (claimed, finished) if t is not None), default=None)
            for station, claimed, finished in db.execute(
                select(HopRow.station, func.max(HopRow.claimed_at), func.max(HopRow.finished_at))
                .group_by(HopRow.station)
            )
        }  # fmt: skip
        return [
            {
                "name": p.name,
                "active": p.revoked_at is None,
                "enrolled": p.enrolment is not None,
                "last_seen": max(
                    (t for t in (seen.get(p.name), p.last_seen_at and as_utc(p.last_seen_at)) if t),
                    default=None,
                ),
                "version": p.version,
                "queued": by_status.get((p.name, HopStatus.QUEUED.value), 0),
                "running": by_status.get((p.name, HopStatus.RUNNING.value), 0),
                "done": by_status.get((p.name, HopStatus.DONE.value), 0),
                "failed": by_status.get((p.name, HopStatus.FAILED.value), 0),
            }
            for p in parties
        ]


def live(service: Service, caller: Caller, train_id: str | None) -> dict[str, object]:
    """What the pages update in place: the counts, the listed trains' states and, for one
    train's page, its state and its hops' states."""
    train_counts, hop_counts = state_counts(service, caller)
    body: dict[str, object] = {
        "trains": train_counts,
        "hops": hop_counts,
        "train_status": {t["id"]: t["status"] for t in trains(service, caller)},
    }
    if train_id is not None:
        view = route(service, caller, train_id)
        body["route"] = {
            "status": view.train["status"],
            "hops": {str(h.index): h.status for h in view.hops},
        }
    return body
