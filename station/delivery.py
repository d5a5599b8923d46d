"""Telling central how a hop ended: upload the kept output with its receipt, or report a
failure. Both are safe to repeat: central accepts identical bytes and receipts again, so
after an outage or a restart the daemon simply sends what ``station.queue`` still holds.

Central being unreachable holds everything (the daemon backs off as a whole). But when
central answers and still does not take one record (a 5xx for that train only, a kept
file that cannot be read), only that record waits: it is tried again after
``RETRY_BASE_S``, doubling up to ``RETRY_MAX_S``, at most ``MAX_TRIES`` times in a row
(the count and the next time live in the record, so a restart keeps them). Then an output
that was never accepted fails its hop (reported to central like any failure), and a report
central never took is *quarantined*: left alone, listed by ``pht-station pending``, written
to the audit log. Meanwhile every other hop goes on.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from central.client import CentralClient
from station.audit import AuditLog
from station.queue import HopQueue, HopRecord, HopState, now
from trains.errors import CentralError, CentralUnreachable

log = logging.getLogger("pht.station")
MAX_TRIES = 6
RETRY_BASE_S = 10.0
RETRY_MAX_S = 900.0


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
    record.tries, record.retry_at = 0, None  # central took it: no backoff carries over
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
    record.tries, record.retry_at = 0, None  # heard: a later report starts afresh
    queue.save(record)


def due(record: HopRecord) -> bool:
    """The record is not waiting out a backoff."""
    return record.retry_at is None or record.retry_at <= now()


def retry_later(
    record: HopRecord, exc: BaseException, queue: HopQueue, audit: AuditLog
) -> HopRecord:
    """Count one failed try to tell central about ``record``; back off, or give up on it."""
    what = str(exc) if isinstance(exc, CentralError) else type(exc).__name__
    record.tries += 1
    if record.tries < MAX_TRIES:
        delay = min(RETRY_BASE_S * 2 ** (record.tries - 1), RETRY_MAX_S)
        record.retry_at = now() + timedelta(seconds=delay)
        log.warning(
            "hop %s: telling central failed (%s); try %d of %d in %.0fs",
            record.id,
            what,
            record.tries + 1,
            MAX_TRIES,
            delay,
        )
        return queue.save(record)
    record.tries, record.retry_at = 0, None
    if record.state == HopState.SEALED:
        from station.hop import fail

        reason = f"central did not accept the output after {MAX_TRIES} tries (last: {what})"
        return fail(record, reason, queue, audit)
    record.state = HopState.QUARANTINED
    record.reason = (
        f"{record.reason or 'refused'}; quarantined: central did not take this report after "
        f"{MAX_TRIES} tries (last: {what})"
    )
    log.error("hop %s quarantined: %s", record.id, record.reason)
    audit.append("quarantined", train_id=record.train_id, hop=record.hop, reason=record.reason)
    return queue.save(record)
