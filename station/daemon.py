"""The polling loop. Outbound HTTP only; everything owed to central survives a restart.

Each pass, in this order: deliver sealed outputs central has not yet accepted, report
rejections and failures it has not yet heard, run one approved hop, then ask for the next
offer. Central or Docker being unreachable backs off and retries; no hop is dropped.

Alongside, a heartbeat thread renews central's lease on every hop the station holds
(waiting for approval, running, held for release, waiting for upload), so central does not
offer it again; a hop whose train the researcher cancelled is dropped.

Untrusted input never stops the daemon. Whatever goes wrong while handling one hop (any
exception, not only a PhtError) ends that hop: an offer that cannot be read or recorded is
reported failed to central; a run that raises fails its hop with the kind of error (never
its text, which may quote the train's bytes; the log has where it happened); a hop found
interrupted at start ``MAX_RUN_ATTEMPTS`` times (the daemon died under it) fails instead of
running again; and telling central about one record is retried with backoff per record,
then given up (``station.delivery``). Only central being unreachable, or Docker, holds the
whole loop.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from central.client import CentralClient
from central.messages import HopOffer
from station import delivery, leftovers, parse_child, passage, prepare
from station import hop as hops
from station.audit import AUDIT_FILE, AuditLog
from station.config import StationConfig
from station.console.server import start_console
from station.queue import OPEN, HopQueue, HopRecord, HopState, record_id
from station.runner import DockerRunner
from station.state_version import open_state, still_current
from trains.errors import CentralError, CentralUnreachable, HopDeferred
from trains.keys import Identity
from trains.sealing import sealed_size_bound

log = logging.getLogger("pht.station")
MAX_RUN_ATTEMPTS = 3  # runs started (a restart mid-run counts one) before the hop fails


@dataclass
class Station:
    """The daemon's state: config, keys, queue, audit log, and a Docker client made lazily."""

    config: StationConfig
    identity: Identity
    queue: HopQueue
    audit: AuditLog
    _runner: DockerRunner | None = field(default=None, repr=False)
    cancelled: set[str] = field(default_factory=set)  # record ids; the heartbeat fills it

    @classmethod
    def open(cls, config: StationConfig) -> Station:
        queue = HopQueue(open_state(config.state_dir))  # refuses a newer layout
        return cls(config, Identity.load(config.keys_dir), queue, AuditLog(queue.root / AUDIT_FILE))

    def runner(self) -> DockerRunner:
        if self._runner is None:
            # raises DockerUnavailable; the hop is deferred
            self._runner = DockerRunner(runtime=self.config.station.runtime)
            # a run's removal goes on after its hop (defer_cleanup): if this daemon dies
            # first, the next one removes what is labelled with this id (recover)
            leftovers.note(
                self.queue.root, [*leftovers.noted(self.queue.root), self._runner.runner_id]
            )
        return self._runner

    def recover(self) -> None:
        """After a crash or restart: a hop caught mid-run runs again from the start.

        Nothing of it left the station (outputs leave only from the outbox), so running it
        again is safe; its stale scratch folders are removed.
        """
        # the last daemons' containers, whatever their hop's state; an id whose removal
        # failed (Docker away) stays noted for the next restart
        left = [i for i in leftovers.noted(self.queue.root) if not leftovers.remove(i)]
        for record in self.queue.live(HopState.RUNNING):
            if record.runner_id and not leftovers.remove(record.runner_id):
                left.append(record.runner_id)
            if record.attempts >= MAX_RUN_ATTEMPTS:
                reason = (
                    f"the hop was interrupted {record.attempts} times while it ran (the "
                    "station stopped under it); it is not run again"
                )
                hops.fail(record, reason, self.queue, self.audit)
                continue
            log.info("hop %s was interrupted; it will run again", record.id)
            self.audit.append("resumed", train_id=record.train_id, hop=record.hop)
            record.state = HopState.APPROVED
            self.queue.save(record)
        leftovers.note(self.queue.root, left)
        if self.config.work_dir.is_dir():
            for stale in self.config.work_dir.glob(f"{hops.WORK_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)

    def drop_cancelled(self) -> None:
        waiting = (HopState.PENDING, HopState.APPROVED, HopState.HELD, HopState.SEALED)

        def cancel(record: HopRecord) -> bool:
            if record.state not in waiting:  # the admin decided meanwhile, or it ended
                return False
            record.state, record.reason = HopState.FAILED, "the researcher cancelled"
            record.reported = True  # central knows: it told us
            self.queue.clear_output(record)
            return True

        for record in self.queue.live(*waiting):
            # re-read under the queue's lock: an approval or release landing now is
            # cancelled too, never written back over
            if record.id in self.cancelled and (
                self.queue.update(record.id, cancel).state == HopState.FAILED
            ):
                log.info("hop %s: the researcher cancelled the train", record.id)
                self.audit.append("cancelled", train_id=record.train_id, hop=record.hop)

    def step(self, central: CentralClient, wait: float = 0) -> bool:
        """One pass of the loop; True when there was work (so poll again at once).

        ``wait`` > 0 long-polls central for the next hop: the call returns as soon as one
        is queued, or empty-handed after ``wait`` seconds (an approval given meanwhile with
        ``pht-station approve`` is picked up on the next pass)."""
        self.drop_cancelled()
        prepare.give_back(self.queue, self.runner, self.audit)
        for record in self.queue.live(HopState.SEALED):
            if delivery.due(record):
                self._tell(record, central)
        for record in self.queue.live(HopState.REJECTED, HopState.FAILED):
            if not delivery.due(record):
                continue
            if passage.may_pass_on(record):
                record = self._pass_on(record, central)
                if record.state == HopState.SEALED:
                    self._tell(record, central)
                    continue
            if not record.reported:
                self._tell(record, central)
        approved = self.queue.live(HopState.APPROVED)
        if approved:
            record = approved[0]
            try:
                record = hops.run(
                    record, self.config, self.identity, central, self.runner, self.queue, self.audit
                )
            except Exception as exc:  # a PhtError fails the hop in run(); this is the rest
                _log_internal(record.id, exc)
                hops.fail(record, _internal_reason(exc), self.queue, self.audit)
                return True
            if record.state == HopState.APPROVED:  # deferred: Docker is away
                raise _Deferred()
            return True
        offer = central.next_hop(wait=wait)
        if offer is None:
            return False
        try:
            waiting = self._take(offer)
        except Exception as exc:
            self._refuse_unhandled(offer, exc, central)
            return True
        if waiting is not None:  # checks passed, waiting for the admin: pull meanwhile
            prepare.prepare(waiting, self.config, self.runner, self.queue, self.audit)
        return True

    def _take(self, offer: HopOffer) -> HopRecord | None:
        """Record an offer; the new record if it waits for approval (to prepare)."""
        if self.queue.knows(offer):
            # central offered again a hop we hold (its lease ran out while we were away):
            # keep our record and the admin's decision; a refusal is told again
            def unheard(record: HopRecord) -> bool:
                if record.state not in (HopState.REJECTED, HopState.FAILED):
                    return False
                record.reported = False  # back to the loop (hops/), to be told again
                return True

            record = self.queue.update(record_id(offer.train_id, offer.hop), unheard)
            log.info("hop %s was offered again; it is %s here", record.id, record.state)
            return None
        record = hops.admit(offer, self.config, self.identity, self.queue, self.audit)
        return record if record.state == HopState.PENDING else None

    def _refuse_unhandled(self, offer: HopOffer, exc: Exception, central: CentralClient) -> None:
        """An offer that broke its verification or could not be recorded: report it failed
        at once (there is no record to retry from; central offers it again if this fails)."""
        label = f"{str(offer.train_id)[:64]!r} hop {offer.hop!r}"
        _log_internal(label, exc)
        reason = f"the station could not handle the offer ({type(exc).__name__})"
        try:
            self.audit.append(
                "verified",
                train_id=str(offer.train_id)[:200],
                hop=offer.hop,
                result="refused",
                reason=reason,
            )
            central.fail(offer.train_id, offer.hop, reason)
        except Exception as again:
            log.warning("central did not take the refusal of %s (%s)", label, type(again).__name__)

    def _tell(self, record: HopRecord, central: CentralClient) -> None:
        """Deliver a sealed output or report a refusal; a failure is this record's alone
        (retried later), unless central is unreachable altogether."""
        try:
            if record.state == HopState.SEALED:
                delivery.deliver(record, central, self.queue, self.audit)
            else:
                delivery.report(record, central, self.queue, self.audit)
        except Exception as exc:
            if isinstance(exc, CentralUnreachable) and not _answers(central):
                raise  # central is down: the whole loop backs off
            if not isinstance(exc, CentralError):
                _log_internal(record.id, exc)
            delivery.retry_later(record, exc, self.queue, self.audit)

    def _pass_on(self, record: HopRecord, central: CentralClient) -> HopRecord:
        try:
            return passage.pass_on(
                record, self.config, self.identity, central, self.queue, self.audit
            )
        except HopDeferred:
            raise _Deferred() from None
        except Exception as exc:  # pass_on turns a PhtError into this itself
            _log_internal(record.id, exc)
            record.passed_on = False
            record.reason = f"{record.reason}; the state was not passed on ({type(exc).__name__})"
            return self.queue.save(record)


def _answers(central: CentralClient) -> bool:
    """Central is up (it answers an authenticated request)."""
    try:
        central.me()
    except Exception:
        return False
    return True


def _internal_reason(exc: BaseException) -> str:
    """What central and the researcher read: the kind of error only. Its text may quote
    the train's bytes (a parser's message), so it stays out; the admin's log says where."""
    return (
        f"the station could not process this hop ({type(exc).__name__}); the station's admin "
        "has the details in its log"
    )


def _log_internal(what: str, exc: BaseException) -> None:
    """Where it happened, without the message (which may quote untrusted bytes)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in frames[::-1][:6])
    log.error("hop %s: %s at %s", what, type(exc).__name__, where or "?")


class Heartbeat(threading.Thread):
    """Renews the lease of every hop the station holds, every ``heartbeat_s`` seconds, or
    more often where central's lease is shorter (a third of the shortest lease held)."""

    def __init__(self, station: Station) -> None:
        super().__init__(name="pht-heartbeat", daemon=True)
        self.station = station
        self.stopping = threading.Event()

    def run(self) -> None:
        config = self.station.config
        # its own client: the main loop's may be busy with a long upload
        with CentralClient(config.station.central_url, config.token(), timeout=10.0) as c:
            interval = config.station.heartbeat_s
            while not self.stopping.wait(interval):
                interval = config.station.heartbeat_s
                try:
                    for record in self.held():
                        self._beat(c.heartbeat, record)
                        interval = beat_interval(interval, record.offer.lease_s)
                except Exception as exc:  # the thread lives on; the next beat tries again
                    _log_internal("heartbeat", exc)

    def held(self) -> list[HopRecord]:
        """The hops whose lease this station keeps: the open ones."""
        return self.station.queue.live(*OPEN)

    def _beat(self, beat: Callable[[str, int], str], record: HopRecord) -> None:
        try:
            status = beat(record.train_id, record.hop)
        except CentralError as exc:
            log.debug("heartbeat for %s: %s", record.id, exc)
            return
        if status == "cancelled":
            self.station.cancelled.add(record.id)


def beat_interval(interval: float, lease_s: float) -> float:
    """How long until the next beat: within a third of a lease central gave (a lease of 0
    means central keeps none), never below a tenth of a second."""
    return max(0.1, min(interval, lease_s / 3)) if lease_s > 0 else interval


class _Deferred(Exception):
    """An approved hop could not start; back off before trying again."""


def run_daemon(config: StationConfig, once: bool = False) -> None:
    station = Station.open(config)
    config.token()  # a missing token is a config error, said once, before any thread starts
    station.recover()
    parse_child.SPARE.refill()  # the first output's disclosure check is warm too
    interval, ceiling = config.station.poll_interval_s, config.station.max_backoff_s
    heartbeat = Heartbeat(station)
    heartbeat.start()
    console = None if once else start_console(config)  # [console] in station.toml
    try:
        _loop(station, once, interval, ceiling)
    finally:
        heartbeat.stopping.set()
        if console is not None:
            console.stop()


def long_poll(config: StationConfig, queue: HopQueue) -> float:
    """How long to wait on central for the next offer. An admin's approval from the command
    line reaches the daemon only between two polls, so while a hop waits for one the wait
    is the short poll interval: an approved hop starts within it, not a long poll later."""
    if queue.live(HopState.PENDING):
        return min(config.station.long_poll_s, config.station.poll_interval_s)
    return config.station.long_poll_s


def _loop(station: Station, once: bool, interval: float, ceiling: float) -> None:
    config = station.config
    backoff = interval
    # no state this station may be handed is larger than what its caps let a hop write
    most = sealed_size_bound(config.policy.caps.max_output_mb * 1024 * 1024)
    with CentralClient(
        config.station.central_url, config.token(), max_download_bytes=most
    ) as central:
        log.info("station %s polling %s", station.identity.name, config.station.central_url)
        while True:
            still_current(station.queue.root)  # not caught below: the daemon stops
            wait = 0.0 if once else long_poll(config, station.queue)
            try:
                worked = station.step(central, wait)
                backoff = interval
            except (CentralError, _Deferred) as exc:
                if isinstance(exc, CentralError) and not delivery.is_transient(exc):
                    raise
                log.warning("%s; retrying in %.1fs", str(exc) or "Docker unavailable", backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, ceiling)
                continue
            except Exception as exc:  # not any one hop's (those end in step): keep going
                _log_internal("-", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, ceiling)
                continue
            if worked:
                continue
            if once:
                return
            if wait == 0:
                time.sleep(interval)
