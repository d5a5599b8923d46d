"""The station side of the service: claim a hop under a lease, renew it, expire it, take
the station's output and receipt, or its failure. Only ever the caller's own hops.

Every change takes its locks in the order ``central.locks`` describes.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from central import routing
from central.blobs import Upload
from central.claims import claim
from central.db import HopRow, TrainRow, as_utc, utcnow
from central.errors import ServiceError, not_found
from central.identities import Caller
from central.locks import lock_train, locked_hops
from central.messages import MAX_REASON, Heartbeat, HopInput, HopOffer
from central.records import (
    Hooks,
    advance,
    apply_step,
    check_receipt,
    check_skip,
    hop_states,
    hops_of,
    inputs_of,
    receipts_of,
    route_of,
    statuses_of,
    verify_envelope,
)
from central.routing import HopStatus, TrainStatus
from trains.receipt import RECEIPT_TYPE, HopReceipt
from trains.signing import Envelope


class HopDesk:
    """Mixed into :class:`central.service.Service`, which sets these attributes."""

    sessions: sessionmaker[Session]
    reads: sessionmaker[Session]  # for work that only reads: no write lock on SQLite
    lease_s: float
    max_attempts: int
    hooks: Hooks
    _postgres: bool

    def claim_next(self, caller: Caller) -> HopOffer | None:
        """Hand the station its oldest queued hop, claimed atomically (one runner per hop),
        under a lease the station renews with :meth:`heartbeat`. A train past its expiry
        offers nothing (the expiry sweep fails it)."""
        oldest_first = (
            select(HopRow.id)
            .join(TrainRow, TrainRow.id == HopRow.train_id)
            .where(
                HopRow.station == caller.name,
                HopRow.status == HopStatus.QUEUED,
                (TrainRow.expires_at.is_(None)) | (TrainRow.expires_at > utcnow()),
            )
            .order_by(TrainRow.created_at, HopRow.index)
        )
        if self._postgres:
            # several central processes: each skips rows another is claiming right now
            with self.sessions.begin() as db:
                hop_id = db.scalar(
                    oldest_first.limit(1).with_for_update(skip_locked=True, of=HopRow)
                )
                return None if hop_id is None else self._claim(db, hop_id)
        with self.reads() as db:
            candidates = db.scalars(oldest_first.limit(10)).all()
        for hop_id in candidates:
            with self.sessions.begin() as db:
                offer = self._claim(db, hop_id)
                if offer is not None:
                    return offer
        return None

    def _claim(self, db: Session, hop_id: int) -> HopOffer | None:
        return claim(db, hop_id, self.lease_s, self.hooks.claimed)

    def queued_stations(self, among: set[str]) -> set[str]:
        """Which of these stations have a hop queued (for waking their long polls)."""
        if not among:
            return set()
        with self.reads() as db:
            return set(
                db.scalars(
                    select(HopRow.station)
                    .where(HopRow.status == HopStatus.QUEUED, HopRow.station.in_(among))
                    .distinct()
                )
            )

    def station_hop(
        self, db: Session, caller: Caller, train_id: str, index: int, lock: bool = False
    ) -> HopRow:
        """The caller's hop; with ``lock``, locked and read afresh (lock its train first)."""
        query = select(HopRow).where(HopRow.train_id == train_id, HopRow.index == index)
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        hop = db.scalar(query)
        if hop is None or caller.role != "station" or hop.station != caller.name:
            raise not_found(f"hop {index} of train {train_id} for station {caller.name}")
        return hop

    def heartbeat(self, caller: Caller, train_id: str, index: int) -> Heartbeat:
        """Renew the lease of a hop the caller runs; tell it if the train was cancelled."""
        with self.sessions.begin() as db:
            train = lock_train(db, train_id)
            hop = self.station_hop(db, caller, train_id, index, lock=True)
            assert train is not None  # the hop exists: so does its train
            if hop.status != HopStatus.RUNNING:
                raise ServiceError(
                    409,
                    "lease_lost",
                    f"hop {index} is {hop.status}, not running: its lease ran out and it is "
                    "offered again (a result you still complete before the next claim is "
                    "accepted), or it finished",
                )
            hop.lease_expires_at = utcnow() + timedelta(seconds=self.lease_s)
            return Heartbeat.model_validate({"lease_s": self.lease_s, "train_status": train.status})

    def expire_leases(self) -> int:
        """Offer again every running hop whose lease ran out (or fail its train after
        ``max_attempts``). Safe to run in several processes at once. Returns how many."""
        now = utcnow()
        with self.reads() as db:
            expired = db.execute(
                select(HopRow.id, HopRow.train_id).where(
                    HopRow.status == HopStatus.RUNNING, HopRow.lease_expires_at < now
                )
            ).all()
        count = 0
        queued: set[str] = set()
        for hop_id, train_id in expired:
            with self.sessions.begin() as db:
                train = lock_train(db, train_id)
                hop = db.get(HopRow, hop_id, with_for_update=True, populate_existing=True)
                if train is None or hop is None or hop.status != HopStatus.RUNNING:
                    continue
                if hop.lease_expires_at is None or as_utc(hop.lease_expires_at) >= now:
                    continue
                hops = hops_of(db, hop.train_id)
                step = routing.on_lease_expired(
                    statuses_of(hops),
                    hop.index,
                    hop.attempts,
                    self.max_attempts,
                    TrainStatus(train.status),
                )
                # only if nobody changed the hop since we read it (another central process)
                if not db.execute(
                    update(HopRow)
                    .where(
                        HopRow.id == hop_id,
                        HopRow.status == HopStatus.RUNNING,
                        HopRow.lease_expires_at < now,
                    )
                    .values(lease_expires_at=None)
                    .execution_options(synchronize_session=False)
                ).rowcount:  # type: ignore[attr-defined]
                    continue
                if step.train_status == TrainStatus.FAILED and train.status not in routing.FINISHED:
                    reason = routing.lease_expired_reason(hop.index, hop.station, hop.attempts)
                    hop.error = reason
                    train.error = reason
                requeued = apply_step(train, hops, step)
                self.hooks.notify(db, requeued)
                queued |= requeued
                count += 1
        self.hooks.queued(queued)
        return count

    def hop_input(self, caller: Caller, train_id: str, index: int, position: int) -> HopInput:
        """Input ``position`` of a hop the caller runs: which hop wrote it, and its digest."""
        with self.reads() as db:
            hop = self.station_hop(db, caller, train_id, index)
            inputs = inputs_of(hop)
            if hop.status != HopStatus.RUNNING or not 0 <= position < len(inputs):
                raise not_found(f"input {position} of hop {index}")
            return inputs[position]

    def may_upload_output(self, caller: Caller, train_id: str, index: int) -> int:
        """Check the caller runs this hop (or ran it: a retried delivery); return the hop
        whose output it is. The upload becomes the hop's blob only by :meth:`complete_hop`."""
        with self.reads() as db:
            hop = self.station_hop(db, caller, train_id, index)
            late = hop.status == HopStatus.QUEUED and hop.attempts > 0
            finished = hop.status in routing.FINISHED_HOP
            if hop.status != HopStatus.RUNNING and not finished and not late:
                raise ServiceError(409, "hop_not_running", f"hop {index} is {hop.status}")
            return index

    def complete_hop(
        self, caller: Caller, train_id: str, index: int, receipt: Envelope, upload: Upload
    ) -> str:
        """Record a hop's signed receipt, publish its uploaded output as the hop's blob, and
        advance the route; all under the train's lock, so the first of racing completions
        (or of a completion and a cancel) wins and the others are told so. Idempotent for an
        equal receipt with the same bytes."""
        with self.sessions.begin() as db:
            train = lock_train(db, train_id)  # first: one advance at a time, then the hop
            hop = self.station_hop(db, caller, train_id, index, lock=True)
            assert train is not None  # the hop exists: so does its train
            if hop.status in routing.FINISHED_HOP:
                same = (
                    hop.receipt is not None and Envelope.model_validate_json(hop.receipt) == receipt
                )
                if same and upload.digest == hop.output_digest:
                    return str(train.status)
                raise ServiceError(
                    409, "hop_done", f"hop {index} already finished with another output"
                )
            if train.status in routing.FINISHED:
                raise ServiceError(
                    409,
                    "train_finished",
                    f"train {train_id} is {train.status}: your result was not recorded "
                    "(it came after the train finished)",
                )
            late = hop.status == HopStatus.QUEUED and hop.attempts > 0
            if hop.status != HopStatus.RUNNING and not late:
                raise ServiceError(409, "hop_not_running", f"hop {index} is {hop.status}")
            manifest, plan = route_of(train)
            stop = manifest.hop(index).stop
            parsed = verify_envelope(
                receipt, stop.station, RECEIPT_TYPE, HopReceipt, f"receipt of hop {index}"
            )
            p = parsed.predicate
            skipped = p.kind == "skipped"
            check_receipt(manifest, train.manifest_digest, train_id, index, p)
            if p.output_state_digest != upload.digest:
                raise ServiceError(
                    422,
                    "digest_mismatch",
                    "the receipt's output digest is not the digest of the uploaded state",
                )
            inputs = inputs_of(hop)
            if p.input_state_digests != [i.digest for i in inputs]:
                raise ServiceError(422, "input_mismatch", "the receipt names other input states")
            sources = [i.hop for i in inputs if i.hop is not None]
            stored = receipts_of(db, train_id, sources)  # an input's hop is done: it has one
            linked = [Envelope.model_validate_json(stored[i]).digest for i in sources]
            if p.previous_receipt_digests != linked:
                raise ServiceError(
                    422, "receipt_mismatch", "the receipt links receipts other than its inputs'"
                )
            if skipped and sources:
                check_skip(p, Envelope.model_validate_json(stored[sources[0]]))
            statuses, outputs = hop_states(db, train_id)
            done = routing.on_late_hop_done if late else routing.on_hop_done
            step = done(statuses, index, p.output_state_digest, plan, outputs, skipped, p.converged)
            if not upload.publish():  # before the commit: the blob is the receipt's
                raise ServiceError(
                    409, "no_output", "the uploaded output is gone (replaced); upload it again"
                )
            if skipped:
                hop.error = f"skipped: {p.reason or 'refused by the station'}"[:2000]
            hop.receipt = receipt.model_dump_json()
            hop.output_digest = p.output_state_digest
            hop.lease_expires_at = None
            if step.train_status == TrainStatus.DONE:
                train.final_state_digest = p.output_state_digest
            queued = advance(db, train, step, plan, [hop])
            self.hooks.notify(db, queued)
            status = str(train.status)
        self.hooks.queued(queued)
        return status

    def fail_hop(self, caller: Caller, train_id: str, index: int, reason: str) -> None:
        """A running hop failed or was refused. Only the station that holds the hop under a
        live lease may say so; the train keeps the first failure's reason."""
        with self.sessions.begin() as db:
            train = lock_train(db, train_id)  # first: one advance at a time, then the hops
            hop = self.station_hop(db, caller, train_id, index)
            assert train is not None  # the hop exists: so does its train
            hops = locked_hops(db, train_id)  # read again under the train's lock
            hop = next(h for h in hops if h.index == index)
            lease = hop.lease_expires_at
            if hop.status != HopStatus.RUNNING or lease is None or as_utc(lease) <= utcnow():
                raise ServiceError(
                    409,
                    "hop_not_running",
                    f"hop {index} is {hop.status}"
                    + (", its lease ran out" if hop.status == HopStatus.RUNNING else "")
                    + ": only the station running it under a live lease may fail it",
                )
            try:
                step = routing.on_hop_failed(statuses_of(hops), index)
            except routing.IllegalTransition as exc:
                raise ServiceError(409, "hop_finished", str(exc)) from None
            hop.error = reason[:MAX_REASON]
            hop.lease_expires_at = None
            if train.status in routing.FINISHED:  # cancelled, or failed by another hop
                hop.status = HopStatus.FAILED
                hop.finished_at = utcnow()
                return
            train.error = f"hop {index} at {caller.name}: {reason[:MAX_REASON]}"
            apply_step(train, hops, step)
