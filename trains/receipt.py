"""Hop receipts: each station signs what it ran and what it passed on, chained by hash.

A receipt is shaped like an in-toto statement: ``subject`` names the artifacts by digest
and ``predicate`` says what happened. Receipts link by hash along the route's plan of hops:
a hop that reads several outputs (an aggregate) links every receipt of those hops.
:func:`verify_chain` is the researcher's whole check.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from trains.early_end import early_end_refused, sealed_to_after
from trains.errors import ReceiptChainBroken, SignatureInvalid
from trains.keys import PublicIdentity
from trains.manifest import Manifest, ReceiptKind
from trains.signing import Envelope, open_envelope, unverified_payload

RECEIPT_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE: Final = "https://pht.dev/hop-receipt/v1"


class Subject(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    digest: dict[str, str]


# a hop's steps at its station, in order (station/timeline.py); durations in seconds
TimelineStep = Literal[
    "verify",  # the offer's checks: manifest, route, policy, receipts
    "inputs",  # download, check and open the input states
    "image",  # pull the image (or find it) and check it
    "data",  # materialise the datasets
    "sandbox",  # create the volumes and containers, copy inputs and data in
    "container",  # the train's container, start to exit
    "copy_out",  # copy the output out of the sandbox
    "cleanup",  # remove the containers and volumes
    "disclosure",  # disclosure control and packing the output
    "seal",  # seal the output to its readers and sign
]


class Phase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    step: TimelineStep
    seconds: float = Field(ge=0)


class HopPredicate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    train_id: str
    hop: int
    round: int
    # "local" or "aggregate", as the manifest's route pins it; "skipped": the station
    # refused the hop and passed its input on unchanged (where the route allows it)
    kind: ReceiptKind
    station: str
    station_key: str  # signing-key fingerprint of the station that signs this receipt
    manifest_digest: str
    image_digest: str
    # sha256 of each sealed input blob, in the order of the hop's inputs (empty: no input)
    input_state_digests: list[str]
    output_state_digest: str  # sha256 of the sealed output blob
    # sha256 of the output's archive (its plaintext, with the codec's 256-bit nonce, so
    # central cannot try states against it); a skipped hop's is the one of the state it
    # was handed, which it passes on byte for byte
    output_commitment: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    output_sealed_to: list[str]  # sealing-key fingerprints
    previous_receipt_digests: list[str]  # the receipts of the hops whose outputs we read
    started_at: AwareDatetime
    finished_at: AwareDatetime
    container_seconds: float
    reason: str | None = None  # why a skipped hop was refused, in the station's words
    # the train converged and ended the route here (trains/early_end.py): the output is
    # sealed to the researcher, and no hop after this one runs
    converged: bool = False
    timeline: list[Phase] = Field(default_factory=list, max_length=16)


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

    One receipt per hop of the plan, in index order, each signed by the station key the
    manifest pinned for that hop (the aggregator's for an aggregate hop) and of the kind it
    pins (or ``skipped``, where the route lets a refusing stop pass the state on unchanged);
    each hop's inputs exactly the outputs of the hops it reads, in order (the initial
    state for a first hop), and its previous receipts exactly theirs; each output sealed to
    exactly the stops that read it (the researcher after the last hop); a skipped hop (never
    the last) committing to exactly the state it read; and the final state the last hop's
    output (whoever opens it checks the archive against ``check_opened``). A route ends
    before its last hop only where a hop that may end it (``trains.early_end``) signed
    ``converged`` and sealed its output to the researcher. Errors name the hop and the check.
    """
    hops = manifest.hops()
    # fewer receipts than hops: the route can only have ended where a hop may end it
    cut_short = 0 < len(receipts) < len(hops) and early_end_refused(manifest, len(receipts) - 1)
    if not receipts or len(receipts) > len(hops) or cut_short:
        raise ReceiptChainBroken(
            f"expected {len(hops)} receipts for this route, got {len(receipts)}: "
            "a hop was skipped or repeated"
        )
    predicates: list[HopPredicate] = []
    outputs: list[str] = []
    digests: list[str] = []
    initial = [] if initial_state_digest is None else [initial_state_digest]
    for hop, envelope in zip(hops, receipts, strict=False):
        what = f"receipt of hop {hop.index} ({hop.stop.name})"
        try:
            receipt = open_envelope(envelope, RECEIPT_TYPE, hop.stop.station, HopReceipt, what)
        except SignatureInvalid as exc:
            claimed = _claimed(envelope)
            raise ReceiptChainBroken(f"{exc} (receipt claims hop {claimed})") from None
        p = receipt.predicate
        sources = f"hops {hop.inputs}" if hop.inputs else "the initial state"
        expected_inputs = [outputs[j] for j in hop.inputs] if hop.inputs else initial
        sealed_to = [
            r.sealing_fingerprint for r in sealed_to_after(manifest, hop.index, p.converged)
        ]
        skip_refused = manifest.skip_refused(hop.index) if p.kind == "skipped" else None
        end_refused = early_end_refused(manifest, hop.index) if p.converged else None
        checks = [
            (p.train_id == manifest.train_id, f"names train {p.train_id}"),
            (p.hop == hop.index and p.round == hop.round, f"names hop {p.hop} round {p.round}"),
            (p.station == hop.stop.name, f"names station {p.station}"),
            (
                p.kind in (hop.kind, "skipped") and skip_refused is None,
                f"claims a hop of kind {p.kind} where the route pins {hop.kind}"
                + (f", and {skip_refused}" if skip_refused else ""),
            ),
            (p.manifest_digest == manifest_digest, "names another manifest"),
            (p.image_digest == manifest.image.digest, f"ran image {p.image_digest}"),
            (
                p.input_state_digests == expected_inputs,
                f"read inputs other than the outputs of {sources}, in that order",
            ),
            (
                p.previous_receipt_digests == [digests[j] for j in hop.inputs],
                f"does not link the receipts of {sources}",
            ),
            (
                p.output_sealed_to == sealed_to,
                "sealed its output to someone other than the stops that read it"
                if not (hop.is_last or p.converged)
                else "sealed the final state to someone other than the researcher",
            ),
            (
                not p.converged or (end_refused is None and p.kind != "skipped"),
                f"claims the route ended there, but {end_refused or 'a skipped hop ran nothing'}",
            ),
        ]
        for ok, problem in checks:
            if not ok:
                raise ReceiptChainBroken(f"{what}: {problem}")
        if p.kind == "skipped" and hop.inputs:
            check_passed_on(p, predicates[hop.inputs[0]])
        predicates.append(p)
        outputs.append(p.output_state_digest)
        digests.append(envelope.digest)
        if p.converged:
            break
    if len(predicates) != len(receipts) or (len(receipts) < len(hops) and not p.converged):
        raise ReceiptChainBroken(
            f"expected {len(hops)} receipts for this route, got {len(receipts)}: a hop was "
            "skipped or repeated, or the route was cut short where no station signed that "
            "the train had converged"
        )
    if outputs[-1] != final_state_digest:
        raise ReceiptChainBroken(
            f"the final state's digest is {final_state_digest}, the last station signed for "
            f"{outputs[-1]}: the bytes differ from what the last station signed (damaged, "
            "truncated or replaced after it signed); nothing was opened"
        )
    return predicates


def check_passed_on(skipped: HopPredicate, handed: HopPredicate) -> None:
    """A skipped hop passed on exactly the state it was handed: its commitment is the one
    of the receipt of the hop it read (both signed, by different stations)."""
    if skipped.output_commitment != handed.output_commitment:
        verb = "passed on" if handed.kind == "skipped" else "wrote"
        raise ReceiptChainBroken(
            f"the state hop {skipped.hop} ({skipped.station}) passed on is not the one hop "
            f"{handed.hop} ({handed.station}) {verb}: a skipping station changed it"
        )


def check_opened(archive_digest: str, writer: HopPredicate, what: str) -> None:
    """The archive just opened is the one the receipt of the hop that handed it on commits
    to (the sha256 of the plaintext archive, see ``output_commitment``)."""
    if archive_digest != writer.output_commitment:
        verb = "passed on" if writer.kind == "skipped" else "wrote"
        raise ReceiptChainBroken(
            f"{what} opens to a state other than the one hop {writer.hop} ({writer.station}) "
            f"{verb} and signed for: it was changed before it was sealed; nothing was used"
        )


def readers_of(manifest: Manifest, producer: int | None) -> list[PublicIdentity]:
    """Who the manifest says a state is sealed to: the readers of hop ``producer``'s
    output, or the stations of the first hops for the initial state (``None``)."""
    if producer is None:
        return manifest.initial_recipients()
    return manifest.recipients_after(producer)


def _claimed(envelope: Envelope) -> str:
    try:
        return str(unverified_payload(envelope, HopReceipt).predicate.hop)
    except ValueError:
        return "?"
