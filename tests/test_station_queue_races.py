"""Writers of one hop record in different processes do not lose each other's changes.

The daemon saves a record (a pre-pull notes ``prepared_at``/``pulled_image``) while the
admin's ``pht-station approve``/``reject`` (or the console) saves the same record from
another process: each reads the record, changes it and writes it whole, so without a lock
held across that read-modify-write the later write silently drops the earlier one (the
approval lost: the hop waits again; or a hop both approved and rejected).

Real processes on a real state folder; each pair starts its write at the same moment (a
barrier), over many records, so a window between a read and a write is hit if there is one.
"""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime

import pytest

from station import prepare
from station.audit import AUDIT_FILE, AuditLog
from station.audit import verify as verify_audit
from station.queue import HopQueue, HopRecord, HopState
from station.service import StationService
from tests.factories import make_offer, manual_station
from trains.errors import ConfigError

RECORDS = 40
PULLED = "127.0.0.1:5000/pht/cohort@sha256:" + "a" * 64


@pytest.fixture
def world(tmp_path):
    config, envelope, _ = manual_station(tmp_path)
    queue = StationService(config).queue
    ids = []
    for _ in range(RECORDS):
        offer = make_offer(str(uuid.uuid4()), 0, envelope)
        ids.append(queue.save(HopRecord.from_offer(offer, HopState.PENDING)).id)
    return config, ids


def _run_together(*jobs) -> None:
    """Each job (a function of (barrier, ...)) in its own process; all must end cleanly."""
    barrier = multiprocessing.get_context("fork").Barrier(len(jobs))
    procs = [
        multiprocessing.get_context("fork").Process(target=job, args=(barrier, *args))
        for job, *args in jobs
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0


def _prepare_each(barrier, config, ids) -> None:
    queue = HopQueue(config.state_dir)
    for rid in ids:
        barrier.wait(30)
        prepare.note_prepared(queue, rid, datetime.now(UTC), PULLED)


def _approve_each(barrier, config, ids, outcome) -> None:
    service = StationService(config)
    for rid in ids:
        barrier.wait(30)
        try:
            service.approve_hop(rid, "admin")
            outcome[rid + ":approved"] = True
        except ConfigError:
            outcome[rid + ":approved"] = False


def _reject_each(barrier, config, ids, outcome) -> None:
    service = StationService(config)
    for rid in ids:
        barrier.wait(30)
        try:
            service.reject(rid, "not this one", "console:bob")
            outcome[rid + ":rejected"] = True
        except ConfigError:
            outcome[rid + ":rejected"] = False


def test_a_pre_pull_landing_with_an_approval_loses_neither(world):
    config, ids = world
    outcome = multiprocessing.get_context("fork").Manager().dict()
    _run_together((_prepare_each, config, ids), (_approve_each, config, ids, outcome))
    queue = HopQueue(config.state_dir)
    records = [queue.get(rid) for rid in ids]
    assert all(outcome[rid + ":approved"] for rid in ids)  # each was pending when approved
    lost_approvals = [r.id for r in records if r.state != HopState.APPROVED]
    lost_pulls = [r.id for r in records if r.pulled_image != PULLED or r.prepared_at is None]
    assert lost_approvals == []
    assert lost_pulls == []


def test_an_approval_and_a_rejection_of_one_hop_at_once_let_exactly_one_decide(world):
    config, ids = world
    outcome = multiprocessing.get_context("fork").Manager().dict()
    _run_together((_approve_each, config, ids, outcome), (_reject_each, config, ids, outcome))
    queue = HopQueue(config.state_dir)
    for rid in ids:
        approved, rejected = outcome[rid + ":approved"], outcome[rid + ":rejected"]
        assert approved != rejected, rid  # one decided; the other was told it came too late
        state = queue.get(rid).state
        assert state == (HopState.APPROVED if approved else HopState.REJECTED)


def _append_each(barrier, path, ids, who) -> None:
    log = AuditLog(path)
    for rid in ids:
        barrier.wait(30)
        log.append("approved", train_id=rid, hop=0, by=who)


def test_the_daemon_and_an_admin_appending_at_once_keep_the_audit_chain_whole(world):
    """The audit log is read-modify-written too (each line names the hash of the one
    before): two appends at once must not both chain to the same line."""
    config, ids = world
    path = config.state_dir / AUDIT_FILE
    _run_together((_append_each, path, ids, "daemon"), (_append_each, path, ids, "admin"))
    assert verify_audit(path) == []
    assert len(AuditLog(path).entries()) == 2 * len(ids)
