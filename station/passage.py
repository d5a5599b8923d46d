"""Passing a refused hop on, where the route allows it (``route.on_refusal = "skip"``).

A station that refuses to run a hop (its policy, its admin with ``pht-station reject``, or
the train itself through the runtime with a code of its fixed vocabulary, e.g.
``too_few_rows``) may still let the train go on without it. It first checks that what it
was handed is authentic (``station.verify.verify_passage``: the manifest's signature,
expiry, that the hop is its own with its own keys, the inputs' receipts; then each input's
bytes, that it is sealed to exactly the readers the manifest names, and its seal), opens
the state, checks that it is the one the receipts behind it commit to (check 10), seals
exactly those archive bytes to whoever reads this hop's output, and signs a receipt of kind
``skipped`` that carries the refusal's reason and the same ``output_commitment`` as the
receipt of the hop it read: the next stop and the researcher check that it passed on what
it was handed (the last hop never skips: it runs ``finalize`` and disclosure control). No
container runs and no data is read. A state that fails any of those checks is never passed
on: the refusal is reported and the train fails, as on a route that does not allow skipping.

The sealed state and receipt go through the outbox like a run's output, so delivering them
is as safe to repeat.
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from central.client import CentralClient
from station.audit import AuditLog
from station.config import StationConfig
from station.delivery import is_transient
from station.queue import HopQueue, HopRecord, HopState
from station.verify import (
    check_input_digest,
    check_opened_input,
    empty_state_changed,
    verify_passage,
)
from trains import state_codec
from trains.errors import CentralError, HopDeferred, PhtError
from trains.keys import Identity
from trains.manifest import Manifest
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt, readers_of
from trains.sealing import check_sealed_to, output_context
from trains.signing import sign, unverified_payload
from trains.statepipe import open_and_reseal, pack_and_seal

log = logging.getLogger("pht.station")
# the empty state is one tar record (trains.state_codec.pack_to of no file: 10240 bytes);
# a state that must be empty and is larger than this is not the empty state
EMPTY_STATE_BOUND = 1 << 16


def check_empty(head: bytes, scratch: Path, source_hop: int | None) -> None:
    """Refuse a state that must be the empty state (a skipped first hop with no initial
    state had nothing else to pass on) but holds a file or is larger than the empty state."""
    if len(head) > EMPTY_STATE_BOUND or state_codec.unpack_from(
        io.BytesIO(head), scratch, EMPTY_STATE_BOUND
    ):
        raise empty_state_changed(source_hop)


def may_pass_on(record: HopRecord) -> bool:
    """A refusal not yet told whose route asks to skip refusing stops (checked properly,
    signature and all, by :func:`pass_on`, whose reason says why a hop may not skip, e.g.
    the last one)."""
    if record.state != HopState.REJECTED or record.reported or record.passed_on is not None:
        return False
    try:
        return unverified_payload(record.manifest, Manifest).route.on_refusal == "skip"
    except ValueError:
        return False


def pass_on(
    record: HopRecord,
    config: StationConfig,
    me: Identity,
    central: CentralClient,
    queue: HopQueue,
    audit: AuditLog,
) -> HopRecord:
    """Seal the hop's input, unchanged, to the next readers with a ``skipped`` receipt, and
    queue both for delivery; or, if the state may not be passed on, leave the refusal to be
    reported (its reason says why). Central being away raises HopDeferred: try again."""
    ident = {"train_id": record.train_id, "hop": record.hop}
    config.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = Path(tempfile.mkdtemp(prefix=f"pass-{record.hop}-", dir=config.work_dir))
    try:
        verified = verify_passage(record.offer, me.public, config.policy.network_root)
        manifest, hop = verified.manifest, verified.hop
        started_at = datetime.now(UTC)
        recipients = manifest.recipients_after(hop.index)
        to_context = output_context(record.train_id, hop.index)
        incoming = queue.sealed_path(record).with_suffix(".incoming")
        if record.offer.inputs:  # a local hop reads one state
            (source,) = record.offer.inputs
            sealed_in = work / "input.sealed"
            try:  # the digest of the bytes written, taken while they streamed
                digest = central.download_input(record.train_id, record.hop, sealed_in, 0)
            except CentralError as exc:
                if is_transient(exc):
                    raise HopDeferred(str(exc)) from None
                raise
            check_input_digest(digest, source.digest)
            # sealed to exactly its readers (the header, not the receipt's word)
            check_sealed_to(sealed_in, readers_of(manifest, source.hop), "the input state")
            # opened and sealed again in one pass, byte for byte; ``incoming`` is kept
            # only if every check below passes
            passed = open_and_reseal(
                sealed_in,
                me.sealing,
                output_context(record.train_id, source.hop),
                incoming,
                recipients,
                to_context,
                EMPTY_STATE_BOUND,
                hash_sealed=False,
            )
            sealed_in.unlink()
            try:
                # the state the receipts commit to, each skip before us passing it on as read
                if check_opened_input(record.offer, manifest, 0, passed.opened.plain):
                    check_empty(passed.head, work / "check", source.hop)
            except BaseException:
                incoming.unlink(missing_ok=True)
                raise
            output_digest, commitment = passed.sealed, passed.opened.plain
        else:  # a first hop without an initial state hands on the empty state
            digests = pack_and_seal(work, [], 0, incoming, recipients, to_context)
            output_digest, commitment = digests.sealed, digests.plain
        receipt = HopReceipt.for_hop(
            HopPredicate(
                train_id=record.train_id,
                hop=hop.index,
                round=hop.round,
                kind="skipped",
                station=me.name,
                station_key=me.public.signing_fingerprint,
                manifest_digest=verified.manifest_digest,
                image_digest=manifest.image.digest,
                input_state_digests=[i.digest for i in record.offer.inputs],
                output_state_digest=output_digest,
                # the archive we opened, byte for byte: what the hop we read committed to
                output_commitment=commitment,
                output_sealed_to=[r.sealing_fingerprint for r in recipients],
                previous_receipt_digests=verified.previous_receipt_digests,
                started_at=started_at,
                finished_at=datetime.now(UTC),
                container_seconds=0.0,
                reason=record.reason,
            )
        )
    except HopDeferred:
        raise
    except PhtError as exc:
        log.warning("hop %s: the state cannot be passed on: %s", record.id, exc)
        audit.append("pass_on_refused", **ident, reason=str(exc))
        record.passed_on = False
        record.reason = f"{record.reason}; the state was not passed on: {exc}"
        return queue.save(record)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    queue.store_output(record, incoming, sign(receipt, RECEIPT_TYPE, me.signing))
    record.output_digest, record.passed_on = output_digest, True
    record.state = HopState.SEALED
    audit.append("passed_on", **ident, output_digest=output_digest)
    log.info("hop %s refused; the state goes on to the next stop unchanged", record.id)
    return queue.save(record)
