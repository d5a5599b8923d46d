"""Every check a station makes before a train touches its data, in the order made.

1. the manifest is signed by the researcher key it names, and names the train the offer
   names (central or a man-in-the-middle cannot relabel a hop);
2. that researcher key is trusted by this station's policy;
3. the manifest has not expired, was not made in the future (beyond a clock skew of
   ``trains.manifest.CLOCK_SKEW``) and lives no longer than ``policy.max_manifest_days``;
4. this hop exists on the route, names this station, and pins this station's own keys;
   4b. it is of the kind the manifest pins (``local``, or ``aggregate`` at the aggregator);
   4c. with ``policy.network_root`` set: every stop of the route and the aggregator (every
       key this train's states are sealed to) carries an enrolment that root signed for its
       name and exactly the keys pinned, not expired (trains.enrolment);
5. the image comes from an allowed registry (exact ``host:port``, see station.registry)
   and is pinned by digest;
   5b. an image whose digest is not in ``policy.allowed_images`` (when that list is set)
       waits for the admin's approval;
6. the requested resources are within this station's caps;
7. a local hop: every requested dataset exists here;
   7b. and this signer may use it (``[policy.signers."sha256:..."] datasets``);
   7c. with ``policy.privacy.mode = "required"``: this station releases the route (its
       last stop, or its aggregator), so its DP applies to what leaves;
   (an aggregate hop reads only the round's partial states: no data is handed to it)
8. the offer hands exactly the inputs the manifest's plan names for this hop, in order:
   for each, the receipt of the hop that wrote it is signed by the key pinned for that
   hop's stop, names this train, manifest and image, and its output is exactly the input
   we are handed (a first hop: the input is the initial state the manifest pins, or none);
9. each input state's bytes hash to that digest, its sealed header wraps the key for
   exactly the readers the manifest names (``trains.sealing.check_sealed_to``), and it
   opens with our key, bound to this train and the hop that wrote it;
10. the archive it opens to is the one that hop's receipt commits to (``output_commitment``)
   and, where a skipped hop passed it on, every skip back to the hop that wrote it passed
   on exactly the state it read (:func:`check_opened_input`).

Checks that fail refuse the hop. What is left decides approval: automatic when the signer
is trusted with ``auto_approve``, the image is allowed and ``policy.approval`` is "auto";
otherwise the hop waits in the local queue for ``pht-station approve`` (``needs_approval``
says why). Pulling the image by digest (the Docker adapter) is the last check before the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from central.messages import HopOffer
from station.config import StationConfig
from station.registry import check_registry
from trains.enrolment import verify_enrolment
from trains.errors import (
    ManifestInvalid,
    NotEndorsed,
    PolicyRejected,
    RouteMismatch,
    SignatureInvalid,
)
from trains.keys import PublicIdentity
from trains.manifest import MANIFEST_TYPE, MAX_LIFETIME, Hop, Manifest, check_times
from trains.receipt import RECEIPT_TYPE, HopReceipt, check_opened, check_passed_on
from trains.sealing import digest_bytes
from trains.signing import open_envelope, unverified_payload


@dataclass(frozen=True)
class VerifiedHop:
    manifest: Manifest
    manifest_digest: str
    hop: Hop
    previous_receipt_digests: list[str]
    needs_approval: tuple[str, ...] = ()  # empty: policy approves the run by itself


def verify_offer(offer: HopOffer, config: StationConfig, me: PublicIdentity) -> VerifiedHop:
    """Checks 1-8; raises a PhtError whose message a researcher can act on."""
    # 1. signature, by the researcher key the manifest itself names; the offer's train
    manifest = _signed_manifest(offer)
    # 2. a signer this station trusts
    signer = manifest.researcher.signing_fingerprint
    rules = config.policy.signer(signer)
    if rules is None:
        raise PolicyRejected(
            f"station {me.name} does not trust signer {manifest.researcher.name} ({signer}); "
            "ask the station admin to add this key to policy.trusted_signers"
        )
    # 3. not expired, not from the future, not too long-lived
    _times(manifest, timedelta(days=config.policy.max_manifest_days))
    # 4. we are the stop named for this hop, pinned with our own keys; 4b. of its kind
    hop = _our_hop(offer, manifest, me)
    # 4c. every stop is enrolled by the network root this station pins
    _route_endorsed(manifest, config.policy.network_root)
    # 5. image from an allowed registry (exact, normalised host:port and path prefix)
    check_registry(manifest.image.repository, config.policy.allowed_registries)
    needs_approval = []
    # 5b. an image not approved in advance waits for the admin
    if config.policy.allowed_images and manifest.image.digest not in config.policy.allowed_images:
        needs_approval.append(f"image {manifest.image.digest} is not in policy.allowed_images")
    # 6. resources within caps
    asked, caps = manifest.resources, config.policy.caps
    for field in ("memory_mb", "cpus", "timeout_s", "max_output_mb"):
        if getattr(asked, field) > getattr(caps, field):
            raise PolicyRejected(
                f"the train asks for {field}={getattr(asked, field)}, "
                f"above this station's cap of {getattr(caps, field)}"
            )
    # 7. datasets exist (an aggregate hop is handed none)
    datasets = manifest.datasets if hop.kind == "local" else []
    missing = [d for d in datasets if d not in config.datasets]
    if missing:
        raise PolicyRejected(
            f"station {me.name} has no dataset {missing}; it offers {sorted(config.datasets)}"
        )
    # 7b. this signer may use them
    if rules.datasets is not None:
        forbidden = [d for d in datasets if d not in rules.datasets]
        if forbidden:
            raise PolicyRejected(
                f"signer {manifest.researcher.name} ({signer}) may not use dataset "
                f"{forbidden} at station {me.name}; ask the station admin to add it to "
                f'[policy.signers."{signer}"] datasets'
            )
    # 7c. a station that requires DP noises only what it releases itself: it takes part
    # only in routes it releases (their last stop, or their aggregator)
    releaser = manifest.hops()[-1].stop
    if config.policy.privacy.mode == "required" and releaser.station.signing_fingerprint != (
        me.signing_fingerprint
    ):
        raise PolicyRejected(
            f"station {me.name} requires differential privacy on what it releases, and this "
            f"route is released by {releaser.name}: make {me.name} the route's last stop"
        )
    # 8. the inputs are exactly the outputs the plan names, each linked by its receipt
    previous_digests = _check_inputs(offer, manifest, hop)
    # approval: what the policy does not approve by itself waits for the admin
    if config.policy.approval == "manual":
        needs_approval.append("policy.approval is manual: every hop waits for the admin")
    if not rules.auto_approve:
        needs_approval.append(f"signer {manifest.researcher.name} has auto_approve = false")
    return VerifiedHop(
        manifest, offer.manifest.digest, hop, previous_digests, tuple(needs_approval)
    )


def verify_passage(
    offer: HopOffer, me: PublicIdentity, network_root: str | None = None
) -> VerifiedHop:
    """What a refused hop must pass before its station passes the state on unchanged (see
    ``station.passage``): the route lets this hop skip, and checks 1, 3, 4, 4c and 8 (all
    but the policy's). Raises a PhtError when the state may not be passed on."""
    manifest = _signed_manifest(offer)
    _times(manifest, MAX_LIFETIME)
    hop = _our_hop(offer, manifest, me)
    _route_endorsed(manifest, network_root)
    refused = manifest.skip_refused(hop.index)
    if refused is not None:
        raise PolicyRejected(f"hop {hop.index} may not be skipped: {refused}")
    return VerifiedHop(manifest, offer.manifest.digest, hop, _check_inputs(offer, manifest, hop))


def _signed_manifest(offer: HopOffer) -> Manifest:
    """Check 1: signed by the researcher key the manifest itself names, for this train."""
    try:  # a manifest no valid Manifest parses from (e.g. a refused route) ends this hop
        claimed = unverified_payload(offer.manifest, Manifest)
    except ValueError as exc:
        raise ManifestInvalid(f"the manifest is not valid: {exc}"[:2000]) from None
    manifest = open_envelope(
        offer.manifest, MANIFEST_TYPE, claimed.researcher, Manifest, "manifest"
    )
    if manifest.train_id != offer.train_id:
        raise RouteMismatch(
            f"the offer names train {offer.train_id}, but its signed manifest names train "
            f"{manifest.train_id}: central (or someone between) relabelled the hop"
        )
    return manifest


def _times(manifest: Manifest, max_lifetime: timedelta) -> None:
    """Check 3."""
    try:
        check_times(manifest, max_lifetime)
    except ManifestInvalid as exc:
        raise PolicyRejected(str(exc)) from None


def _our_hop(offer: HopOffer, manifest: Manifest, me: PublicIdentity) -> Hop:
    """Checks 4 and 4b: the hop is on the route, ours, pinned with our keys, of its kind."""
    try:
        hop = manifest.hop(offer.hop)
    except IndexError as exc:
        raise RouteMismatch(str(exc)) from None
    if hop.stop.name != me.name:
        raise RouteMismatch(f"hop {offer.hop} is for station {hop.stop.name}, not {me.name}")
    if hop.stop.station != me:
        raise RouteMismatch(
            f"the manifest pins keys {hop.stop.station.signing_fingerprint} for {me.name}, "
            f"but this station's key is {me.signing_fingerprint}; re-sign with current keys"
        )
    if offer.kind != hop.kind:
        raise RouteMismatch(
            f"hop {hop.index} is offered as kind {offer.kind!r}, but the manifest pins kind "
            f"{hop.kind!r} for it; refusing to run it as offered"
        )
    return hop


def _route_endorsed(manifest: Manifest, network_root: str | None) -> None:
    """Check 4c: the researcher pinned no station key the network root does not vouch for,
    so no state of this train is sealed to a key central (or the researcher) made up."""
    if network_root is None:
        return
    stops = manifest.route.stops + [s for s in [manifest.route.aggregator] if s is not None]
    for stop in stops:
        try:
            verify_enrolment(stop.enrolment, network_root, stop.station)
        except NotEndorsed as exc:
            raise NotEndorsed(
                f"this station pins network root {network_root} and refuses the route: {exc}"
            ) from None


def _check_inputs(offer: HopOffer, manifest: Manifest, hop: Hop) -> list[str]:
    """Check 8; return the digests of the receipts the offer links, in input order."""
    if not hop.inputs:
        pinned = manifest.initial_state_digest
        if [i.digest for i in offer.inputs] != ([] if pinned is None else [pinned]):
            raise RouteMismatch(
                f"the initial state handed to hop {hop.index} is not the one the manifest pins"
            )
        if offer.previous_receipts:
            raise RouteMismatch(f"hop {hop.index} is a first hop, yet came with receipts")
        return []
    if not offer.previous_receipts:
        raise RouteMismatch(
            f"hop {hop.index} came without the receipt of hop "
            + ", ".join(str(i) for i in hop.inputs)
        )
    sources = [i.hop for i in offer.inputs]
    if sources != hop.inputs or len(offer.previous_receipts) != len(hop.inputs):
        raise RouteMismatch(
            f"hop {hop.index} reads the outputs of hops {hop.inputs}, but is handed the "
            f"outputs of {sources} with {len(offer.previous_receipts)} receipts"
        )
    for source, given, envelope in zip(
        hop.inputs, offer.inputs, offer.previous_receipts, strict=True
    ):
        previous = manifest.hop(source)
        what = f"receipt of hop {previous.index} ({previous.stop.name})"
        receipt = open_envelope(envelope, RECEIPT_TYPE, previous.stop.station, HopReceipt, what)
        p = receipt.predicate
        if (p.train_id, p.hop) != (manifest.train_id, previous.index):
            raise RouteMismatch(f"{what} names train {p.train_id} hop {p.hop}: a replay")
        if p.manifest_digest != offer.manifest.digest or p.image_digest != manifest.image.digest:
            raise RouteMismatch(f"{what} is for another manifest or image")
        if p.output_state_digest != given.digest:
            raise RouteMismatch(f"{what} signs an output other than the input we were handed")
    return [envelope.digest for envelope in offer.previous_receipts]


def check_opened_input(
    offer: HopOffer, manifest: Manifest, position: int, archive_digest: str
) -> bool:
    """Check 10 for input ``position``, whose archive hashes to ``archive_digest``: it is
    the state the receipt that handed it commits to, and each skip behind it passed on the
    state it read (their receipts come in ``offer.skip_trail``, each checked against the
    key pinned for its stop and linked by digest). True: the state must hold no file (a
    skipped first hop with no initial state had only the empty state to pass on)."""
    if offer.inputs[position].hop is None:
        return False  # the researcher's initial state: its sealed digest is pinned
    # its signature and link were checked (check 8)
    p = unverified_payload(offer.previous_receipts[position], HopReceipt).predicate
    check_opened(archive_digest, p, f"the input state from hop {p.hop}")
    trail = {envelope.digest: envelope for envelope in offer.skip_trail}
    while p.kind == "skipped":
        refused = manifest.skip_refused(p.hop)
        if refused is not None:
            raise RouteMismatch(f"hop {p.hop} claims a skip, but {refused}")
        behind = manifest.hop(p.hop).inputs
        if not behind:
            return manifest.initial_state_digest is None
        links = p.previous_receipt_digests
        envelope = trail.get(links[0]) if len(links) == 1 else None
        writer = manifest.hop(behind[0])
        if envelope is None:
            raise RouteMismatch(
                f"hop {p.hop} was skipped, but the offer lacks the receipt of hop "
                f"{writer.index} it read: the skip cannot be checked (central withheld it)"
            )
        what = f"receipt of hop {writer.index} ({writer.stop.name})"
        handed = open_envelope(envelope, RECEIPT_TYPE, writer.stop.station, HopReceipt, what)
        r = handed.predicate
        if (r.train_id, r.hop, r.manifest_digest) != (
            manifest.train_id,
            writer.index,
            offer.manifest.digest,
        ):
            raise RouteMismatch(f"{what} names train {r.train_id} hop {r.hop}: a replay")
        check_passed_on(p, r)
        p = r
    return False


def empty_state_changed(source: int | None) -> RouteMismatch:
    """A state a skipped first hop passed on holds files, where it had none to pass on."""
    return RouteMismatch(
        f"the state hop {source} passed on holds files, but its route skipped every hop "
        "before it and brought no initial state: a skipping station made it up"
    )


def check_input_digest(actual: str, expected_digest: str | None) -> None:
    """Check 9, first half: the bytes we downloaded are the bytes the chain names."""
    if expected_digest is None:
        raise SignatureInvalid("an input state arrived for a hop that should have none")
    if actual != expected_digest:
        raise SignatureInvalid(
            f"the input state's digest is {actual}, the chain names {expected_digest}: "
            "it was changed in transit or at central"
        )


def check_input_bytes(sealed: bytes, expected_digest: str | None) -> None:
    """:func:`check_input_digest` for bytes in memory."""
    check_input_digest(digest_bytes(sealed), expected_digest)
