"""Telling central how a hop ended: upload the kept output with its receipt, or report a
failure. Both are safe to repeat: central accepts identical bytes and receipts again, so
after an outage or a restart the daemon simply sends what ``station.queue`` still holds.
"""

from __future__ import annotations

import logging

from central.client import CentralClient
from station.audit import AuditLog
from station.queue import HopQueue, HopRecord, HopState
from trains.errors import CentralError, CentralUnreachable

log = logging.getLogger("pht.station")


def is_transient(exc: CentralError) -> bool:
    """Central down or overloaded: worth retrying. A 4xx refusal is final."""
    return isinstance(exc, CentralUnreachable)


def deliver(
    record: HopRecord, central: CentralClient, queue: HopQueue, audit: AuditLog
) -> HopRecord:
    """Upload the kept output and complete the hop (one request); idempotent, so safe to
    repeat."""
    ident = {"train_id": record.train_id, "hop": record.hop}
    sealed, receipt = queue.load_output(record)
    try:
        digest, status = central.deliver(record.train_id, record.hop, sealed, receipt)
        audit.append("uploaded", **ident, output_digest=digest, bytes=sealed.stat().st_size)
    except CentralError as exc:
        if is_transient(exc):
            raise
        from station.hop import fail

        return fail(record, f"central did not accept the output: {exc}", queue, audit)
    audit.append("completed", **ident, train_status=status)
    log.info("hop %s of train %s delivered; train is %s", record.hop, record.train_id, status)
    record.state = HopState.DONE
    queue.clear_output(record)
    return queue.save(record)


def report(record: HopRecord, central: CentralClient, queue: HopQueue, audit: AuditLog) -> None:
    """Tell central a hop was rejected or failed, with the reason the researcher sees."""
    try:
        central.fail(record.train_id, record.hop, record.reason or "refused by the station")
    except CentralError as exc:
        if is_transient(exc):
            raise
        # central refused to hear it (e.g. the train was cancelled): nothing more to tell
        log.info("central did not take the failure of %s: %s", record.id, exc)
    audit.append("reported", train_id=record.train_id, hop=record.hop, state=record.state)
    record.reported = True
    queue.save(record)
