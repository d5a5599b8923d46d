"""The routing state machine, as plain functions: no HTTP, no database.

A train's hops are numbered 0..N-1 and form a small DAG, the *plan*: each hop names the
hops whose outputs it reads (``trains.manifest.plan_hops``; a sequential route is a chain,
a parallel round fans out to every stop and joins at its aggregator). Hop states move only
along::

    waiting -> queued -> running -> done (or skipped)
                 |   ^      |
                 |   +------+  (lease expired: offered again, up to a limit)
                 +----------+----> failed

The hops that read nothing are queued at submission (or once the initial state is
uploaded, which they all read); a hop is queued once every hop it reads is done, with
their outputs as its inputs (so a fan-out queues several at once, and an aggregate waits
for all of its round); finishing every hop finishes the train. A failed hop fails the
train with the station's reason. A *skipped* hop (its station refused it where the route
allows skipping, and passed its input on unchanged) counts as done for what follows. A
claimed hop holds a lease that its station renews; a lease that runs out puts the hop back
in the queue, and after ``max_attempts`` claims the train fails with a reason that says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

Plan = Mapping[int, Sequence[int]]  # hop index -> the hops whose outputs it reads, in order


class HopStatus(StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_NEEDED = "not_needed"  # a converged train ended the route before this hop


FINISHED_HOP = {HopStatus.DONE, HopStatus.SKIPPED}  # its output is there for the next hops


class TrainStatus(StrEnum):
    WAITING_FOR_STATE = "waiting_for_state"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = {TrainStatus.DONE, TrainStatus.FAILED, TrainStatus.CANCELLED}

LEGAL = {
    HopStatus.WAITING: {HopStatus.QUEUED, HopStatus.FAILED, HopStatus.NOT_NEEDED},
    HopStatus.QUEUED: {HopStatus.RUNNING, HopStatus.FAILED},
    HopStatus.RUNNING: {HopStatus.DONE, HopStatus.SKIPPED, HopStatus.FAILED, HopStatus.QUEUED},
    HopStatus.DONE: set(),
    HopStatus.SKIPPED: set(),
    HopStatus.FAILED: set(),
    HopStatus.NOT_NEEDED: set(),
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
    input_for: dict[int, list[str]]  # hop index -> digests of the states it will read


def sequential_plan(hop_count: int) -> dict[int, list[int]]:
    """The chain 0 -> 1 -> ... -> N-1 of a sequential route."""
    return {i: [] if i == 0 else [i - 1] for i in range(hop_count)}


def _plan(plan: Plan | int) -> Plan:
    return sequential_plan(plan) if isinstance(plan, int) else plan


def on_submit(plan: Plan | int, has_initial_state: bool) -> Step:
    """``plan`` is the train's plan (a hop count means a sequential route)."""
    plan = _plan(plan)
    statuses = {i: HopStatus.WAITING for i in plan}
    if has_initial_state:
        return Step(statuses, TrainStatus.WAITING_FOR_STATE, {})
    first = [i for i, inputs in plan.items() if not inputs]
    statuses.update({i: HopStatus.QUEUED for i in first})
    return Step(statuses, TrainStatus.RUNNING, {i: [] for i in first})


def on_initial_state(statuses: dict[int, HopStatus], digest: str, plan: Plan | None = None) -> Step:
    """The initial state arrived: every hop that reads no other hop reads it."""
    plan = _plan(len(statuses)) if plan is None else plan
    first = [i for i, inputs in plan.items() if not inputs]
    for i in first:
        check_transition(statuses[i], HopStatus.QUEUED)
    return Step(
        {i: HopStatus.QUEUED for i in first}, TrainStatus.RUNNING, {i: [digest] for i in first}
    )


def on_hop_done(
    statuses: dict[int, HopStatus],
    index: int,
    output_digest: str,
    plan: Plan | None = None,
    outputs: Mapping[int, str] | None = None,
    skipped: bool = False,
    converged: bool = False,
) -> Step:
    """Hop ``index`` finished with ``output_digest`` (``skipped``: its station refused it
    and passed its input on unchanged): queue every hop whose inputs are now all there
    (``outputs`` holds the output digests of the hops finished before). ``converged``: the
    train ended the route at this hop (its receipt says so), no later hop is needed."""
    plan = _plan(len(statuses)) if plan is None else plan
    final = HopStatus.SKIPPED if skipped else HopStatus.DONE
    check_transition(statuses[index], final)
    after = {**statuses, index: final}
    known = {**(outputs or {}), index: output_digest}
    changes = {index: final}
    input_for: dict[int, list[str]] = {}
    if converged:
        for hop, status in after.items():
            if status not in FINISHED_HOP:
                check_transition(status, HopStatus.NOT_NEEDED)
                changes[hop] = HopStatus.NOT_NEEDED
        return Step(changes, TrainStatus.DONE, input_for)
    for hop, inputs in plan.items():
        if index in inputs and all(after[j] in FINISHED_HOP for j in inputs):
            check_transition(after[hop], HopStatus.QUEUED)
            changes[hop] = HopStatus.QUEUED
            input_for[hop] = [known[j] for j in inputs]
    finished = all(status in FINISHED_HOP for status in after.values())
    return Step(changes, TrainStatus.DONE if finished else TrainStatus.RUNNING, input_for)


def on_late_hop_done(
    statuses: dict[int, HopStatus],
    index: int,
    output_digest: str,
    plan: Plan | None = None,
    outputs: Mapping[int, str] | None = None,
    skipped: bool = False,
    converged: bool = False,
) -> Step:
    """A station finished a hop whose lease ran out and that nobody has claimed since (e.g.
    a station that sends no heartbeats ran a long container): its signed result is as good
    as a fresh run's, so take it rather than run the hop again."""
    if statuses[index] != HopStatus.QUEUED:
        raise IllegalTransition(f"hop {index} is {statuses[index]}, not waiting for a re-run")
    return on_hop_done(
        {**statuses, index: HopStatus.RUNNING},
        index,
        output_digest,
        plan,
        outputs,
        skipped,
        converged,
    )


def on_hop_failed(statuses: dict[int, HopStatus], index: int) -> Step:
    check_transition(statuses[index], HopStatus.FAILED)
    changes = {index: HopStatus.FAILED}
    for i, status in statuses.items():
        if i != index and status in (HopStatus.WAITING, HopStatus.QUEUED):
            changes[i] = HopStatus.FAILED
    return Step(changes, TrainStatus.FAILED, {})


def on_expired(statuses: dict[int, HopStatus]) -> Step:
    """The manifest's expiry passed: no station may run it any more, so nothing still to
    run will run (a running hop's result is refused: its train is finished)."""
    changes = {
        i: HopStatus.FAILED
        for i, status in statuses.items()
        if status in (HopStatus.WAITING, HopStatus.QUEUED)
    }
    return Step(changes, TrainStatus.FAILED, {})


def expired_reason(expires_at: str) -> str:
    return (
        f"expired: the manifest expired at {expires_at} before the route finished; "
        "submit the train again with a later expiry (pht-train submit --days N)"
    )


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
