"""Hop receipts: each station signs what it ran and what it passed on, chained by hash.

A receipt is shaped like an in-toto statement: ``subject`` names the artifacts by digest
and ``predicate`` says what happened. :func:`verify_chain` is the researcher's whole check.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from trains.errors import ReceiptChainBroken, SignatureInvalid
from trains.manifest import Manifest
from trains.signing import Envelope, open_envelope, unverified_payload

RECEIPT_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE: Final = "https://pht.dev/hop-receipt/v1"


class Subject(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    digest: dict[str, str]


class HopPredicate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    train_id: str
    hop: int
    round: int
    station: str
    station_key: str  # signing-key fingerprint of the station that signs this receipt
    manifest_digest: str
    image_digest: str
    input_state_digest: str | None  # sha256 of the sealed input blob; None: no input
    output_state_digest: str  # sha256 of the sealed output blob
    output_sealed_to: list[str]  # sealing-key fingerprints
    previous_receipt_digest: str | None
    started_at: AwareDatetime
    finished_at: AwareDatetime
    container_seconds: float


class HopReceipt(BaseModel):
    type_: Literal["https://in-toto.io/Statement/v1"] = Field(
        "https://in-toto.io/Statement/v1", alias="_type"
    )
    subject: list[Subject]
    predicateType: Literal["https://pht.dev/hop-receipt/v1"] = PREDICATE_TYPE
    predicate: HopPredicate

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @classmethod
    def for_hop(cls, predicate: HopPredicate) -> HopReceipt:
        return cls(
            subject=[
                Subject(name="output-state", digest=_split(predicate.output_state_digest)),
                Subject(name="image", digest=_split(predicate.image_digest)),
            ],
            predicate=predicate,
        )


def _split(digest: str) -> dict[str, str]:
    algorithm, _, value = digest.partition(":")
    return {algorithm: value}


def verify_chain(
    manifest: Manifest,
    manifest_digest: str,
    initial_state_digest: str | None,
    receipts: list[Envelope],
    final_state_digest: str,
) -> list[HopPredicate]:
    """Check that ``receipts`` prove the route ran exactly as the manifest says.

    Every hop present once and in order, each signed by the station key the manifest
    pinned for that stop, each input the previous output, each linked to the previous
    receipt, and the last output the final state we hold. Errors name the hop and check.
    """
    hops = manifest.hops()
    if len(receipts) != len(hops):
        raise ReceiptChainBroken(
            f"expected {len(hops)} receipts for this route, got {len(receipts)}: "
            "a hop was skipped or repeated"
        )
    predicates: list[HopPredicate] = []
    previous_digest: str | None = None
    expected_input = initial_state_digest
    for hop, envelope in zip(hops, receipts, strict=True):
        what = f"receipt of hop {hop.index} ({hop.stop.name})"
        try:
            receipt = open_envelope(envelope, RECEIPT_TYPE, hop.stop.station, HopReceipt, what)
        except SignatureInvalid as exc:
            claimed = _claimed(envelope)
            raise ReceiptChainBroken(f"{exc} (receipt claims hop {claimed})") from None
        p = receipt.predicate
        checks = [
            (p.train_id == manifest.train_id, f"names train {p.train_id}"),
            (p.hop == hop.index and p.round == hop.round, f"names hop {p.hop} round {p.round}"),
            (p.station == hop.stop.name, f"names station {p.station}"),
            (p.manifest_digest == manifest_digest, "names another manifest"),
            (p.image_digest == manifest.image.digest, f"ran image {p.image_digest}"),
            (p.input_state_digest == expected_input, "read an input other than the last output"),
            (p.previous_receipt_digest == previous_digest, "does not link the previous receipt"),
            (
                p.output_sealed_to == [manifest.recipient_after(hop.index).sealing_fingerprint],
                "sealed its output to someone other than the next stop",
            ),
        ]
        for ok, problem in checks:
            if not ok:
                raise ReceiptChainBroken(f"{what}: {problem}")
        predicates.append(p)
        previous_digest = envelope.digest
        expected_input = p.output_state_digest
    if expected_input != final_state_digest:
        raise ReceiptChainBroken(
            "the final state is not the one the last station signed for: it was swapped"
        )
    return predicates


def _claimed(envelope: Envelope) -> str:
    try:
        return str(unverified_payload(envelope, HopReceipt).predicate.hop)
    except ValueError:
        return "?"
