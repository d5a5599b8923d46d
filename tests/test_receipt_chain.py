"""The researcher's chain check, attacked one way at a time."""

from datetime import UTC, datetime

import pytest

from tests.factories import make_manifest
from trains.errors import ReceiptChainBroken
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE, Route, Stop
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt, verify_chain
from trains.signing import sign


def build_chain(
    on_refusal: str = "fail",
    skipped: frozenset[int] = frozenset(),
    altered: frozenset[int] = frozenset(),
):
    """A three-stop route's receipts; the hops in ``skipped`` signed as ``skipped``, those
    in ``altered`` committing to a state other than the one they read."""
    alice = Identity.generate("alice")
    stations = [Identity.generate(n) for n in ("a", "b", "c")]
    route = Route(stops=[Stop(station=s.public) for s in stations], on_refusal=on_refusal)
    manifest = make_manifest(alice, stations, route=route)
    manifest_digest = sign(manifest, MANIFEST_TYPE, alice.signing).digest
    receipts, previous, prev_out, commitment = [], None, None, None
    for hop in manifest.hops():
        signer = stations[hop.index]
        now = datetime.now(UTC)
        out = f"sha256:{hop.index:064d}"
        skip = hop.index in skipped
        mine = _commitment(hop.index, skip, commitment, altered)
        envelope = sign(
            HopReceipt.for_hop(
                HopPredicate(
                    train_id=manifest.train_id,
                    hop=hop.index,
                    round=hop.round,
                    station=signer.name,
                    station_key=signer.public.signing_fingerprint,
                    manifest_digest=manifest_digest,
                    image_digest=manifest.image.digest,
                    kind="skipped" if skip else "local",
                    input_state_digests=[] if prev_out is None else [prev_out],
                    output_state_digest=out,
                    output_commitment=mine,
                    output_sealed_to=[manifest.recipient_after(hop.index).sealing_fingerprint],
                    previous_receipt_digests=[] if previous is None else [previous],
                    started_at=now,
                    finished_at=now,
                    container_seconds=0.0 if skip else 1.0,
                    reason="PolicyRejected: not trusted here" if skip else None,
                )
            ),
            RECEIPT_TYPE,
            signer.signing,
        )
        receipts.append(envelope)
        previous, prev_out, commitment = envelope.digest, out, mine
    return manifest, manifest_digest, receipts, prev_out, stations


def _commitment(index: int, skip: bool, handed: str | None, altered: frozenset[int]) -> str:
    """A skip passes on the state it read (the same commitment), unless it ``altered`` it."""
    if skip and handed is not None and index not in altered:
        return handed
    return f"sha256:{index + 1:064x}" if index not in altered else "sha256:" + "e" * 64


@pytest.fixture
def chain():
    return build_chain()


def test_intact_chain_verifies(chain):
    manifest, digest, receipts, final, _ = chain
    hops = verify_chain(manifest, digest, None, receipts, final)
    assert [h.station for h in hops] == ["a", "b", "c"]


def test_skipped_hop(chain):
    manifest, digest, receipts, final, _ = chain
    with pytest.raises(ReceiptChainBroken, match="skipped or repeated"):
        verify_chain(manifest, digest, None, [receipts[0], receipts[2]], final)


def test_reordered_hops(chain):
    manifest, digest, receipts, final, _ = chain
    with pytest.raises(ReceiptChainBroken, match="hop 1"):
        verify_chain(manifest, digest, None, [receipts[0], receipts[2], receipts[1]], final)


def test_receipt_signed_by_wrong_station(chain):
    manifest, digest, receipts, final, stations = chain
    forged = sign(
        HopReceipt.model_validate_json(receipts[1].payload_bytes),
        RECEIPT_TYPE,
        stations[0].signing,
    )
    with pytest.raises(ReceiptChainBroken, match=r"receipt of hop 1 \(b\)"):
        verify_chain(manifest, digest, None, [receipts[0], forged, receipts[2]], final)


def test_swapped_final_state(chain):
    manifest, digest, receipts, _, _ = chain
    with pytest.raises(
        ReceiptChainBroken, match="the bytes differ from what the last station signed"
    ):
        verify_chain(manifest, digest, None, receipts, "sha256:" + "f" * 64)


def test_receipts_of_another_manifest(chain):
    manifest, _, receipts, final, _ = chain
    with pytest.raises(ReceiptChainBroken, match="another manifest"):
        verify_chain(manifest, "sha256:" + "0" * 64, None, receipts, final)


def test_a_skipped_stop_verifies_where_the_route_lets_refusing_stops_skip():
    manifest, digest, receipts, final, _ = build_chain("skip", frozenset({1}))
    hops = verify_chain(manifest, digest, None, receipts, final)
    assert [h.kind for h in hops] == ["local", "skipped", "local"]
    assert hops[1].reason == "PolicyRejected: not trusted here"


def test_a_skipped_receipt_on_a_route_that_fails_refusals_is_refused():
    manifest, digest, receipts, final, _ = build_chain("fail", frozenset({1}))
    with pytest.raises(ReceiptChainBroken, match=r"hop 1 \(b\).*lets no stop skip"):
        verify_chain(manifest, digest, None, receipts, final)


def test_a_parallel_route_cannot_skip_a_stop():
    stops = [Stop(station=Identity.generate(n).public) for n in ("a", "b")]
    with pytest.raises(ValueError, match="sequential routes only"):
        Route(mode="parallel", stops=stops, aggregator=stops[0], on_refusal="skip")


def test_a_skip_that_changed_the_state_it_passed_on_is_refused():
    """Issue 17, reproduction 4: a station signs ``skipped`` but passes on another state.
    The sealed digests all link; the plaintext commitment does not."""
    manifest, digest, receipts, final, _ = build_chain("skip", frozenset({1}), frozenset({1}))
    with pytest.raises(
        ReceiptChainBroken, match=r"the state hop 1 \(b\) passed on is not the one hop 0 \(a\)"
    ):
        verify_chain(manifest, digest, None, receipts, final)


def test_a_skip_at_the_last_hop_is_refused():
    """The last hop runs finalize and disclosure control: a skip there would hand the
    researcher an unfinished state (and a route where every stop skips, no result)."""
    manifest, digest, receipts, final, _ = build_chain("skip", frozenset({1, 2}))
    with pytest.raises(ReceiptChainBroken, match=r"hop 2 \(c\).*is the last hop"):
        verify_chain(manifest, digest, None, receipts, final)
    manifest, digest, receipts, final, _ = build_chain("skip", frozenset({0, 1, 2}))
    with pytest.raises(ReceiptChainBroken, match=r"hop 2 \(c\).*must run"):
        verify_chain(manifest, digest, None, receipts, final)
