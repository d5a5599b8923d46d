"""The routing state machine on its own: no HTTP, no database."""

import pytest

from central import routing
from central.routing import HopStatus as H
from central.routing import TrainStatus as T


def drive(hops: int) -> list[routing.Step]:
    statuses = routing.on_submit(hops, has_initial_state=False).hop_status
    steps = []
    for index in range(hops):
        statuses[index] = H.RUNNING  # claimed by its station
        step = routing.on_hop_done(statuses, index, f"sha256:{index}")
        statuses.update(step.hop_status)
        steps.append(step)
    return steps


def test_submit_queues_only_the_first_hop():
    step = routing.on_submit(4, has_initial_state=False)
    assert step.hop_status == {0: H.QUEUED, 1: H.WAITING, 2: H.WAITING, 3: H.WAITING}
    assert step.train_status == T.RUNNING
    waiting = routing.on_submit(4, has_initial_state=True)
    assert set(waiting.hop_status.values()) == {H.WAITING}
    assert waiting.train_status == T.WAITING_FOR_STATE


def test_each_output_becomes_the_next_input_and_the_last_finishes_the_train():
    steps = drive(3)
    assert steps[0].input_for == {1: "sha256:0"}
    assert steps[1].input_for == {2: "sha256:1"}
    assert [s.train_status for s in steps] == [T.RUNNING, T.RUNNING, T.DONE]


def test_a_hop_cannot_finish_twice_or_before_it_runs():
    statuses = routing.on_submit(2, has_initial_state=False).hop_status
    with pytest.raises(routing.IllegalTransition):
        routing.on_hop_done(statuses, 0, "sha256:x")  # queued, never claimed
    statuses[0] = H.DONE
    with pytest.raises(routing.IllegalTransition):
        routing.on_hop_done(statuses, 0, "sha256:x")


def test_failure_fails_the_train_and_every_hop_still_to_come():
    statuses = routing.on_submit(3, has_initial_state=False).hop_status
    statuses[0] = H.RUNNING
    step = routing.on_hop_failed(statuses, 0)
    assert step.train_status == T.FAILED
    assert step.hop_status == {0: H.FAILED, 1: H.FAILED, 2: H.FAILED}
    with pytest.raises(routing.IllegalTransition):
        routing.on_hop_failed({0: H.DONE}, 0)


@pytest.mark.parametrize("start", list(H))
def test_only_legal_transitions(start):
    for target in H:
        if target in routing.LEGAL[start]:
            routing.check_transition(start, target)
        else:
            with pytest.raises(routing.IllegalTransition):
                routing.check_transition(start, target)
