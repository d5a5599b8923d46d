"""The routing state machine, as plain functions: no HTTP, no database.

A train's hops are numbered 0..N-1 (rounds x stops). Hop states move only along::

    waiting -> queued -> running -> done
                 |   ^      |
                 |   +------+  (lease expired: offered again, up to a limit)
                 +----------+----> failed

Hop 0 is queued at submission (or once the initial state is uploaded); finishing hop i
queues hop i+1 with hop i's output as its input; finishing the last hop finishes the
train. A failed hop fails the train with the station's reason. A claimed hop holds a lease
that its station renews; a lease that runs out puts the hop back in the queue, and after
``max_attempts`` claims the train fails with a reason that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class HopStatus(StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class TrainStatus(StrEnum):
    WAITING_FOR_STATE = "waiting_for_state"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = {TrainStatus.DONE, TrainStatus.FAILED, TrainStatus.CANCELLED}

LEGAL = {
    HopStatus.WAITING: {HopStatus.QUEUED, HopStatus.FAILED},
    HopStatus.QUEUED: {HopStatus.RUNNING, HopStatus.FAILED},
    HopStatus.RUNNING: {HopStatus.DONE, HopStatus.FAILED, HopStatus.QUEUED},
    HopStatus.DONE: set(),
    HopStatus.FAILED: set(),
}


class IllegalTransition(ValueError):
    pass


def check_transition(current: HopStatus, new: HopStatus) -> None:
    if new not in LEGAL[current]:
        raise IllegalTransition(f"a hop cannot go from {current} to {new}")


@dataclass(frozen=True)
class Step:
    """What the engine decides after an event: new hop statuses and the train's status."""

    hop_status: dict[int, HopStatus]
    train_status: TrainStatus
    input_for: dict[int, str | None]  # hop index -> digest of the state it will read


def on_submit(hop_count: int, has_initial_state: bool) -> Step:
    if has_initial_state:
        return Step(
            {i: HopStatus.WAITING for i in range(hop_count)}, TrainStatus.WAITING_FOR_STATE, {}
        )
    statuses = {i: HopStatus.WAITING for i in range(hop_count)}
    statuses[0] = HopStatus.QUEUED
    return Step(statuses, TrainStatus.RUNNING, {0: None})


def on_initial_state(statuses: dict[int, HopStatus], digest: str) -> Step:
    check_transition(statuses[0], HopStatus.QUEUED)
    return Step({0: HopStatus.QUEUED}, TrainStatus.RUNNING, {0: digest})


def on_hop_done(statuses: dict[int, HopStatus], index: int, output_digest: str) -> Step:
    check_transition(statuses[index], HopStatus.DONE)
    last = max(statuses)
    if index == last:
        return Step({index: HopStatus.DONE}, TrainStatus.DONE, {})
    check_transition(statuses[index + 1], HopStatus.QUEUED)
    return Step(
        {index: HopStatus.DONE, index + 1: HopStatus.QUEUED},
        TrainStatus.RUNNING,
        {index + 1: output_digest},
    )


def on_late_hop_done(statuses: dict[int, HopStatus], index: int, output_digest: str) -> Step:
    """A station finished a hop whose lease ran out and that nobody has claimed since (e.g.
    a station that sends no heartbeats ran a long container): its signed result is as good
    as a fresh run's, so take it rather than run the hop again."""
    if statuses[index] != HopStatus.QUEUED:
        raise IllegalTransition(f"hop {index} is {statuses[index]}, not waiting for a re-run")
    return on_hop_done({**statuses, index: HopStatus.RUNNING}, index, output_digest)


def on_hop_failed(statuses: dict[int, HopStatus], index: int) -> Step:
    check_transition(statuses[index], HopStatus.FAILED)
    changes = {index: HopStatus.FAILED}
    for i, status in statuses.items():
        if i != index and status in (HopStatus.WAITING, HopStatus.QUEUED):
            changes[i] = HopStatus.FAILED
    return Step(changes, TrainStatus.FAILED, {})


def on_cancel(statuses: dict[int, HopStatus]) -> Step:
    """The researcher withdraws the train: nothing not yet running will run. A hop already
    running may finish, but its output goes nowhere."""
    changes = {
        i: HopStatus.FAILED
        for i, status in statuses.items()
        if status in (HopStatus.WAITING, HopStatus.QUEUED)
    }
    return Step(changes, TrainStatus.CANCELLED, {})


def on_lease_expired(
    statuses: dict[int, HopStatus],
    index: int,
    attempts: int,
    max_attempts: int,
    train_status: TrainStatus,
) -> Step:
    """A running hop's station stopped renewing its lease: offer the hop again, or give up.

    ``attempts`` counts the claims so far. A cancelled train's hop just ends."""
    if statuses[index] != HopStatus.RUNNING:
        raise IllegalTransition(
            f"only a running hop holds a lease; hop {index} is {statuses[index]}"
        )
    if train_status in FINISHED:
        return Step({index: HopStatus.FAILED}, train_status, {})
    if attempts < max_attempts:
        return Step({index: HopStatus.QUEUED}, TrainStatus.RUNNING, {})
    return on_hop_failed(statuses, index)


def lease_expired_reason(index: int, station: str, attempts: int) -> str:
    return (
        f"hop {index} at {station}: the station stopped renewing its lease {attempts} times "
        "(it crashed, lost its connection or the hop ran without heartbeats); ask the "
        "station admin to check the station, then submit the train again"
    )
