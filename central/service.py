"""What central does, as plain methods over the database.

The HTTP layer (``central.api``) only authenticates and translates; every decision is here
(trains, identities, retention), in ``central.hop_desk`` (the station side: claims, leases,
results) or in ``central.routing`` (the state machine). Central verifies signatures (all
public) but holds no key that opens a sealed state.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central import routing
from central.blobs import Upload
from central.db import HopRow, TrainRow, as_utc, read_sessions, utcnow
from central.errors import ServiceError, not_found
from central.hop_desk import HopDesk
from central.identities import Caller, Identities, hash_token
from central.locks import lock_train, locked_hops
from central.messages import HopOffer
from central.presence import Presence
from central.records import (
    Hooks,
    apply_step,
    hops_of,
    manifest_of,
    output_blob,
    plan_of,
    statuses_of,
)
from central.routing import HopStatus, TrainStatus
from central.submission import store_train
from trains.errors import PhtError
from trains.keys import PublicIdentity
from trains.manifest import Manifest
from trains.signing import Envelope, unverified_payload

__all__ = ["Caller", "Hooks", "HopOffer", "Service", "ServiceError", "hash_token", "output_blob"]


class Service(HopDesk):
    """Trains and identities here; the station side (claims, leases, results) in HopDesk."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        lease_s: float = 60.0,
        max_attempts: int = 3,
        hooks: Hooks | None = None,
        token_cache_s: float = 1.0,
        max_lifetime_days: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.reads = read_sessions(sessions)
        self.identities = Identities(sessions, self.reads, token_cache_s)
        self.presence = Presence(sessions)
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.max_lifetime_days = max_lifetime_days
        self.hooks = hooks or Hooks()
        self._postgres = sessions.kw["bind"].dialect.name == "postgresql"

    # -- identities -------------------------------------------------------------------

    def register(
        self, role: str, identity: PublicIdentity, expires_at: datetime | None = None
    ) -> str:
        """Register a station or researcher; return its API token (shown once, stored hashed)."""
        return self.identities.register(role, identity.name, identity, expires_at)

    def authenticate(self, token: str) -> Caller | None:
        return self.identities.authenticate(token)

    # -- trains -----------------------------------------------------------------------

    def submit(self, caller: Caller, envelope: Envelope, has_initial_state: bool) -> str:
        """Accept a signed manifest; refuse at the door anything a station would refuse."""
        try:
            claimed = unverified_payload(envelope, Manifest)
        except (ValidationError, PhtError, ValueError) as exc:
            raise ServiceError(422, "manifest_invalid", f"manifest is not valid: {exc}") from None
        try:
            with self.sessions.begin() as db:
                lifetime = timedelta(days=self.max_lifetime_days)
                queued = store_train(db, caller, envelope, claimed, has_initial_state, lifetime)
                self.hooks.notify(db, queued)
        except IntegrityError:  # a train id submitted before, or twice at once
            raise ServiceError(409, "exists", f"train {claimed.train_id} was submitted") from None
        self.hooks.queued(queued)
        return claimed.train_id

    def own_train(self, db: Session, caller: Caller, train_id: str, lock: bool = False) -> TrainRow:
        """The caller's train; with ``lock``, locked for this transaction (see
        ``central.locks`` for the lock order)."""
        train = lock_train(db, train_id) if lock else db.get(TrainRow, train_id)
        if train is None or caller.role != "researcher" or train.researcher_id != caller.id:
            raise not_found(f"train {train_id}")
        return train

    def initial_state_stored(self, caller: Caller, train_id: str, upload: Upload) -> None:
        """Publish the uploaded initial state and queue the first hops; the first of racing
        uploads wins, the others are refused (409)."""
        with self.sessions.begin() as db:
            train = self.own_train(db, caller, train_id, lock=True)
            hops = hops_of(db, train_id)
            if train.status != TrainStatus.WAITING_FOR_STATE:
                raise ServiceError(
                    409,
                    "state_exists",
                    f"train {train_id} already has its initial state (it is {train.status})",
                )
            plan = plan_of(manifest_of(train))
            step = routing.on_initial_state(statuses_of(hops), upload.digest, plan)
            if not upload.publish():  # before the commit: the blob is the recorded one
                raise ServiceError(409, "no_state", "the upload is gone; send it again")
            train.initial_state_digest = upload.digest
            queued = apply_step(train, hops, step, plan)
            self.hooks.notify(db, queued)
        self.hooks.queued(queued)

    def status(self, caller: Caller, train_id: str) -> dict[str, object]:
        with self.reads() as db:
            train = self.own_train(db, caller, train_id)
            return {
                "train_id": train.id,
                "name": train.name,
                "status": train.status,
                "error": train.error,
                "manifest_digest": train.manifest_digest,
                "initial_state_digest": train.initial_state_digest,
                "final_state_digest": train.final_state_digest,
                "hops": [  # the columns only: a long route's receipts stay in the database
                    _hop_view(row._asdict())
                    for row in db.execute(
                        select(
                            HopRow.index,
                            HopRow.round,
                            HopRow.kind,
                            HopRow.station,
                            HopRow.status,
                            HopRow.error,
                            HopRow.attempts,
                            HopRow.queued_at,
                            HopRow.claimed_at,
                            HopRow.finished_at,
                        )
                        .where(HopRow.train_id == train_id)
                        .order_by(HopRow.index)
                    )
                ],
            }

    def list_trains(self, caller: Caller) -> list[dict[str, object]]:
        with self.reads() as db:
            rows = db.scalars(
                select(TrainRow)
                .where(TrainRow.researcher_id == caller.id)
                .order_by(TrainRow.created_at)
            )
            return [
                {
                    "train_id": t.id,
                    "name": t.name,
                    "status": t.status,
                    "created_at": as_utc(t.created_at).isoformat(),
                }
                for t in rows
            ]

    def cancel(self, caller: Caller, train_id: str) -> str:
        """Withdraw a train. Under the train's lock: racing a hop's completion, the first
        wins; a train that finished first answers 409 with its status (a done train's
        result is there), and a completion after the cancel is refused."""
        with self.sessions.begin() as db:
            train = self.own_train(db, caller, train_id, lock=True)
            if train.status in routing.FINISHED:
                raise ServiceError(
                    409,
                    "finished",
                    f"train {train_id} is already {train.status}; there is nothing to cancel",
                )
            hops = locked_hops(db, train_id)
            step = routing.on_cancel(statuses_of(hops))
            train.error = "cancelled by the researcher"
            apply_step(train, hops, step)
            return str(train.status)

    def manifest_envelope(self, caller: Caller, train_id: str) -> Envelope:
        with self.reads() as db:
            return Envelope.model_validate_json(self.own_train(db, caller, train_id).manifest)

    def receipts(self, caller: Caller, train_id: str) -> list[Envelope]:
        with self.reads() as db:
            self.own_train(db, caller, train_id)
            return [
                Envelope.model_validate_json(h.receipt)
                for h in hops_of(db, train_id)
                if h.receipt is not None
            ]

    def final_state(self, caller: Caller, train_id: str) -> tuple[str, str]:
        """(blob name, digest) of the final state, once the train is done."""
        with self.reads() as db:
            train = self.own_train(db, caller, train_id)
            if train.status != TrainStatus.DONE or train.final_state_digest is None:
                raise ServiceError(409, "not_done", f"train {train_id} is {train.status}")
            # the last hop, or the one where a converged train ended the route
            last = db.scalar(
                select(func.max(HopRow.index)).where(
                    HopRow.train_id == train_id, HopRow.status == HopStatus.DONE
                )
            )
            return output_blob(last), train.final_state_digest

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(hops by status, trains by status), for the metrics."""
        with self.reads() as db:
            hops = db.execute(select(HopRow.status, func.count()).group_by(HopRow.status))
            trains = db.execute(select(TrainRow.status, func.count()).group_by(TrainRow.status))
            return {s: int(n) for s, n in hops}, {s: int(n) for s, n in trains}

    # -- expiry -----------------------------------------------------------------------

    def expire_trains(self) -> int:
        """Fail every unfinished train whose manifest has expired: no station would run it
        any more, so its queued hops are withdrawn. Safe in several processes at once."""
        now = utcnow()
        with self.reads() as db:
            due = db.scalars(
                select(TrainRow.id).where(
                    TrainRow.status.not_in([str(s) for s in routing.FINISHED]),
                    TrainRow.expires_at < now,
                )
            ).all()
        count = 0
        for train_id in due:
            with self.sessions.begin() as db:
                train = lock_train(db, train_id)
                if train is None or train.status in routing.FINISHED:
                    continue
                hops = locked_hops(db, train_id)
                train.error = routing.expired_reason(
                    as_utc(train.expires_at or now).isoformat(timespec="seconds")
                )
                apply_step(train, hops, routing.on_expired(statuses_of(hops)))
                count += 1
        return count

    # -- retention --------------------------------------------------------------------

    def trains_to_prune(self, finished_before: datetime) -> list[tuple[str, int, bool]]:
        """(train id, hop count, done?) of finished trains whose blobs are due for pruning."""
        with self.reads() as db:
            rows = db.execute(
                select(TrainRow.id, TrainRow.status, func.count(HopRow.id))
                .join(HopRow, HopRow.train_id == TrainRow.id)
                .where(
                    TrainRow.status.in_([str(s) for s in routing.FINISHED]),
                    TrainRow.finished_at < finished_before,
                    TrainRow.blobs_pruned_at.is_(None),
                )
                .group_by(TrainRow.id, TrainRow.status)
            ).all()
            return [(t, int(n), s == TrainStatus.DONE) for t, s, n in rows]

    def mark_pruned(self, train_id: str) -> None:
        with self.sessions.begin() as db:
            db.execute(
                update(TrainRow).where(TrainRow.id == train_id).values(blobs_pruned_at=utcnow())
            )


def _hop_view(row: dict[str, object]) -> dict[str, object]:
    """A hop's columns, its times in UTC (SQLite hands them back naive)."""
    for key in ("queued_at", "claimed_at", "finished_at"):
        value = row[key]
        row[key] = as_utc(value) if isinstance(value, datetime) else None
    return row
