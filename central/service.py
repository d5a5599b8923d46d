"""What central does, as plain methods over the database and blob store.

The HTTP layer (``central.api``) only authenticates and translates; every decision is here
or in ``central.routing``. Central verifies signatures (all public) but holds no key that
opens a sealed state.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from central import routing
from central.db import HopRow, Party, TrainRow, utcnow
from central.routing import HopStatus, TrainStatus
from trains.errors import PhtError
from trains.keys import PublicIdentity
from trains.manifest import MANIFEST_TYPE, Manifest
from trains.receipt import RECEIPT_TYPE, HopReceipt
from trains.signing import Envelope, M, open_envelope, unverified_payload


class ServiceError(PhtError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(what: str) -> ServiceError:
    return ServiceError(404, "not_found", f"{what} not found")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def state_blob(index: int) -> str:
    """Blob name of the state that hop ``index`` reads (index N: the final state)."""
    return f"state-{index:05d}.sealed"


@dataclass(frozen=True)
class Caller:
    id: int
    role: str
    name: str


@dataclass(frozen=True)
class HopOffer:
    train_id: str
    hop: int
    manifest: Envelope
    input_digest: str | None
    previous_receipt: Envelope | None


class Service:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    # -- identities -------------------------------------------------------------------

    def register(self, role: str, identity: PublicIdentity) -> str:
        """Register a station or researcher; return its API token (shown once, stored hashed)."""
        if role not in ("station", "researcher", "admin"):
            raise ServiceError(422, "bad_role", f"unknown role {role!r}")
        token = f"pht_{role[:3]}_" + secrets.token_urlsafe(32)
        with self.sessions.begin() as db:
            exists = db.scalar(select(Party).where(Party.role == role, Party.name == identity.name))
            if exists is not None:
                raise ServiceError(409, "exists", f"a {role} named {identity.name!r} exists")
            db.add(
                Party(
                    role=role,
                    name=identity.name,
                    signing_key=identity.signing_key,
                    sealing_key=identity.sealing_key,
                    token_hash=hash_token(token),
                )
            )
        return token

    def authenticate(self, token: str) -> Caller | None:
        with self.sessions() as db:
            party = db.scalar(select(Party).where(Party.token_hash == hash_token(token)))
            return None if party is None else Caller(party.id, party.role, party.name)

    def stations(self) -> list[PublicIdentity]:
        with self.sessions() as db:
            rows = db.scalars(select(Party).where(Party.role == "station").order_by(Party.name))
            return [_public(row) for row in rows]

    # -- trains -----------------------------------------------------------------------

    def submit(self, caller: Caller, envelope: Envelope, has_initial_state: bool) -> str:
        """Accept a signed manifest; refuse at the door anything a station would refuse."""
        try:
            claimed = unverified_payload(envelope, Manifest)
        except ValidationError as exc:
            raise ServiceError(422, "manifest_invalid", f"manifest is not valid: {exc}") from None
        with self.sessions.begin() as db:
            researcher = db.get(Party, caller.id)
            assert researcher is not None
            if claimed.researcher != _public(researcher):
                raise ServiceError(
                    403,
                    "researcher_mismatch",
                    "the manifest names researcher keys other than the ones registered for "
                    "your token; sign with your registered identity",
                )
            manifest = _verify(envelope, claimed.researcher, MANIFEST_TYPE, Manifest, "manifest")
            if manifest.expires_at <= datetime.now(UTC):
                raise ServiceError(422, "expired", "the manifest has already expired")
            for stop in manifest.route.stops:
                row = db.scalar(
                    select(Party).where(Party.role == "station", Party.name == stop.name)
                )
                if row is None:
                    raise ServiceError(422, "unknown_station", f"no station named {stop.name!r}")
                if _public(row) != stop.station:
                    raise ServiceError(
                        422,
                        "station_keys_changed",
                        f"the keys pinned for {stop.name} are not the keys it registered",
                    )
            if db.get(TrainRow, manifest.train_id) is not None:
                raise ServiceError(409, "exists", f"train {manifest.train_id} was submitted")
            step = routing.on_submit(len(manifest.hops()), has_initial_state)
            db.add(
                TrainRow(
                    id=manifest.train_id,
                    researcher_id=caller.id,
                    name=manifest.name,
                    manifest=envelope.model_dump_json(),
                    manifest_digest=envelope.digest,
                    status=step.train_status,
                )
            )
            db.flush()  # the train row must exist before its hops reference it
            for hop in manifest.hops():
                db.add(
                    HopRow(
                        train_id=manifest.train_id,
                        index=hop.index,
                        round=hop.round,
                        station=hop.stop.name,
                        status=step.hop_status[hop.index],
                    )
                )
        return manifest.train_id

    def own_train(self, db: Session, caller: Caller, train_id: str) -> TrainRow:
        train = db.get(TrainRow, train_id)
        if train is None or (caller.role == "researcher" and train.researcher_id != caller.id):
            raise not_found(f"train {train_id}")
        return train

    def initial_state_stored(self, caller: Caller, train_id: str, digest: str) -> None:
        with self.sessions.begin() as db:
            train = self.own_train(db, caller, train_id)
            hops = _hops(db, train_id)
            if train.status != TrainStatus.WAITING_FOR_STATE:
                raise ServiceError(409, "state_exists", "this train already has its initial state")
            step = routing.on_initial_state({h.index: HopStatus(h.status) for h in hops}, digest)
            train.initial_state_digest = digest
            _apply(db, train, hops, step)

    def status(self, caller: Caller, train_id: str) -> dict[str, object]:
        with self.sessions() as db:
            train = self.own_train(db, caller, train_id)
            return {
                "train_id": train.id,
                "name": train.name,
                "status": train.status,
                "error": train.error,
                "manifest_digest": train.manifest_digest,
                "initial_state_digest": train.initial_state_digest,
                "final_state_digest": train.final_state_digest,
                "hops": [
                    {
                        "index": h.index,
                        "round": h.round,
                        "station": h.station,
                        "status": h.status,
                        "error": h.error,
                    }
                    for h in _hops(db, train_id)
                ],
            }

    def list_trains(self, caller: Caller) -> list[dict[str, object]]:
        with self.sessions() as db:
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
                    "created_at": t.created_at.isoformat(),
                }
                for t in rows
            ]

    def cancel(self, caller: Caller, train_id: str) -> str:
        with self.sessions.begin() as db:
            train = self.own_train(db, caller, train_id)
            if train.status in routing.FINISHED:
                raise ServiceError(409, "finished", f"train {train_id} is already {train.status}")
            hops = _hops(db, train_id)
            step = routing.on_cancel({h.index: HopStatus(h.status) for h in hops})
            train.error = "cancelled by the researcher"
            _apply(db, train, hops, step)
            return str(train.status)

    def manifest_envelope(self, caller: Caller, train_id: str) -> Envelope:
        with self.sessions() as db:
            return Envelope.model_validate_json(self.own_train(db, caller, train_id).manifest)

    def receipts(self, caller: Caller, train_id: str) -> list[Envelope]:
        with self.sessions() as db:
            self.own_train(db, caller, train_id)
            return [
                Envelope.model_validate_json(h.receipt)
                for h in _hops(db, train_id)
                if h.receipt is not None
            ]

    def final_state(self, caller: Caller, train_id: str) -> tuple[str, str]:
        """(blob name, digest) of the final state, once the train is done."""
        with self.sessions() as db:
            train = self.own_train(db, caller, train_id)
            if train.status != TrainStatus.DONE or train.final_state_digest is None:
                raise ServiceError(409, "not_done", f"train {train_id} is {train.status}")
            return state_blob(len(_hops(db, train_id))), train.final_state_digest

    # -- stations ---------------------------------------------------------------------

    def claim_next(self, caller: Caller) -> HopOffer | None:
        """Hand the station its oldest queued hop, claimed atomically (one runner per hop)."""
        with self.sessions() as db:
            candidates = db.scalars(
                select(HopRow)
                .join(TrainRow, TrainRow.id == HopRow.train_id)
                .where(HopRow.station == caller.name, HopRow.status == HopStatus.QUEUED)
                .order_by(TrainRow.created_at, HopRow.index)
                .limit(10)
            ).all()
        for hop in candidates:
            with self.sessions.begin() as db:
                claimed = db.execute(
                    update(HopRow)
                    .where(HopRow.id == hop.id, HopRow.status == HopStatus.QUEUED)
                    .values(status=HopStatus.RUNNING, claimed_at=utcnow())
                ).rowcount  # type: ignore[attr-defined]
                if not claimed:
                    continue
                train = db.get(TrainRow, hop.train_id)
                assert train is not None
                previous = None
                if hop.index > 0:
                    prev = db.scalar(
                        select(HopRow).where(
                            HopRow.train_id == hop.train_id, HopRow.index == hop.index - 1
                        )
                    )
                    assert prev is not None and prev.receipt is not None
                    previous = Envelope.model_validate_json(prev.receipt)
                return HopOffer(
                    train_id=train.id,
                    hop=hop.index,
                    manifest=Envelope.model_validate_json(train.manifest),
                    input_digest=hop.input_digest,
                    previous_receipt=previous,
                )
        return None

    def station_hop(self, db: Session, caller: Caller, train_id: str, index: int) -> HopRow:
        hop = db.scalar(select(HopRow).where(HopRow.train_id == train_id, HopRow.index == index))
        if hop is None or hop.station != caller.name:
            raise not_found(f"hop {index} of train {train_id} for station {caller.name}")
        return hop

    def input_digest(self, caller: Caller, train_id: str, index: int) -> str:
        with self.sessions() as db:
            hop = self.station_hop(db, caller, train_id, index)
            if hop.status != HopStatus.RUNNING or hop.input_digest is None:
                raise not_found(f"input state of hop {index}")
            return hop.input_digest

    def may_upload_output(self, caller: Caller, train_id: str, index: int) -> int:
        """Check the caller runs this hop; return the blob index its output goes to."""
        with self.sessions() as db:
            hop = self.station_hop(db, caller, train_id, index)
            if hop.status not in (HopStatus.RUNNING, HopStatus.DONE):
                raise ServiceError(409, "hop_not_running", f"hop {index} is {hop.status}")
            return index + 1

    def complete_hop(
        self, caller: Caller, train_id: str, index: int, receipt: Envelope, stored_digest: str
    ) -> str:
        """Record a hop's signed receipt and advance the route. Idempotent for equal receipts."""
        with self.sessions.begin() as db:
            hop = self.station_hop(db, caller, train_id, index)
            train = db.get(TrainRow, train_id)
            assert train is not None
            if hop.status == HopStatus.DONE:
                if hop.receipt is not None and Envelope.model_validate_json(hop.receipt) == receipt:
                    return str(train.status)
                raise ServiceError(409, "hop_done", f"hop {index} already finished differently")
            if train.status in routing.FINISHED:
                raise ServiceError(409, "train_finished", f"train {train_id} is {train.status}")
            manifest = Manifest.model_validate_json(
                Envelope.model_validate_json(train.manifest).payload_bytes
            )
            stop = manifest.hop(index).stop
            parsed = _verify(
                receipt, stop.station, RECEIPT_TYPE, HopReceipt, f"receipt of hop {index}"
            )
            p = parsed.predicate
            if (p.train_id, p.hop) != (train_id, index):
                raise ServiceError(422, "receipt_mismatch", "the receipt names another hop")
            if p.output_state_digest != stored_digest:
                raise ServiceError(
                    422,
                    "digest_mismatch",
                    "the receipt's output digest is not the digest of the uploaded state",
                )
            if p.input_state_digest != hop.input_digest:
                raise ServiceError(422, "input_mismatch", "the receipt names another input state")
            hops = _hops(db, train_id)
            step = routing.on_hop_done(
                {h.index: HopStatus(h.status) for h in hops}, index, p.output_state_digest
            )
            hop.receipt = receipt.model_dump_json()
            hop.output_digest = p.output_state_digest
            if step.train_status == TrainStatus.DONE:
                train.final_state_digest = p.output_state_digest
            _apply(db, train, hops, step)
            return str(train.status)

    def fail_hop(self, caller: Caller, train_id: str, index: int, reason: str) -> None:
        with self.sessions.begin() as db:
            hop = self.station_hop(db, caller, train_id, index)
            train = db.get(TrainRow, train_id)
            assert train is not None
            hops = _hops(db, train_id)
            try:
                step = routing.on_hop_failed({h.index: HopStatus(h.status) for h in hops}, index)
            except routing.IllegalTransition as exc:
                raise ServiceError(409, "hop_finished", str(exc)) from None
            hop.error = reason[:2000]
            if train.status == TrainStatus.CANCELLED:
                hop.status = HopStatus.FAILED
                return
            train.error = f"hop {index} at {caller.name}: {reason[:2000]}"
            _apply(db, train, hops, step)


def _public(row: Party) -> PublicIdentity:
    return PublicIdentity(name=row.name, signing_key=row.signing_key, sealing_key=row.sealing_key)


def _hops(db: Session, train_id: str) -> list[HopRow]:
    return list(
        db.scalars(select(HopRow).where(HopRow.train_id == train_id).order_by(HopRow.index))
    )


def _verify(envelope: Envelope, signer: PublicIdentity, kind: str, model: type[M], what: str) -> M:
    try:
        return open_envelope(envelope, kind, signer, model, what)
    except PhtError as exc:
        raise ServiceError(422, "signature_invalid", str(exc)) from None


def _apply(db: Session, train: TrainRow, hops: list[HopRow], step: routing.Step) -> None:
    by_index = {h.index: h for h in hops}
    for index, status in step.hop_status.items():
        by_index[index].status = status
        if status in (HopStatus.DONE, HopStatus.FAILED):
            by_index[index].finished_at = utcnow()
    for index, digest in step.input_for.items():
        by_index[index].input_digest = digest
    train.status = step.train_status
    if step.train_status in (TrainStatus.DONE, TrainStatus.FAILED):
        train.finished_at = utcnow()
