"""Prepare while waiting (issue 15 item 2): a hop that waits for the admin's approval has
its image pulled and checked meanwhile, so approving it starts the container sooner.

Only after the offer's checks passed (``station.hop.admit`` records a hop as pending only
then) and only the pull: nothing of the image runs before the hop is approved and run
(``station.hop.run`` checks the offer again, and pulls again if the image went away). The
pull has the same deadlines, size cap and checks as the run's (``station.pull``).

What the preparation pulled is named in the record (``pulled_image``); a hop that ends
without running (rejected, cancelled, failed before its run) gives it back: the image
reference is removed again unless another open hop here uses the same image. An image
Docker already held is not the preparation's and is left alone. A preparation that fails
(Docker away, the registry refusing) changes nothing for the hop: its run pulls as before.

A researcher may submit many trains nobody approves: at most ``MAX_PREPARED`` pending
hops hold an image their preparation pulled (disk: that many times ``max_image_mb``), and a
preparation's pull ends after ``PREPARE_PULL_S`` (stalled after ``PREPARE_STALL_S``), so
offers nobody approved can neither fill the disk nor hold the daemon's loop for long; a hop
not prepared is pulled by its run, as before.

The datasets are not materialised ahead: a hop may wait for days, and patient data
should sit in a work folder only for the run it was approved for (a query would also read
the database before anyone approved the train).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import docker.errors

from station import pull as pulling
from station.audit import AuditLog
from station.config import StationConfig
from station.queue import OPEN, HopQueue, HopRecord, HopState, now
from station.runner import DockerRunner
from trains.errors import PhtError
from trains.manifest import Manifest
from trains.signing import unverified_payload

log = logging.getLogger("pht.station")
MAX_PREPARED = 2
PREPARE_PULL_S = 120.0
PREPARE_STALL_S = 30.0
ENDED = (HopState.REJECTED, HopState.FAILED, HopState.QUARANTINED, HopState.DONE)


def image_of(record: HopRecord) -> str:
    """The pinned image reference of a hop's train (its manifest was verified at admit)."""
    return unverified_payload(record.manifest, Manifest).image.reference


def has_room(records: list[HopRecord]) -> bool:
    """Fewer than MAX_PREPARED pending hops hold an image their preparation pulled."""
    held = sum(1 for r in records if r.state == HopState.PENDING and r.pulled_image)
    return held < MAX_PREPARED


def prepare(
    record: HopRecord,
    config: StationConfig,
    runner: Callable[[], DockerRunner],
    queue: HopQueue,
    audit: AuditLog,
) -> HopRecord:
    """Pull and check the image of a hop waiting for approval; a failure is logged only."""
    if record.state != HopState.PENDING or record.prepared_at is not None:
        return record
    if not has_room(queue.live(HopState.PENDING)):
        log.info("hop %s: not prepared (%d hops wait with images pulled)", record.id, MAX_PREPARED)
        return record
    manifest = unverified_payload(record.manifest, Manifest)
    ident = {"train_id": record.train_id, "hop": record.hop}
    limits = replace(
        config.pull_limits,
        timeout_s=min(config.pull_limits.timeout_s, PREPARE_PULL_S),
        stall_s=min(config.pull_limits.stall_s, PREPARE_STALL_S),
    )
    try:
        engine = runner()
        held = pulling.present(engine.client, manifest.image, limits)
        if held is None:
            engine.pull(manifest.image, limits)
            record.pulled_image = manifest.image.reference
        audit.append("image_ready", **ident, image=manifest.image.reference, pulled=held is None)
    except (PhtError, docker.errors.DockerException, OSError) as exc:
        # the run pulls again and fails the hop there if the image is at fault
        log.warning("hop %s: the image was not prepared (%s)", record.id, type(exc).__name__)
    return note_prepared(queue, record.id, now(), record.pulled_image)


def note_prepared(
    queue: HopQueue, rid: str, prepared_at: datetime, pulled_image: str | None
) -> HopRecord:
    """Add what a preparation did to the hop's record, keeping whatever else changed in it
    meanwhile (the admin may have decided while the pull ran)."""

    def add(current: HopRecord) -> bool:
        current.prepared_at, current.pulled_image = prepared_at, pulled_image
        return True

    return queue.update(rid, add)  # re-read under the lock: an approval is never lost


def give_back(queue: HopQueue, runner: Callable[[], DockerRunner], audit: AuditLog) -> None:
    """Remove the images preparations pulled for hops that ended without running."""
    records = queue.live()  # an ended hop with a pulled image is live until given back
    ended = [r for r in records if r.state in ENDED and r.pulled_image]
    if not ended:
        return
    wanted = {image_of(r) for r in records if r.state in OPEN}
    for record in ended:
        reference = record.pulled_image
        assert reference is not None
        if reference not in wanted:
            try:
                client = runner().client
                with contextlib.suppress(docker.errors.ImageNotFound):
                    client.images.remove(reference)  # this reference only, not others' tags
            except (PhtError, docker.errors.DockerException) as exc:
                # in use by a container, or Docker away: tried again on the next pass
                log.info("hop %s: image not removed yet (%s)", record.id, type(exc).__name__)
                continue
            audit.append("image_removed", train_id=record.train_id, hop=record.hop)

        def given_back(current: HopRecord) -> bool:
            current.pulled_image = None
            return True

        queue.update(record.id, given_back)
