"""A converged train ends its route early (issue 15 item 3): where a route may end, how
central ends it, and what the researcher's chain check accepts. Attacks: central cutting
a route short, a station claiming convergence where a route may not end, or sealing the
early result to someone other than the researcher."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from central.routing import HopStatus, TrainStatus, on_hop_done, sequential_plan
from tests.factories import make_manifest, make_parallel_manifest, sign_receipt
from train_builder.local_run import run_local, stops_from_frames
from trains.early_end import early_end_refused
from trains.errors import ReceiptChainBroken
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE
from trains.receipt import verify_chain
from trains.runtime.core import read_train_toml
from trains.signing import sign

REFERENCE = Path(__file__).resolve().parents[1] / "trains" / "reference"
ALICE = Identity.generate("alice")
STATIONS = [Identity.generate(n) for n in ("a", "b", "c")]


def test_only_a_hop_that_ends_its_round_may_end_a_sequential_route():
    manifest = make_manifest(ALICE, STATIONS, rounds=4)
    may = [i for i in range(12) if early_end_refused(manifest, i) is None]
    assert may == [2, 5, 8]  # the last stop of every round but the last
    assert "last hop" in str(early_end_refused(manifest, 11))
    assert "does not end round 0" in str(early_end_refused(manifest, 1))


def test_only_an_aggregate_hop_may_end_a_parallel_route():
    manifest = make_parallel_manifest(ALICE, STATIONS[:2], STATIONS[2], rounds=3)
    may = [h.index for h in manifest.hops() if early_end_refused(manifest, h.index) is None]
    assert may == [h.index for h in manifest.hops() if h.kind == "aggregate"][:-1]


def test_central_ends_the_route_and_marks_later_hops_not_needed():
    plan = sequential_plan(6)
    statuses = {0: HopStatus.DONE, 1: HopStatus.DONE, 2: HopStatus.RUNNING}
    statuses |= {i: HopStatus.WAITING for i in (3, 4, 5)}
    outputs = {0: "sha256:" + "0" * 64, 1: "sha256:" + "1" * 64}
    step = on_hop_done(statuses, 2, "sha256:" + "2" * 64, plan, outputs, converged=True)
    assert step.train_status == TrainStatus.DONE and step.input_for == {}
    assert step.hop_status == {
        2: HopStatus.DONE,
        3: HopStatus.NOT_NEEDED,
        4: HopStatus.NOT_NEEDED,
        5: HopStatus.NOT_NEEDED,
    }


def chain(rounds: int, ends_at: int, converged: bool = True, sealed_to_next: bool = False):
    """Receipts of a three-stop sequential route up to hop ``ends_at``, whose receipt says
    ``converged`` and is sealed to the researcher (or, as an attack, to the next stop)."""
    manifest = make_manifest(ALICE, STATIONS, rounds=rounds)
    digest = sign(manifest, MANIFEST_TYPE, ALICE.signing).digest
    receipts, previous, out = [], [], None
    for index in range(ends_at + 1):
        last = index == ends_at
        extra: dict[str, object] = {}
        if last and converged:
            extra["converged"] = True
            if not sealed_to_next:
                extra["output_sealed_to"] = [ALICE.public.sealing_fingerprint]
        output = f"sha256:{index:064d}"
        envelope = sign_receipt(
            manifest,
            digest,
            index,
            STATIONS[index % 3],
            [] if out is None else [out],
            previous,
            output,
            **extra,
        )
        receipts.append(envelope)
        previous, out = [envelope.digest], output
    assert out is not None
    return manifest, digest, receipts, out


def test_a_route_ended_by_a_signed_converged_receipt_verifies():
    manifest, digest, receipts, final = chain(rounds=4, ends_at=5)
    hops = verify_chain(manifest, digest, None, receipts, final)
    assert len(hops) == 6 and hops[-1].converged and hops[-1].round == 1


def test_central_cutting_a_route_short_without_a_converged_receipt_is_caught():
    manifest, digest, receipts, final = chain(rounds=4, ends_at=5, converged=False)
    with pytest.raises(ReceiptChainBroken, match=r"cut short|skipped or repeated"):
        verify_chain(manifest, digest, None, receipts, final)


def test_a_converged_claim_where_the_route_may_not_end_is_caught():
    manifest, digest, receipts, final = chain(rounds=4, ends_at=4)  # mid-round
    with pytest.raises(ReceiptChainBroken):
        verify_chain(manifest, digest, None, receipts, final)


def test_an_early_result_sealed_to_the_next_stop_is_caught():
    manifest, digest, receipts, final = chain(rounds=4, ends_at=5, sealed_to_next=True)
    with pytest.raises(ReceiptChainBroken, match="someone other than the researcher"):
        verify_chain(manifest, digest, None, receipts, final)


def test_receipts_after_a_converged_one_are_refused():
    manifest, digest, receipts, _ = chain(rounds=4, ends_at=5)
    _, _, longer, final = chain(rounds=4, ends_at=8, converged=False)
    with pytest.raises(ReceiptChainBroken):
        verify_chain(manifest, digest, None, receipts + longer[6:], final)


def logreg(tmp_path: Path, stop_early: bool) -> tuple[dict, int]:
    folder = tmp_path / f"logreg-{stop_early}"
    shutil.copytree(REFERENCE / "logreg", folder)
    toml = folder / "train.toml"
    toml.write_text(
        toml.read_text().replace("stop_early = true", f"stop_early = {str(stop_early).lower()}")
    )
    assert read_train_toml(folder)["parameters"]["stop_early"] is stop_early
    frames = [pd.read_csv(p) for p in sorted((folder / "sample").glob("*.csv"))]
    stops = stops_from_frames(frames, "cohort", tmp_path / f"data-{stop_early}")
    result = run_local(folder, stops, rounds=10)
    assert result.finalized is not None  # what finalize returned, before only the
    return result.finalized, len(result.hops)  # published quantities leave


def test_logreg_stops_when_converged_with_the_same_result(tmp_path):
    early, early_hops = logreg(tmp_path, stop_early=True)
    full, full_hops = logreg(tmp_path, stop_early=False)
    assert full_hops == 30 and early_hops < full_hops and early_hops % 3 == 0
    assert early["converged"] and early["iterations"] == early_hops // 3
    for name, row in full["coefficients"].items():
        assert early["coefficients"][name]["estimate"] == pytest.approx(row["estimate"], rel=1e-7)


def test_a_station_fails_a_hop_whose_train_claims_convergence_where_it_may_not_end():
    """The runtime asks converged() only where PHT_MAY_END says so; a train that exits
    with the converged code elsewhere (its own SystemExit(80)) broke the contract."""
    from station.outcome import ends_route
    from station.runner import RunResult
    from trains.errors import TrainFailed
    from trains.runtime.refusal import CONTRACT_BROKEN, CONVERGED_EXIT

    manifest = make_manifest(ALICE, STATIONS, rounds=2)
    said = RunResult(exit_code=CONVERGED_EXIT, seconds=1.0, timed_out=False, log="")
    plain = RunResult(exit_code=0, seconds=1.0, timed_out=False, log="")
    assert said.ok and said.converged and not plain.converged
    assert ends_route(said, manifest, 2) is True
    assert ends_route(plain, manifest, 2) is False
    for index in (0, 1, 5):  # mid-round, and the last hop
        with pytest.raises(TrainFailed, match="contract"):
            ends_route(said, manifest, index)
    killed = RunResult(exit_code=CONVERGED_EXIT, seconds=1.0, timed_out=True, log="")
    assert not killed.converged and killed.failure(None) != CONTRACT_BROKEN


def test_no_receipts_at_all_is_a_broken_chain_not_a_crash():
    manifest, digest, _, final = chain(rounds=2, ends_at=2)
    with pytest.raises(ReceiptChainBroken, match="got 0"):
        verify_chain(manifest, digest, None, [], final)
