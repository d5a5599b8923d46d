"""Small builders shared by the unit tests (real keys, real signatures)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from central.messages import HopOffer
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE, Image, Manifest, Route, Stop, expiry_from_now
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt
from trains.signing import Envelope, sign

if TYPE_CHECKING:
    from station.config import StationConfig

DIGEST = "sha256:" + "ab" * 32


def make_manifest(
    researcher: Identity, stations: list[Identity], rounds: int = 1, **overrides: object
) -> Manifest:
    created, expires = expiry_from_now(1)
    fields: dict[str, object] = {
        "name": "cohort",
        "version": "0.1.0",
        "researcher": researcher.public,
        "image": Image(repository="127.0.0.1:5000/pht/cohort", digest=DIGEST),
        "route": Route(rounds=rounds, stops=[Stop(station=s.public) for s in stations]),
        "datasets": ["cohort"],
        "outputs": ["state.json"],
        "created_at": created,
        "expires_at": expires,
    }
    fields.update(overrides)
    return Manifest.model_validate(fields)


def make_parallel_manifest(
    researcher: Identity,
    stations: list[Identity],
    aggregator: Identity,
    rounds: int = 1,
    **overrides: object,
) -> Manifest:
    """A parallel route over ``stations``, each round joined at ``aggregator``."""
    route = Route(
        mode="parallel",
        rounds=rounds,
        stops=[Stop(station=s.public) for s in stations],
        aggregator=Stop(station=aggregator.public),
    )
    return make_manifest(researcher, stations, route=route, **overrides)


def sign_receipt(
    manifest: Manifest,
    manifest_digest: str,
    index: int,
    signer: Identity,
    inputs: list[str],
    previous: list[str],
    output: str,
    **overrides: object,
) -> Envelope:
    """The receipt a station signs for hop ``index`` (fields overridable, for attacks)."""
    hop = manifest.hop(index)
    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "train_id": manifest.train_id,
        "hop": index,
        "round": hop.round,
        "kind": hop.kind,
        "station": signer.name,
        "station_key": signer.public.signing_fingerprint,
        "manifest_digest": manifest_digest,
        "image_digest": manifest.image.digest,
        "input_state_digests": inputs,
        "output_state_digest": output,
        "output_commitment": "sha256:" + "c" * 64,
        "output_sealed_to": [r.sealing_fingerprint for r in manifest.recipients_after(index)],
        "previous_receipt_digests": previous,
        "started_at": now,
        "finished_at": now,
        "container_seconds": 1.0,
    }
    fields.update(overrides)
    predicate = HopPredicate.model_validate(fields)
    return sign(HopReceipt.for_hop(predicate), RECEIPT_TYPE, signer.signing)


def make_offer(train_id: str, hop: int, manifest: Envelope, **fields: object) -> HopOffer:
    """An offer as central hands it to a station; by default a first hop's (no inputs, no
    receipts)."""
    values: dict[str, object] = {
        "kind": "local",
        "inputs": [],
        "previous_receipts": [],
        "lease_s": 60,
        **fields,
    }
    return HopOffer.model_validate(
        {"train_id": train_id, "hop": hop, "manifest": manifest, **values}
    )


def manual_station(root: Path) -> tuple[StationConfig, Envelope, Identity]:
    """A station (hospital-a) whose admin approves by hand, with one CSV dataset under
    ``root``, its state in ``root/state``; a manifest alice signed for it; and ``here``."""
    from station.config import CsvSource, Policy, StationConfig, StationInfo

    alice, here = Identity.generate("alice"), Identity.generate("hospital-a")
    csv = root / "d.csv"
    csv.write_text("x\n1\n")
    config = StationConfig(
        station=StationInfo(
            name=here.name, central_url="http://127.0.0.1:1", state_dir=root / "state"
        ),
        datasets={"cohort": CsvSource(path=csv)},
        policy=Policy(trusted_signers=[alice.public.signing_fingerprint], approval="manual"),
    )
    return config, sign(make_manifest(alice, [here]), MANIFEST_TYPE, alice.signing), here
