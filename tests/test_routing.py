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
    assert steps[0].input_for == {1: ["sha256:0"]}
    assert steps[1].input_for == {2: ["sha256:1"]}
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


def test_an_expired_lease_offers_the_hop_again_until_the_limit_then_fails_the_train():
    statuses = {0: H.DONE, 1: H.RUNNING, 2: H.WAITING}
    again = routing.on_lease_expired(
        statuses, 1, attempts=1, max_attempts=3, train_status=T.RUNNING
    )
    assert again.hop_status == {1: H.QUEUED}
    assert again.train_status == T.RUNNING
    assert again.input_for == {}  # the hop keeps the input it had
    final = routing.on_lease_expired(
        statuses, 1, attempts=3, max_attempts=3, train_status=T.RUNNING
    )
    assert final.train_status == T.FAILED
    assert final.hop_status == {1: H.FAILED, 2: H.FAILED}
    assert "lease" in routing.lease_expired_reason(1, "hospital-b", 3)


def test_a_cancelled_trains_expired_hop_just_ends_and_only_running_hops_expire():
    cancelled = routing.on_lease_expired(
        {0: H.RUNNING, 1: H.FAILED}, 0, attempts=1, max_attempts=3, train_status=T.CANCELLED
    )
    assert cancelled.hop_status == {0: H.FAILED}
    assert cancelled.train_status == T.CANCELLED
    for status in (H.WAITING, H.QUEUED, H.DONE, H.FAILED):
        with pytest.raises(routing.IllegalTransition):
            routing.on_lease_expired({0: status}, 0, 1, 3, T.RUNNING)


def test_a_late_result_counts_only_while_nobody_has_claimed_the_hop_again():
    step = routing.on_late_hop_done({0: H.QUEUED, 1: H.WAITING}, 0, "sha256:late")
    assert step.hop_status == {0: H.DONE, 1: H.QUEUED}
    assert step.input_for == {1: ["sha256:late"]}
    for status in (H.WAITING, H.DONE, H.FAILED):
        with pytest.raises(routing.IllegalTransition):
            routing.on_late_hop_done({0: status, 1: H.WAITING}, 0, "sha256:late")


def test_a_skipped_hop_hands_its_passed_on_state_to_the_next_and_counts_as_finished():
    statuses = {0: H.DONE, 1: H.RUNNING, 2: H.WAITING}
    step = routing.on_hop_done(statuses, 1, "sha256:resealed", skipped=True)
    assert step.hop_status == {1: H.SKIPPED, 2: H.QUEUED}
    assert step.input_for == {2: ["sha256:resealed"]}
    assert step.train_status == T.RUNNING
    # the last hop skipped: the train is done, with what the skipping station passed on
    last = routing.on_hop_done({0: H.DONE, 1: H.SKIPPED, 2: H.RUNNING}, 2, "x", skipped=True)
    assert last.hop_status == {2: H.SKIPPED}
    assert last.train_status == T.DONE
    # a skipped hop is finished: it can neither finish again nor fail
    with pytest.raises(routing.IllegalTransition):
        routing.on_hop_done({0: H.SKIPPED, 1: H.WAITING}, 0, "y")
    with pytest.raises(routing.IllegalTransition):
        routing.on_hop_failed({0: H.SKIPPED, 1: H.WAITING}, 0)


def test_an_aggregate_waits_for_every_partial_whether_run_or_skipped():
    plan = {0: [], 1: [], 2: [0, 1]}
    statuses = {0: H.RUNNING, 1: H.SKIPPED, 2: H.WAITING}
    step = routing.on_hop_done(statuses, 0, "sha256:a", plan, {1: "sha256:b"})
    assert step.hop_status == {0: H.DONE, 2: H.QUEUED}
    assert step.input_for == {2: ["sha256:a", "sha256:b"]}
