"""The routing state machine, as plain functions: no HTTP, no database.

A train's hops are numbered 0..N-1 (rounds x stops). Hop states move only along::

    waiting -> queued -> running -> done
                 |          |
                 +----------+----> failed

Hop 0 is queued at submission (or once the initial state is uploaded); finishing hop i
queues hop i+1 with hop i's output as its input; finishing the last hop finishes the
train. A failed hop fails the train with the station's reason.
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
    HopStatus.RUNNING: {HopStatus.DONE, HopStatus.FAILED},
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
