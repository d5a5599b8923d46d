"""Every station refusal before anything runs, each tried as an attack."""

from datetime import UTC, datetime, timedelta

import pytest

from central.client import HopOffer
from station.config import CsvSource, Policy, StationConfig, StationInfo
from station.verify import check_input_bytes, verify_offer
from tests.factories import make_manifest
from trains.errors import ManifestInvalid, PolicyRejected, RouteMismatch, SignatureInvalid
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE, Image, Resources
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt
from trains.signing import sign


@pytest.fixture
def parties(tmp_path):
    alice = Identity.generate("alice")
    a, b = Identity.generate("hospital-a"), Identity.generate("hospital-b")
    csv = tmp_path / "d.csv"
    csv.write_text("x\n1\n")

    def config_for(me, trusted=(alice,), **policy):
        return StationConfig(
            station=StationInfo(name=me.name, central_url="http://127.0.0.1:1"),
            datasets={"cohort": CsvSource(path=csv)},
            policy=Policy(
                trusted_signers=[t.public.signing_fingerprint for t in trusted], **policy
            ),
        )

    return alice, a, b, config_for


def offer(manifest, signer, hop=0, input_digest=None, previous=None):
    return HopOffer(
        train_id=manifest.train_id,
        hop=hop,
        manifest=sign(manifest, MANIFEST_TYPE, signer.signing),
        input_digest=input_digest,
        previous_receipt=previous,
    )


def test_valid_offer_passes(parties):
    alice, a, b, config_for = parties
    manifest = make_manifest(alice, [a, b])
    verified = verify_offer(offer(manifest, alice), config_for(a), a.public)
    assert verified.hop.stop.name == "hospital-a"


def test_bad_signature(parties):
    alice, a, b, config_for = parties
    good = offer(make_manifest(alice, [a, b]), alice)
    tampered = good.manifest.model_copy(update={"payload": good.manifest.payload[:-8] + "AAAAAAA="})
    bad = HopOffer(good.train_id, 0, tampered, None, None)
    with pytest.raises((SignatureInvalid, ManifestInvalid)):  # a refusal, never a crash
        verify_offer(bad, config_for(a), a.public)


def test_manifest_signed_by_someone_else_than_it_names(parties):
    alice, a, b, config_for = parties
    mallory = Identity.generate("alice")
    with pytest.raises(SignatureInvalid, match="no signature by alice"):
        verify_offer(offer(make_manifest(alice, [a, b]), mallory), config_for(a), a.public)


def test_untrusted_signer(parties):
    _, a, b, config_for = parties
    bob = Identity.generate("bob")
    with pytest.raises(PolicyRejected, match="does not trust signer bob"):
        verify_offer(offer(make_manifest(bob, [a, b]), bob), config_for(a), a.public)


def test_expired_manifest(parties):
    alice, a, b, config_for = parties
    past = datetime.now(UTC) - timedelta(days=2)
    manifest = make_manifest(alice, [a, b], created_at=past, expires_at=past + timedelta(hours=1))
    with pytest.raises(PolicyRejected, match="expired"):
        verify_offer(offer(manifest, alice), config_for(a), a.public)


def test_wrong_station_for_this_hop(parties):
    alice, a, b, config_for = parties
    with pytest.raises(RouteMismatch, match="is for station hospital-a, not hospital-b"):
        verify_offer(offer(make_manifest(alice, [a, b]), alice), config_for(b), b.public)


def test_key_fingerprint_mismatch(parties):
    alice, a, b, config_for = parties
    impostor = Identity.generate("hospital-a")  # central swapped in another key
    manifest = make_manifest(alice, [impostor, b])
    with pytest.raises(RouteMismatch, match="pins keys"):
        verify_offer(offer(manifest, alice), config_for(a), a.public)


def test_registry_not_allowed(parties):
    alice, a, b, config_for = parties
    image = Image(repository="evil.example:5000/pht/x", digest="sha256:" + "1" * 64)
    with pytest.raises(PolicyRejected, match="not allowed"):
        verify_offer(
            offer(make_manifest(alice, [a, b], image=image), alice), config_for(a), a.public
        )


def test_resources_over_caps(parties):
    alice, a, b, config_for = parties
    manifest = make_manifest(alice, [a, b], resources=Resources(memory_mb=64_000))
    with pytest.raises(PolicyRejected, match="memory_mb=64000"):
        verify_offer(offer(manifest, alice), config_for(a), a.public)


def test_dataset_not_here(parties):
    alice, a, b, config_for = parties
    manifest = make_manifest(alice, [a, b], datasets=["genomes"])
    with pytest.raises(PolicyRejected, match="no dataset"):
        verify_offer(offer(manifest, alice), config_for(a), a.public)


def test_initial_state_other_than_pinned(parties):
    alice, a, b, config_for = parties
    manifest = make_manifest(alice, [a, b], initial_state_digest="sha256:" + "2" * 64)
    swapped = offer(manifest, alice, input_digest="sha256:" + "3" * 64)
    with pytest.raises(RouteMismatch, match="initial state"):
        verify_offer(swapped, config_for(a), a.public)


def _receipt(manifest, signer, manifest_digest, hop=0, out="sha256:" + "4" * 64, train_id=None):
    now = datetime.now(UTC)
    return sign(
        HopReceipt.for_hop(
            HopPredicate(
                train_id=train_id or manifest.train_id,
                hop=hop,
                round=0,
                kind="local",
                station=signer.name,
                station_key=signer.public.signing_fingerprint,
                manifest_digest=manifest_digest,
                image_digest=manifest.image.digest,
                input_state_digests=[],
                output_state_digest=out,
                output_sealed_to=[],
                previous_receipt_digests=[],
                started_at=now,
                finished_at=now,
                container_seconds=0.1,
            )
        ),
        RECEIPT_TYPE,
        signer.signing,
    )


def test_previous_receipt_checks(parties):
    alice, a, b, config_for = parties
    manifest = make_manifest(alice, [a, b])
    digest = sign(manifest, MANIFEST_TYPE, alice.signing).digest
    out = "sha256:" + "4" * 64
    good = _receipt(manifest, a, digest, out=out)
    assert verify_offer(offer(manifest, alice, 1, out, good), config_for(b), b.public)
    # no receipt at all
    with pytest.raises(RouteMismatch, match="without the receipt"):
        verify_offer(offer(manifest, alice, 1, out, None), config_for(b), b.public)
    # a receipt forged by someone other than the pinned previous stop
    with pytest.raises(SignatureInvalid):
        verify_offer(
            offer(manifest, alice, 1, out, _receipt(manifest, b, digest)), config_for(b), b.public
        )
    # a replayed receipt from another train
    replay = _receipt(manifest, a, digest, out=out, train_id="other-train")
    with pytest.raises(RouteMismatch, match="replay"):
        verify_offer(offer(manifest, alice, 1, out, replay), config_for(b), b.public)
    # an input other than the one the previous stop signed for
    with pytest.raises(RouteMismatch, match="output other than the input"):
        verify_offer(offer(manifest, alice, 1, "sha256:" + "5" * 64, good), config_for(b), b.public)


def test_tampered_input_bytes():
    with pytest.raises(SignatureInvalid, match="changed in transit"):
        check_input_bytes(b"tampered", "sha256:" + "6" * 64)


def test_signer_may_not_use_a_dataset_it_was_not_granted(parties, tmp_path):
    from station.config import SignerPolicy

    alice, a, b, config_for = parties
    config = config_for(a, trusted=())
    config.datasets["genomes"] = CsvSource(path=tmp_path / "d.csv")
    config.policy.signers[alice.public.signing_fingerprint] = SignerPolicy(datasets=["cohort"])
    assert verify_offer(offer(make_manifest(alice, [a, b]), alice), config, a.public)
    greedy = make_manifest(alice, [a, b], datasets=["cohort", "genomes"])
    with pytest.raises(PolicyRejected, match=r"may not use dataset \['genomes'\]"):
        verify_offer(offer(greedy, alice), config, a.public)


def test_policy_approves_a_trusted_signer_with_an_allowed_image(parties):
    alice, a, b, config_for = parties
    manifest = make_manifest(alice, [a, b])
    config = config_for(a, allowed_images=[manifest.image.digest])
    assert verify_offer(offer(manifest, alice), config, a.public).needs_approval == ()


def test_an_image_not_allowed_waits_for_the_admin(parties):
    alice, a, b, config_for = parties
    config = config_for(a, allowed_images=["sha256:" + "9" * 64])
    verified = verify_offer(offer(make_manifest(alice, [a, b]), alice), config, a.public)
    assert verified.needs_approval == (
        f"image {make_manifest(alice, [a]).image.digest} is not in policy.allowed_images",
    )


def test_manual_approval_and_signers_without_auto_approve_wait(parties):
    from station.config import SignerPolicy

    alice, a, b, config_for = parties
    manifest = make_manifest(alice, [a, b])
    manual = config_for(a, approval="manual")
    assert "manual" in verify_offer(offer(manifest, alice), manual, a.public).needs_approval[0]
    cautious = config_for(a, trusted=())
    cautious.policy.signers[alice.public.signing_fingerprint] = SignerPolicy(auto_approve=False)
    waits = verify_offer(offer(manifest, alice), cautious, a.public).needs_approval
    assert waits == ("signer alice has auto_approve = false",)
