"""The researcher's check of a parallel route's receipts (a DAG), attacked one way at a
time: every attack must be refused, naming the hop and the check."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.factories import make_parallel_manifest, sign_receipt
from trains.errors import ReceiptChainBroken
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE, Manifest
from trains.receipt import verify_chain
from trains.signing import Envelope, sign


@dataclass
class Chain:
    manifest: Manifest
    digest: str
    receipts: list[Envelope]
    outputs: list[str]
    stations: dict[str, Identity]

    def verify(self, receipts: list[Envelope] | None = None, final: str | None = None) -> None:
        verify_chain(
            self.manifest,
            self.digest,
            None,
            self.receipts if receipts is None else receipts,
            self.outputs[-1] if final is None else final,
        )

    def resign(self, index: int, signer: str | None = None, **overrides: object) -> Envelope:
        """Hop ``index``'s receipt, signed again with some fields changed."""
        hop = self.manifest.hop(index)
        inputs = [self.outputs[j] for j in hop.inputs]
        previous = [self.receipts[j].digest for j in hop.inputs]
        return sign_receipt(
            self.manifest,
            self.digest,
            index,
            self.stations[signer or hop.stop.name],
            overrides.pop("inputs", inputs),
            overrides.pop("previous", previous),
            overrides.pop("output", self.outputs[index]),
            **overrides,
        )

    def with_receipt(self, index: int, envelope: Envelope) -> list[Envelope]:
        return [envelope if i == index else r for i, r in enumerate(self.receipts)]


@pytest.fixture(scope="module")
def chain() -> Chain:
    """Two parallel rounds over a, b, c joined at x, every receipt honest."""
    alice = Identity.generate("alice")
    stations = {n: Identity.generate(n) for n in ("a", "b", "c", "x")}
    manifest = make_parallel_manifest(alice, [stations[n] for n in "abc"], stations["x"], rounds=2)
    digest = sign(manifest, MANIFEST_TYPE, alice.signing).digest
    built = Chain(manifest, digest, [], [], stations)
    for hop in manifest.hops():
        output = f"sha256:{hop.index:064d}"
        built.outputs.append(output)
        built.receipts.append(built.resign(hop.index))
    return built


def test_an_honest_parallel_chain_verifies(chain):
    chain.verify()
    hops = verify_chain(chain.manifest, chain.digest, None, chain.receipts, chain.outputs[-1])
    assert [(h.station, h.kind) for h in hops[:4]] == [
        ("a", "local"),
        ("b", "local"),
        ("c", "local"),
        ("x", "aggregate"),
    ]


def test_swapped_partials_are_refused(chain):
    """The aggregator claims the partials in another order than the route's stops."""
    swapped = chain.resign(3, inputs=[chain.outputs[1], chain.outputs[0], chain.outputs[2]])
    with pytest.raises(ReceiptChainBroken, match=r"hop 3 \(x\).*outputs of hops \[0, 1, 2\]"):
        chain.verify(chain.with_receipt(3, swapped))


def test_a_missing_partial_is_refused(chain):
    """The aggregate joined only two of the three partial states of its round."""
    short = chain.resign(
        3,
        inputs=chain.outputs[:2],
        previous=[chain.receipts[0].digest, chain.receipts[1].digest],
    )
    with pytest.raises(ReceiptChainBroken, match=r"hop 3 \(x\): read inputs other than"):
        chain.verify(chain.with_receipt(3, short))
    # or the partial's receipt itself is missing from the chain
    with pytest.raises(ReceiptChainBroken, match="skipped or repeated"):
        chain.verify(chain.receipts[:1] + chain.receipts[2:])


def test_a_partial_from_a_stale_round_is_refused(chain):
    """The second round's aggregate reads a partial of the first round instead."""
    stale = chain.resign(7, inputs=[chain.outputs[0], chain.outputs[5], chain.outputs[6]])
    with pytest.raises(ReceiptChainBroken, match=r"hop 7 \(x\)"):
        chain.verify(chain.with_receipt(7, stale))


def test_a_partial_sealed_to_someone_else_is_refused(chain):
    """A stop seals its partial to itself (or anyone but the aggregator)."""
    leaked = chain.resign(1, output_sealed_to=[chain.stations["b"].public.sealing_fingerprint])
    with pytest.raises(ReceiptChainBroken, match=r"hop 1 \(b\): sealed its output to"):
        chain.verify(chain.with_receipt(1, leaked))
    # the aggregate must be sealed to all of the next round's stops, no fewer
    narrowed = chain.resign(3, output_sealed_to=[chain.stations["a"].public.sealing_fingerprint])
    with pytest.raises(ReceiptChainBroken, match=r"hop 3 \(x\): sealed its output"):
        chain.verify(chain.with_receipt(3, narrowed))


def test_an_aggregate_signed_by_a_non_aggregator_is_refused(chain):
    """A stop of the route signs the aggregate itself (claiming to be the aggregator)."""
    forged = chain.resign(3, signer="a")
    with pytest.raises(ReceiptChainBroken, match=r"receipt of hop 3 \(x\)"):
        chain.verify(chain.with_receipt(3, forged))


def test_a_local_hop_claiming_to_aggregate_is_refused(chain):
    wrong_kind = chain.resign(2, kind="aggregate")
    with pytest.raises(ReceiptChainBroken, match=r"hop 2 \(c\): claims a hop of kind aggregate"):
        chain.verify(chain.with_receipt(2, wrong_kind))


def test_an_unlinked_previous_receipt_is_refused(chain):
    unlinked = chain.resign(5, previous=["sha256:" + "e" * 64])
    with pytest.raises(ReceiptChainBroken, match=r"hop 5 \(b\): does not link the receipts"):
        chain.verify(chain.with_receipt(5, unlinked))


def test_a_swapped_final_state_is_refused(chain):
    with pytest.raises(
        ReceiptChainBroken, match="the bytes differ from what the last station signed"
    ):
        chain.verify(final=chain.outputs[3])
