"""Every station refusal before anything runs, each tried as an attack."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from central.messages import HopInput, HopOffer
from station.config import CsvSource, Policy, StationConfig, StationInfo
from station.verify import check_input_bytes, verify_offer
from tests.factories import make_manifest
from trains.errors import (
    ManifestInvalid,
    PhtError,
    PolicyRejected,
    RouteMismatch,
    SignatureInvalid,
)
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
    """The offer of a sequential hop: its one input from hop - 1 (the initial state for
    hop 0), with that hop's receipt."""
    source = hop - 1 if hop > 0 else None
    return HopOffer(
        train_id=manifest.train_id,
        hop=hop,
        kind="local",
        manifest=sign(manifest, MANIFEST_TYPE, signer.signing),
        inputs=[] if input_digest is None else [HopInput(hop=source, digest=input_digest)],
        previous_receipts=[] if previous is None else [previous],
        lease_s=60,
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
    bad = good.model_copy(update={"manifest": tampered})
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
                output_commitment="sha256:" + "c" * 64,
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
    replay = _receipt(manifest, a, digest, out=out, train_id="00000000-0000-4000-8000-000000000000")
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


# Check 5: the registry policy matches exact, normalised host:port (station/registry.py).
# The station is configured for one registry; every other encoding must be refused.
ALLOWED = "127.0.0.1:48615"
SAME_HOST_OTHER_REGISTRY = [
    "127.0.0.1:48702/pht/x",  # the reproduction: same host, another port
    "127.0.0.1/pht/x",  # no port: Docker tries 443 or 80, not 48615
    "127.0.0.1:443/pht/x",
    "localhost:48615/pht/x",  # not normalised to 127.0.0.1
    "127.0.0.2:48615/pht/x",
    "127.0.0.1:048615/pht/x",  # a leading zero is refused, not repaired
    "127.0.0.1:48615.evil.example/pht/x",
    "127.0.0.1:486150/pht/x",
    "evil.example:5000/127.0.0.1:48615/pht/x",  # the allowed host inside the path
    "evil.example/127.0.0.1:48615",
    "user@127.0.0.1:48615/pht/x",
    "user:pw@evil.example/127.0.0.1:48615/x",
    "http://127.0.0.1:48615/pht/x",
    "127.0.0.1:48615//pht/x",
    "127.0.0.1:48615/pht/x/",
    "127.0.0.1:48615",
    "127.0.0.1:48615/pht/x:latest",  # a tag beside the pinned digest
    "127.0.0.1:48615/pht/x@sha256:" + "5" * 64,  # a second digest
    "127.0.0.1:48615/PHT/x",
    "127.0.0.1:48615/pht/x\n",
    "\uff11\uff12\uff17.0.0.1:48615/pht/x",  # full-width digits
    "pht/x",  # no registry: Docker Hub
    "127.0.0.1:48615/" + "a" * 255,
]


@pytest.mark.parametrize("repository", SAME_HOST_OTHER_REGISTRY)
def test_registry_policy_refuses_every_other_registry(parties, repository):
    alice, a, b, config_for = parties
    image = Image(repository=repository, digest="sha256:" + "1" * 64)
    with pytest.raises(PolicyRejected, match=r"not allowed|is refused"):
        verify_offer(
            offer(make_manifest(alice, [a, b], image=image), alice),
            config_for(a, allowed_registries=[ALLOWED]),
            a.public,
        )


@pytest.mark.parametrize(
    ("allowed", "repository"),
    [
        (ALLOWED, "127.0.0.1:48615/pht/x"),
        (ALLOWED, "127.0.0.1:48615/evil.example/x"),  # a path on the allowed registry
        ("Registry.Example:5000", "registry.EXAMPLE:5000/pht/x"),  # DNS ignores case
        ("registry.example", "registry.example/pht/x"),
        ("[::1]:5000", "[0:0::1]:5000/pht/x"),
        ("127.0.0.1:48615/pht", "127.0.0.1:48615/pht/x"),
        ("127.0.0.1:48615/pht", "127.0.0.1:48615/pht"),
    ],
)
def test_registry_policy_allows_the_same_registry_in_normal_form(parties, allowed, repository):
    alice, a, b, config_for = parties
    image = Image(repository=repository, digest="sha256:" + "1" * 64)
    manifest = make_manifest(alice, [a, b], image=image)
    verify_offer(offer(manifest, alice), config_for(a, allowed_registries=[allowed]), a.public)


@pytest.mark.parametrize(
    "repository", ["127.0.0.1:48615/phtx/x", "127.0.0.1:48615/other/pht/x", "127.0.0.1:48615/x"]
)
def test_registry_path_prefix_matches_whole_components(parties, repository):
    alice, a, b, config_for = parties
    image = Image(repository=repository, digest="sha256:" + "1" * 64)
    with pytest.raises(PolicyRejected, match="not allowed"):
        verify_offer(
            offer(make_manifest(alice, [a, b], image=image), alice),
            config_for(a, allowed_registries=["127.0.0.1:48615/pht"]),
            a.public,
        )


@pytest.mark.parametrize(
    "entry",
    [
        "http://127.0.0.1:5000",
        "127.0.0.1:5000/",
        "user@127.0.0.1:5000",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:05000",
        "*.example",
        "",
        "[::g]:5000",
    ],
)
def test_registry_policy_entries_outside_the_grammar_are_a_config_error(parties, entry):
    _, a, _, config_for = parties
    with pytest.raises(ValidationError, match="allowed_registries"):
        config_for(a, allowed_registries=[entry])


@pytest.mark.parametrize(
    ("created", "expires", "problem"),
    [
        (timedelta(0), datetime(9999, 12, 31, tzinfo=UTC), "at most 366 days"),
        (datetime(2099, 1, 1, tzinfo=UTC), datetime(2099, 1, 2, tzinfo=UTC), "in the future"),
        (timedelta(minutes=10), timedelta(days=1), "in the future"),
        (timedelta(0), timedelta(days=31), "longer than the 30 days"),
    ],
    ids=["year-9999", "created-2099", "beyond-skew", "over-policy-lifetime"],
)
def test_absurd_manifest_times_are_refused(parties, created, expires, problem):
    alice, a, b, config_for = parties
    now = datetime.now(UTC).replace(microsecond=0)
    created = now + created if isinstance(created, timedelta) else created
    expires = now + expires if isinstance(expires, timedelta) else expires
    # signed as the attacker wrote it, past the model's own checks
    manifest = make_manifest(alice, [a, b]).model_copy(
        update={"created_at": created, "expires_at": expires}
    )
    with pytest.raises(PhtError, match=problem):
        verify_offer(offer(manifest, alice), config_for(a), a.public)


def test_a_clock_a_little_ahead_and_a_longer_policy_are_accepted(parties):
    alice, a, b, config_for = parties
    now = datetime.now(UTC).replace(microsecond=0)
    ahead = make_manifest(
        alice, [a, b], created_at=now + timedelta(minutes=2), expires_at=now + timedelta(days=1)
    )
    assert verify_offer(offer(ahead, alice), config_for(a), a.public)
    long = make_manifest(alice, [a, b], created_at=now, expires_at=now + timedelta(days=60))
    with pytest.raises(PolicyRejected, match="longer than the 30 days"):
        verify_offer(offer(long, alice), config_for(a), a.public)
    assert verify_offer(offer(long, alice), config_for(a, max_manifest_days=90), a.public)


def test_a_station_that_requires_dp_takes_part_only_where_it_releases(parties):
    """policy.privacy.mode = "required" noises what the station itself releases; its data
    on a route that another station releases would reach the researcher un-noised, so it
    refuses such a hop (review finding: DP applied only at the release point)."""
    from station.config import PrivacyPolicy

    alice, a, b, config_for = parties
    manifest = make_manifest(alice, [a, b])
    required = {"privacy": PrivacyPolicy(mode="required")}
    with pytest.raises(PolicyRejected, match="differential privacy"):
        verify_offer(offer(manifest, alice), config_for(a, **required), a.public)
    # where it is the route's last stop it releases, noised: it takes the hop
    alone = make_manifest(alice, [a])
    assert verify_offer(offer(alone, alice), config_for(a, **required), a.public)
