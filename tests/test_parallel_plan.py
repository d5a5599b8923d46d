"""A parallel route unfolds into a DAG of hops, and central's routing follows that DAG:
fan out to every stop, join at the aggregator, round after round. A route that would expose
more than each partial to a separate aggregator is refused unless it says so, and the
stations see that before they approve."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from central import routing
from central.client import CentralClient
from central.records import plan_of
from central.routing import HopStatus as H
from central.routing import TrainStatus as T
from station.config import Policy, StationConfig, StationInfo
from station.queue import HopRecord, HopState
from station.show import describe
from station.verify import verify_offer
from tests.factories import make_manifest, make_offer, make_parallel_manifest, sign_receipt
from train_builder.cli import build_parser
from train_builder.researcher import Researcher
from trains.errors import ManifestInvalid, PayloadInvalid, RouteMismatch
from trains.keys import Identity, PublicIdentity
from trains.manifest import MANIFEST_TYPE, Image, Manifest, Route, Stop
from trains.receipt import verify_chain
from trains.sealing import digest_bytes, open_sealed, output_context, seal
from trains.signing import sign, unverified_payload


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


def test_the_aggregator_may_be_one_of_the_stops_only_where_the_route_allows_it(people):
    alice, (a, b, c, _) = people
    with pytest.raises(ValidationError, match="aggregator a is also a data stop") as refused:
        make_parallel_manifest(alice, [a, b, c], a)
    # the error says what to do: a data-less aggregator, or the explicit allowance
    assert "name a station that holds no data" in str(refused.value)
    assert "--allow-exposed-partials aggregator_at_stop" in str(refused.value)
    route = Route(
        mode="parallel",
        stops=[Stop(station=s.public) for s in (a, b, c)],
        aggregator=Stop(station=a.public),
        allow_exposed_partials=["aggregator_at_stop"],
    )
    manifest = make_manifest(alice, [a, b, c], route=route)
    assert [r.name for r in manifest.recipients_after(0)] == ["a"]
    assert manifest.hop(3).stop.name == "a" and manifest.hop(3).kind == "aggregate"


def test_an_aggregator_with_a_stops_keys_under_another_name_is_the_same_station(people):
    _, (a, b, _, _) = people
    twin = PublicIdentity(
        name="not-a", signing_key=a.public.signing_key, sealing_key=a.public.sealing_key
    )
    stops = [Stop(station=a.public), Stop(station=b.public)]
    with pytest.raises(ValidationError, match="also a data stop"):
        Route(mode="parallel", stops=stops, aggregator=Stop(station=twin))


def test_a_parallel_round_with_one_data_stop_only_where_the_route_allows_it(people):
    _, (a, _, _, x) = people
    one = [Stop(station=a.public)]
    with pytest.raises(ValidationError, match="at least two data stops") as refused:
        Route(mode="parallel", stops=one, aggregator=Stop(station=x.public))
    assert "--allow-exposed-partials single_stop" in str(refused.value)
    route = Route(
        mode="parallel",
        stops=one,
        aggregator=Stop(station=x.public),
        allow_exposed_partials=["single_stop"],
    )
    assert route.exposed_partials() == ["single_stop"]


def test_an_allowance_the_route_does_not_need_is_refused(people):
    _, (a, b, _, x) = people
    stops = [Stop(station=a.public), Stop(station=b.public)]
    with pytest.raises(ValidationError, match="'single_stop', which this route does not do"):
        Route(
            mode="parallel",
            stops=stops,
            aggregator=Stop(station=x.public),
            allow_exposed_partials=["single_stop"],
        )
    with pytest.raises(ValidationError, match="which this route does not do"):
        Route(stops=stops, allow_exposed_partials=["aggregator_at_stop"])


def test_a_signed_manifest_with_an_exposing_route_is_refused_where_it_is_read(people):
    """Central (at submission) and every station (at the offer) parse the signed manifest:
    a route built without the validator is refused there."""
    alice, (a, b, _, _) = people
    stops = [Stop(station=a.public), Stop(station=b.public)]
    route = Route.model_construct(
        mode="parallel",
        rounds=1,
        stops=stops,
        aggregator=stops[0],
        on_refusal="fail",
        allow_exposed_partials=[],
    )
    manifest = make_manifest(alice, [a, b]).model_copy(update={"route": route})
    envelope = sign(manifest, MANIFEST_TYPE, alice.signing)
    with pytest.raises(PayloadInvalid, match="also a data stop"):
        unverified_payload(envelope, Manifest)  # what central does at submission
    # a station offered it refuses the hop with the reason (its daemon goes on)
    config = StationConfig(
        station=StationInfo(name="b", central_url="http://127.0.0.1:1"),
        policy=Policy(trusted_signers=[alice.public.signing_fingerprint]),
    )
    offer = make_offer(manifest.train_id, 1, envelope)
    with pytest.raises(ManifestInvalid, match=r"the manifest is not valid: .*also a data stop"):
        verify_offer(offer, config, b.public)


def test_a_station_sees_the_allowance_before_approving(people, tmp_path):
    alice, (a, b, _, _) = people
    route = Route(
        mode="parallel",
        stops=[Stop(station=a.public), Stop(station=b.public)],
        aggregator=Stop(station=a.public),
        allow_exposed_partials=["aggregator_at_stop"],
    )
    manifest = make_manifest(alice, [a, b], route=route)
    offer = make_offer(manifest.train_id, 1, sign(manifest, MANIFEST_TYPE, alice.signing))
    record = HopRecord.from_offer(offer, HopState.PENDING)
    config = StationConfig(station=StationInfo(name="b", central_url="http://127.0.0.1:1"))
    shown = describe(record, config, with_files=False)
    assert (
        "ALLOWED by route.allow_exposed_partials: the aggregator is also a data stop of its "
        "round: it reads every other stop's raw partial state" in shown
    )
    plain = make_parallel_manifest(alice, [a, b], Identity.generate("agg"))
    plain_offer = offer.model_copy(
        update={"train_id": plain.train_id, "manifest": sign(plain, MANIFEST_TYPE, alice.signing)}
    )
    record = HopRecord.from_offer(plain_offer, HopState.PENDING)
    assert "ALLOWED" not in describe(record, config, with_files=False)


def test_pht_train_submit_passes_the_allowance_into_the_manifest(people):
    alice, (a, b, _, _) = people
    allow = ["--allow-exposed-partials", "aggregator_at_stop"]
    args = build_parser().parse_args(["submit", "t", "--route", "a,b", "--aggregator", "a", *allow])
    assert args.allow_exposed_partials == ["aggregator_at_stop"]
    researcher = Researcher(alice, CentralClient("http://127.0.0.1:1", "unused"))
    image = Image(repository="127.0.0.1:5000/pht/cohort", digest="sha256:" + "ab" * 32)
    stops = [Stop(station=a.public), Stop(station=b.public)]
    folder = Path(__file__).parent / "parallel_train"
    with pytest.raises(RouteMismatch, match="route is refused: the aggregator a is also"):
        researcher.make_manifest(folder, image, stops, aggregator=stops[0])
    manifest = researcher.make_manifest(
        folder, image, stops, aggregator=stops[0], allow_exposed_partials=["aggregator_at_stop"]
    )
    assert manifest.route.allow_exposed_partials == ["aggregator_at_stop"]
    researcher.close()


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


def test_a_dishonest_aggregator_that_drops_a_partial_still_signs_a_chain_that_verifies(people):
    """What the receipts do not prove (docs/threat-model-aggregation.md): an aggregator
    station opens every partial and can compute anything from them; its receipt names the
    right inputs and its real output, so the chain verifies and the researcher opens a
    sum that leaves out site b. Only the aggregator's honesty prevents this today."""
    alice, (a, b, _, x) = people
    manifest = make_parallel_manifest(alice, [a, b], x)
    digest = sign(manifest, MANIFEST_TYPE, alice.signing).digest
    partials = [
        seal(str(n).encode(), manifest.recipients_after(i), output_context(manifest.train_id, i))
        for i, n in ((0, 40), (1, 2))
    ]
    receipts = [
        sign_receipt(manifest, digest, i, site, [], [], digest_bytes(partials[i]))
        for i, site in ((0, a), (1, b))
    ]
    opened = [
        int(open_sealed(p, x.sealing, output_context(manifest.train_id, i)))
        for i, p in enumerate(partials)
    ]
    dropped_b = seal(
        str(opened[0] * 2).encode(),  # a's partial twice, b's left out: not 40 + 2
        manifest.recipients_after(2),
        output_context(manifest.train_id, 2),
    )
    receipts.append(
        sign_receipt(
            manifest,
            digest,
            2,
            x,
            [digest_bytes(p) for p in partials],  # names exactly the partials it was handed
            [r.digest for r in receipts],
            digest_bytes(dropped_b),
        )
    )
    chain = verify_chain(manifest, digest, None, receipts, digest_bytes(dropped_b))
    assert [h.kind for h in chain] == ["local", "local", "aggregate"]
    assert open_sealed(dropped_b, alice.sealing, output_context(manifest.train_id, 2)) == b"80"
