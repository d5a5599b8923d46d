"""Rows to routing and back: the small helpers the service's parts share."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import routing
from central.db import HopRow, TrainRow, utcnow
from central.errors import ServiceError
from central.messages import HopInput
from central.routing import HopStatus
from trains.early_end import early_end_refused, sealed_to_after
from trains.errors import PhtError
from trains.keys import PublicIdentity
from trains.manifest import Manifest
from trains.receipt import HopPredicate, HopReceipt, check_passed_on
from trains.signing import Envelope, M, open_envelope, unverified_payload

INITIAL_STATE_BLOB = "initial.sealed"


def output_blob(producing_hop: int | None) -> str:
    """Blob name of the state a hop wrote (``None``: the researcher's initial state). Named
    by its writer: one aggregate output is read by every stop of the next round."""
    return INITIAL_STATE_BLOB if producing_hop is None else f"output-{producing_hop:05d}.sealed"


def manifest_of(train: TrainRow) -> Manifest:
    """The train's manifest (its signature was checked at submission)."""
    return _route(train.manifest)[0]


def route_of(train: TrainRow) -> tuple[Manifest, dict[int, list[int]]]:
    """The train's manifest and its plan, parsed once per process (a manifest never
    changes, and every completed hop needs both)."""
    return _route(train.manifest)


@lru_cache(maxsize=256)
def _route(envelope_json: str) -> tuple[Manifest, dict[int, list[int]]]:
    manifest = Manifest.model_validate_json(
        Envelope.model_validate_json(envelope_json).payload_bytes
    )
    return manifest, plan_of(manifest)


def plan_of(manifest: Manifest) -> dict[int, list[int]]:
    return {hop.index: list(hop.inputs) for hop in manifest.hops()}


def inputs_of(hop: HopRow) -> list[HopInput]:
    return [HopInput.model_validate(i) for i in json.loads(hop.inputs or "[]")]


@dataclass
class Hooks:
    """What the service tells its host: which stations got work (``notify`` inside the
    transaction that queued it, ``queued`` after its commit), how long a hop waited."""

    queued: Callable[[set[str]], None] = lambda stations: None
    notify: Callable[[Session, set[str]], None] = lambda db, stations: None
    claimed: Callable[[float], None] = lambda waited_s: None


def hops_of(db: Session, train_id: str) -> list[HopRow]:
    return list(
        db.scalars(select(HopRow).where(HopRow.train_id == train_id).order_by(HopRow.index))
    )


def statuses_of(hops: list[HopRow]) -> dict[int, HopStatus]:
    return {h.index: HopStatus(h.status) for h in hops}


def hop_states(db: Session, train_id: str) -> tuple[dict[int, HopStatus], dict[int, str]]:
    """(status of every hop, output digest of every hop that has one), without loading
    the rows: a long route's receipts stay in the database."""
    rows = db.execute(
        select(HopRow.index, HopRow.status, HopRow.output_digest).where(HopRow.train_id == train_id)
    ).all()
    return (
        {index: HopStatus(status) for index, status, _ in rows},
        {index: digest for index, _, digest in rows if digest is not None},
    )


def receipts_of(db: Session, train_id: str, indexes: Iterable[int]) -> dict[int, str]:
    """The stored receipts (JSON) of some hops of a train."""
    rows = db.execute(
        select(HopRow.index, HopRow.receipt).where(
            HopRow.train_id == train_id, HopRow.index.in_(list(indexes))
        )
    )
    return {index: receipt for index, receipt in rows if receipt is not None}


def advance(
    db: Session,
    train: TrainRow,
    step: routing.Step,
    plan: routing.Plan,
    loaded: Iterable[HopRow] = (),
) -> set[str]:
    """:func:`apply_step` loading only the rows the step changes (``loaded`` are at hand)."""
    rows = {h.index: h for h in loaded}
    missing = (set(step.hop_status) | set(step.input_for)) - set(rows)
    if missing:
        rows.update(
            (h.index, h)
            for h in db.scalars(
                select(HopRow).where(HopRow.train_id == train.id, HopRow.index.in_(missing))
            )
        )
    return apply_step(train, list(rows.values()), step, plan)


def verify_envelope(
    envelope: Envelope, signer: PublicIdentity, kind: str, model: type[M], what: str
) -> M:
    try:
        return open_envelope(envelope, kind, signer, model, what)
    except PhtError as exc:
        raise ServiceError(422, "signature_invalid", str(exc)) from None


def check_receipt(
    manifest: Manifest, manifest_digest: str, train_id: str, index: int, p: HopPredicate
) -> None:
    """What central can check of a hop's receipt (its signature by the key pinned for the
    stop is checked before): it names this train, manifest, image, hop, round and kind (or
    a skip, where the route allows one), the station pinned for the stop, and its output is
    sealed to exactly the readers the manifest names. A ServiceError 422 otherwise."""
    hop = manifest.hop(index)
    sealed_to = [r.sealing_fingerprint for r in sealed_to_after(manifest, index, p.converged)]
    end_refused = early_end_refused(manifest, index) if p.converged else None
    checks = [
        ((p.train_id, p.hop) == (train_id, index), f"names train {p.train_id} hop {p.hop}"),
        (p.round == hop.round, f"names round {p.round}, the route has {hop.round}"),
        (p.manifest_digest == manifest_digest, "names another manifest"),
        (p.image_digest == manifest.image.digest, f"names image {p.image_digest}"),
        (
            p.station == hop.stop.name and p.station_key == hop.stop.station.signing_fingerprint,
            f"names station {p.station} ({p.station_key}), the route pins {hop.stop.name}",
        ),
        (
            p.kind == hop.kind or p.kind == "skipped",
            f"claims kind {p.kind}, the route pins {hop.kind}",
        ),
        (
            p.output_sealed_to == sealed_to,
            "says the output is sealed to readers other than exactly the ones the manifest "
            "names for it",
        ),
        (
            not p.converged or (end_refused is None and p.kind != "skipped"),
            f"says the route ended there, but {end_refused or 'a skipped hop ran nothing'}",
        ),
    ]
    for ok, problem in checks:
        if not ok:
            raise ServiceError(422, "receipt_mismatch", f"the receipt of hop {index} {problem}")
    refused = manifest.skip_refused(index) if p.kind == "skipped" else None
    if refused is not None:
        raise ServiceError(
            422,
            "skip_not_allowed",
            f"hop {index} may not be skipped: {refused}; report the refusal with /fail instead",
        )


def check_skip(p: HopPredicate, handed: Envelope) -> None:
    """A skipped hop commits to exactly the state it read: the commitment of the receipt
    of the hop that handed it on (stored and checked when that hop completed)."""
    try:
        check_passed_on(p, unverified_payload(handed, HopReceipt).predicate)
    except PhtError as exc:
        raise ServiceError(422, "skip_changed_state", str(exc)) from None


def skip_trail(db: Session, train_id: str, sources: list[int]) -> list[Envelope]:
    """For inputs a skipped hop passed on: the receipts behind it, back to the hop that
    wrote the state (or the first hop), so the reader can check every skip on the way."""
    statuses, _ = hop_states(db, train_id)
    trail: list[int] = []
    for source in sources:
        index: int | None = source
        while index is not None and statuses.get(index) == HopStatus.SKIPPED:
            rows = db.scalars(
                select(HopRow).where(HopRow.train_id == train_id, HopRow.index == index)
            )
            behind = [i.hop for row in rows for i in inputs_of(row) if i.hop is not None]
            index = behind[0] if behind else None
            if index is not None and index not in trail:
                trail.append(index)
    stored = receipts_of(db, train_id, trail)
    return [Envelope.model_validate_json(stored[i]) for i in trail if i in stored]


def apply_step(
    train: TrainRow, hops: list[HopRow], step: routing.Step, plan: routing.Plan | None = None
) -> set[str]:
    """Write a routing step to the rows; return the stations that got a hop to run.

    ``plan`` pairs each input digest with the hop that wrote it: a step that queues hops
    needs it; ``hops`` are at least the rows the step changes."""
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
    for index, digests in step.input_for.items():
        assert plan is not None, "a step that queues hops is applied with the train's plan"
        sources: list[int | None] = list(plan[index]) or [None] * len(digests)
        by_index[index].inputs = json.dumps(
            [{"hop": j, "digest": d} for j, d in zip(sources, digests, strict=True)]
        )
        by_index[index].input_digest = digests[0] if digests else None
    if train.status not in routing.FINISHED:
        train.status = step.train_status
        if step.train_status in routing.FINISHED:
            train.finished_at = now
    return queued
