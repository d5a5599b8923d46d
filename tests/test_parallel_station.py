"""A station's checks of a parallel route's hops, each tried as an attack: the kind of hop
the manifest pins, and every partial state linked by the receipt of the stop that wrote it."""

from __future__ import annotations

import pytest

from central.messages import HopInput, HopOffer
from station.config import CsvSource, Policy, StationConfig, StationInfo
from station.verify import verify_offer
from tests.factories import make_parallel_manifest, sign_receipt
from trains.errors import RouteMismatch, SignatureInvalid
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE
from trains.signing import sign


@pytest.fixture(scope="module")
def scene():
    alice = Identity.generate("alice")
    a, b, x = (Identity.generate(n) for n in ("par-a", "par-b", "par-agg"))
    manifest = make_parallel_manifest(alice, [a, b], x, rounds=2)
    envelope = sign(manifest, MANIFEST_TYPE, alice.signing)
    outputs = [f"sha256:{i:064d}" for i in range(6)]
    receipts = [
        sign_receipt(manifest, envelope.digest, 0, a, [], [], outputs[0]),
        sign_receipt(manifest, envelope.digest, 1, b, [], [], outputs[1]),
    ]
    # the aggregator holds no dataset at all: an aggregate hop is handed none
    config = StationConfig(
        station=StationInfo(name="par-agg", central_url="http://127.0.0.1:1"),
        datasets={},
        policy=Policy(trusted_signers=[alice.public.signing_fingerprint]),
    )
    return manifest, envelope, outputs, receipts, config, (a, b, x)


def aggregate_offer(scene, **changes) -> HopOffer:
    manifest, envelope, outputs, receipts, _, _ = scene
    fields = {
        "train_id": manifest.train_id,
        "hop": 2,
        "manifest": envelope,
        "kind": "aggregate",
        "inputs": [HopInput(hop=0, digest=outputs[0]), HopInput(hop=1, digest=outputs[1])],
        "previous_receipts": list(receipts),
        "lease_s": 60,
    }
    fields.update(changes)
    return HopOffer.model_validate(fields)


def test_the_aggregator_accepts_its_joined_partials_without_holding_data(scene):
    *_, config, (_, _, x) = scene
    verified = verify_offer(aggregate_offer(scene), config, x.public)
    assert verified.hop.kind == "aggregate" and verified.hop.inputs == [0, 1]
    assert verified.previous_receipt_digests == [r.digest for r in scene[3]]


def test_a_hop_offered_as_another_kind_than_the_manifest_pins_is_refused(scene):
    *_, config, (_, _, x) = scene
    with pytest.raises(
        RouteMismatch, match=r"offered as kind 'local', but the manifest pins kind 'aggregate'"
    ):
        verify_offer(aggregate_offer(scene, kind="local"), config, x.public)


def test_swapped_or_missing_partials_are_refused(scene):
    _, _, outputs, receipts, config, (_, _, x) = scene
    swapped = aggregate_offer(
        scene,
        inputs=[HopInput(hop=1, digest=outputs[1]), HopInput(hop=0, digest=outputs[0])],
        previous_receipts=(receipts[1], receipts[0]),
    )
    with pytest.raises(RouteMismatch, match=r"reads the outputs of hops \[0, 1\]"):
        verify_offer(swapped, config, x.public)
    missing = aggregate_offer(
        scene, inputs=[HopInput(hop=0, digest=outputs[0])], previous_receipts=[receipts[0]]
    )
    with pytest.raises(RouteMismatch, match=r"handed the outputs of \[0\]"):
        verify_offer(missing, config, x.public)
    # a partial whose bytes are not the ones its stop signed for
    other = aggregate_offer(
        scene, inputs=[HopInput(hop=0, digest=outputs[0]), HopInput(hop=1, digest=outputs[5])]
    )
    with pytest.raises(RouteMismatch, match=r"hop 1 \(par-b\) signs an output other"):
        verify_offer(other, config, x.public)


def test_a_partial_receipt_forged_by_another_stop_is_refused(scene):
    manifest, envelope, outputs, receipts, config, (a, _, x) = scene
    forged = sign_receipt(manifest, envelope.digest, 1, a, [], [], outputs[1])
    with pytest.raises(SignatureInvalid):
        verify_offer(
            aggregate_offer(scene, previous_receipts=[receipts[0], forged]), config, x.public
        )


def test_the_next_round_reads_the_aggregate_signed_by_the_aggregator(scene, tmp_path):
    manifest, envelope, outputs, receipts, _, (a, _, x) = scene
    csv = tmp_path / "d.csv"
    csv.write_text("x\n1\n")
    config = StationConfig(
        station=StationInfo(name="par-a", central_url="http://127.0.0.1:1"),
        datasets={"cohort": CsvSource(path=csv)},
        policy=Policy(trusted_signers=[manifest.researcher.signing_fingerprint]),
    )

    def offer(previous):
        return HopOffer(
            train_id=manifest.train_id,
            hop=3,
            manifest=envelope,
            kind="local",
            inputs=[HopInput(hop=2, digest=outputs[2])],
            previous_receipts=[previous],
            lease_s=60,
        )

    linked = [r.digest for r in receipts]
    aggregate = sign_receipt(manifest, envelope.digest, 2, x, outputs[:2], linked, outputs[2])
    assert verify_offer(offer(aggregate), config, a.public).hop.inputs == [2]
    # a stop that passes off a receipt of its own as the aggregate is refused
    fake = sign_receipt(manifest, envelope.digest, 2, a, outputs[:2], linked, outputs[2])
    with pytest.raises(SignatureInvalid, match=r"hop 2 \(par-agg\)"):
        verify_offer(offer(fake), config, a.public)
