"""A parallel route unfolds into a DAG of hops, and central's routing follows that DAG:
fan out to every stop, join at the aggregator, round after round."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from central import routing
from central.records import plan_of
from central.routing import HopStatus as H
from central.routing import TrainStatus as T
from tests.factories import make_manifest, make_parallel_manifest
from trains.keys import Identity
from trains.manifest import Route, Stop


@pytest.fixture(scope="module")
def people():
    return Identity.generate("alice"), [Identity.generate(n) for n in ("a", "b", "c", "x")]


def test_parallel_hops_fan_out_and_join_at_the_aggregator(people):
    alice, (a, b, c, x) = people
    manifest = make_parallel_manifest(alice, [a, b, c], x, rounds=2)
    plan = [(h.index, h.round, h.kind, h.stop.name, h.inputs, h.position) for h in manifest.hops()]
    assert plan == [
        (0, 0, "local", "a", [], 0),
        (1, 0, "local", "b", [], 1),
        (2, 0, "local", "c", [], 2),
        (3, 0, "aggregate", "x", [0, 1, 2], 3),
        (4, 1, "local", "a", [3], 0),
        (5, 1, "local", "b", [3], 1),
        (6, 1, "local", "c", [3], 2),
        (7, 1, "aggregate", "x", [4, 5, 6], 3),
    ]
    assert [h.is_last for h in manifest.hops()] == [False] * 7 + [True]
    # each partial goes to the aggregator only; the aggregate to every stop of the next
    # round, sealed once to all of them; the last aggregate to the researcher
    assert [r.name for r in manifest.recipients_after(1)] == ["x"]
    assert [r.name for r in manifest.recipients_after(3)] == ["a", "b", "c"]
    assert [h.index for h in manifest.consumers(3)] == [4, 5, 6]
    assert manifest.recipients_after(7) == [alice.public]
    assert manifest.consumers(7) == []
    assert [r.name for r in manifest.initial_recipients()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="recipients_after"):
        manifest.recipient_after(3)  # three readers: the single form refuses
    assert manifest.recipient_after(7) == alice.public


def test_the_aggregator_may_be_one_of_the_stops_and_is_then_named_once(people):
    alice, (a, b, c, _) = people
    manifest = make_parallel_manifest(alice, [a, b, c], a)
    assert [r.name for r in manifest.recipients_after(0)] == ["a"]
    assert manifest.hop(3).stop.name == "a" and manifest.hop(3).kind == "aggregate"


def test_sequential_plan_is_the_chain_it_always_was(people):
    alice, (a, b, c, _) = people
    manifest = make_manifest(alice, [a, b, c], rounds=2)
    assert [h.inputs for h in manifest.hops()] == [[], [0], [1], [2], [3], [4]]
    assert {h.kind for h in manifest.hops()} == {"local"}
    assert [h.position for h in manifest.hops()] == [0, 1, 2, 0, 1, 2]
    assert [r.name for r in manifest.recipients_after(1)] == ["c"]


def test_a_parallel_route_needs_exactly_its_aggregator(people):
    _, (a, b, _, x) = people
    stops = [Stop(station=a.public), Stop(station=b.public)]
    with pytest.raises(ValidationError, match="needs an aggregator"):
        Route(mode="parallel", stops=stops)
    with pytest.raises(ValidationError, match="parallel route only"):
        Route(stops=stops, aggregator=Stop(station=x.public))


def _plan(people, rounds=2):
    alice, (a, b, c, x) = people
    return plan_of(make_parallel_manifest(alice, [a, b, c], x, rounds=rounds))


def _finish(statuses, plan, outputs, index):
    statuses[index] = H.RUNNING
    step = routing.on_hop_done(statuses, index, f"sha256:{index}", plan, outputs)
    statuses.update(step.hop_status)
    outputs[index] = f"sha256:{index}"
    return step


def test_fan_out_queues_every_local_hop_at_once(people):
    plan = _plan(people)
    step = routing.on_submit(plan, has_initial_state=False)
    assert [i for i, s in step.hop_status.items() if s == H.QUEUED] == [0, 1, 2]
    assert step.input_for == {0: [], 1: [], 2: []}
    waiting = routing.on_submit(plan, has_initial_state=True)
    assert set(waiting.hop_status.values()) == {H.WAITING}
    arrived = routing.on_initial_state(waiting.hop_status, "sha256:init", plan)
    assert arrived.hop_status == {0: H.QUEUED, 1: H.QUEUED, 2: H.QUEUED}
    assert arrived.input_for == {i: ["sha256:init"] for i in (0, 1, 2)}


def test_the_aggregate_waits_for_every_partial_then_the_next_round_for_it(people):
    plan = _plan(people)
    statuses = routing.on_submit(plan, has_initial_state=False).hop_status
    outputs: dict[int, str] = {}
    # partials finish in any order; the aggregate is queued only with the last of them
    assert _finish(statuses, plan, outputs, 2).hop_status == {2: H.DONE}
    assert _finish(statuses, plan, outputs, 0).hop_status == {0: H.DONE}
    joined = _finish(statuses, plan, outputs, 1)
    assert joined.hop_status == {1: H.DONE, 3: H.QUEUED}
    assert joined.input_for == {3: ["sha256:0", "sha256:1", "sha256:2"]}  # in stop order
    assert statuses[4] == H.WAITING  # the next round waits for the aggregate
    fanned = _finish(statuses, plan, outputs, 3)
    assert fanned.hop_status == {3: H.DONE, 4: H.QUEUED, 5: H.QUEUED, 6: H.QUEUED}
    assert fanned.input_for == {i: ["sha256:3"] for i in (4, 5, 6)}
    for index in (4, 5, 6):
        assert _finish(statuses, plan, outputs, index).train_status == T.RUNNING
    last = _finish(statuses, plan, outputs, 7)
    assert last.train_status == T.DONE and last.input_for == {}


def test_a_failure_anywhere_fails_the_train_and_withdraws_what_is_queued(people):
    plan = _plan(people)
    statuses = routing.on_submit(plan, has_initial_state=False).hop_status
    statuses[0] = statuses[1] = H.RUNNING
    step = routing.on_hop_failed(statuses, 1)
    assert step.train_status == T.FAILED
    # the queued partial and every later hop are failed; the one running may finish, but
    # central refuses its result (the train is finished)
    assert step.hop_status == {1: H.FAILED, 2: H.FAILED, **{i: H.FAILED for i in range(3, 8)}}
    # the aggregate of a later round failing fails the train too
    statuses = {i: H.DONE for i in range(7)} | {7: H.RUNNING}
    assert routing.on_hop_failed(statuses, 7).train_status == T.FAILED


def test_expiry_withdraws_everything_not_yet_running(people):
    plan = _plan(people, rounds=1)
    statuses = routing.on_submit(plan, has_initial_state=False).hop_status
    statuses[0] = H.RUNNING
    step = routing.on_expired(statuses)
    assert step.train_status == T.FAILED
    assert step.hop_status == {1: H.FAILED, 2: H.FAILED, 3: H.FAILED}
    assert routing.expired_reason("2026-01-01T00:00:00+00:00").startswith("expired")
