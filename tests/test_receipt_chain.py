"""The researcher's chain check, attacked one way at a time."""

from datetime import UTC, datetime

import pytest

from tests.factories import make_manifest
from trains.errors import ReceiptChainBroken
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt, verify_chain
from trains.signing import sign


@pytest.fixture
def chain():
    alice = Identity.generate("alice")
    stations = [Identity.generate(n) for n in ("a", "b", "c")]
    manifest = make_manifest(alice, stations)
    manifest_digest = sign(manifest, MANIFEST_TYPE, alice.signing).digest
    receipts, previous, prev_out = [], None, None
    for hop in manifest.hops():
        signer = stations[hop.index]
        now = datetime.now(UTC)
        out = f"sha256:{hop.index:064d}"
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
                    kind="local",
                    input_state_digests=[] if prev_out is None else [prev_out],
                    output_state_digest=out,
                    output_sealed_to=[manifest.recipient_after(hop.index).sealing_fingerprint],
                    previous_receipt_digests=[] if previous is None else [previous],
                    started_at=now,
                    finished_at=now,
                    container_seconds=1.0,
                )
            ),
            RECEIPT_TYPE,
            signer.signing,
        )
        receipts.append(envelope)
        previous, prev_out = envelope.digest, out
    return manifest, manifest_digest, receipts, prev_out, stations


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
    with pytest.raises(ReceiptChainBroken, match="swapped"):
        verify_chain(manifest, digest, None, receipts, "sha256:" + "f" * 64)


def test_receipts_of_another_manifest(chain):
    manifest, _, receipts, final, _ = chain
    with pytest.raises(ReceiptChainBroken, match="another manifest"):
        verify_chain(manifest, "sha256:" + "0" * 64, None, receipts, final)
