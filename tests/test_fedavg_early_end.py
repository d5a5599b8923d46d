"""FedAvg and FedProx end their route when the global model stops moving (issue 15 item 3).

In-process, through the runtime the image runs (``run_local``, which asks ``converged``
only at the aggregate hops that may end the route, as stations do). The route ended early
must hand the researcher the model it averaged last and held-out scores that say which
model they belong to: the one a round earlier, at most ``tol`` away in every weight."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.secure_route import run_secure_route, secure_copy
from tests.test_reference_fedavg import (
    REFERENCE,
    configured,
    global_state,
    run_parallel,
    sites,
    split,
)
from train_builder.local_run import run_local, stops_from_frames

ROUNDS = 12  # 10 rounds of training asked for


def route(train_dir: Path, tmp_path: Path, rounds: int = ROUNDS) -> tuple[dict[str, Any], Any]:
    stops = stops_from_frames(sites("fedavg"), "cohort", tmp_path / "data")
    result = run_local(train_dir, stops, rounds, parallel=True, keep_hops=tmp_path / "hops")
    assert result.finalized is not None
    return result.finalized, result


def weights(result: dict[str, Any]) -> np.ndarray:
    return np.array([result["model"]["intercept"], *result["model"]["coef"]])


@pytest.mark.parametrize("train", ["fedavg", "fedprox"])
def test_a_converged_fedavg_route_ends_early_with_the_model_of_every_round(train, tmp_path):
    tol = 0.05
    early, ran = route(configured(train, tmp_path / "e", tol=tol), tmp_path / "early")
    full, ran_full = route(configured(train, tmp_path / "f", stop_early=False), tmp_path / "full")
    assert len(ran_full.hops) == ROUNDS * 4 and not full["ended_early"]
    # ended at an aggregate hop of a training round, fewer hops, signed as converged
    assert early["ended_early"] and len(ran.hops) < len(ran_full.hops)
    assert ran.hops[-1].kind == "aggregate" and ran.hops[-1].converged
    assert len(ran.hops) == (early["training_rounds"] + 1) * 4
    assert early["training_rounds"] < ROUNDS - 2 and early["last_change"] < tol
    # the same model as running every round, to within the tolerance
    assert np.abs(weights(early) - weights(full)).max() < tol
    # the rounds it ran before are the full route's rounds, model for model (the hop that
    # ended it hands on only what it published)
    for r in range(1, early["training_rounds"]):
        assert global_state(tmp_path / "early", r)["weights"] == pytest.approx(
            global_state(tmp_path / "full", r)["weights"], rel=1e-12
        )


def test_the_scores_of_an_early_end_are_those_of_the_previous_model_and_say_so(tmp_path):
    early, ran = route(REFERENCE / "fedavg", tmp_path / "early")
    assert early["ended_early"]
    trained = early["training_rounds"]
    assert early["scored_model_training_rounds"] == trained - 1
    # score the global model one averaging before the published one on every site's
    # held-out rows: those are the published scores
    _, _, test_x, test_y = split(REFERENCE / "fedavg", sites("fedavg"))
    before = global_state(tmp_path / "early", trained - 1)
    w = np.array(before["weights"])
    mean, scale = np.array(early["model"]["mean"]), np.array(early["model"]["scale"])
    logit = w[0] + (test_x - mean) / scale @ w[1:]
    assert early["accuracy"] == np.mean((logit > 0) == test_y)
    # ... and not those of the published model (here they differ, so the test can fail)
    published = early["model"]["intercept"] + (test_x - mean) / scale @ early["model"]["coef"]
    assert early["log_loss"] != pytest.approx(_log_loss(published, test_y), rel=1e-9)
    assert early["log_loss"] == pytest.approx(_log_loss(logit, test_y), rel=1e-9)
    # what leaves the station says it, typed: both rounds counts are published
    quantities = {q["name"]: q for q in ran.published["quantities"]}
    assert quantities["training_rounds"]["value"] == trained
    assert quantities["scored_model_training_rounds"]["value"] == trained - 1


def _log_loss(logit: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(1 / (1 + np.exp(-logit)), 1e-15, 1 - 1e-15)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def test_after_every_round_the_scores_are_of_the_published_model(tmp_path):
    full, ran = route(configured("fedavg", tmp_path / "f", stop_early=False), tmp_path / "full")
    assert full["scored_model_training_rounds"] == full["training_rounds"] == ROUNDS - 2
    assert full["last_change"] is None
    # published as before early end existed (stations on older code compare it)
    names = {q["name"] for q in ran.published["quantities"]}
    assert names == {"model/weights", "model/standardisation", "accuracy", "auc", "log_loss"}


def test_without_stop_early_in_train_toml_the_route_runs_every_round(tmp_path):
    """A train.toml written before early end (no stop_early, no tol) keeps its rounds."""
    folder = configured("fedavg", tmp_path / "old")
    toml = folder / "train.toml"
    kept = [ln for ln in toml.read_text().splitlines() if not ln.startswith(("tol", "stop_early"))]
    toml.write_text("\n".join(kept) + "\n")
    old, ran = route(folder, tmp_path / "run")
    assert len(ran.hops) == ROUNDS * 4 and not old["ended_early"]


@pytest.mark.parametrize("train", ["fedavg", "fedprox"])
def test_a_secure_route_ends_early_too_and_what_a_site_sends_stays_masked(train, tmp_path):
    frames = sites("fedavg")
    plain, ran = route(REFERENCE / train, tmp_path / "plain")
    masked = run_secure_route(
        secure_copy(REFERENCE / train, tmp_path / "s"), frames, ROUNDS, parallel=True
    )
    assert masked.ended_at == ran.hops[-1].hop  # the same round, from the masked sums
    assert masked.state is not None and masked.state["ended_early"]
    np.testing.assert_allclose(weights(masked.state), weights(plain), rtol=1e-9, atol=1e-12)
    for key in ("accuracy", "auc", "training_rounds", "scored_model_training_rounds"):
        assert masked.state[key] == pytest.approx(plain[key], rel=1e-9), key
    # a site's partial of a training round: the global model it started from (sent to every
    # stop in the clear) and no count, score or weights of its own in the clear
    aggregate = 2 * 4 + 3  # round 2's aggregate hop
    partial = json.loads(masked.received[aggregate]["0/state.json"])
    assert {"n", "evaluation", "weights"}.isdisjoint(partial)
    expected = global_state(tmp_path / "plain", 1)["weights"]  # fixed point: 2^-32 apart
    assert partial["started_from"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_the_pooled_match_still_holds_for_the_scores_of_an_early_end(tmp_path):
    """The scores an early end publishes are real held-out scores: within the same bound of
    the pooled model as a full route's (tests/test_reference_fedavg.py)."""
    early = run_parallel(REFERENCE / "fedavg", sites("fedavg"), tmp_path, ROUNDS)
    assert early["ended_early"] and 0.6 < early["accuracy"] < 0.9


@pytest.mark.parametrize(("train", "params"), [("logreg", {}), ("cox", {"time_unit": 1})])
def test_a_secure_newton_route_that_converges_ends_with_the_unmasked_model(tmp_path, train, params):
    """Seen failing first: under secure = true, logreg and cox dropped the pooled sums at
    every round's end that was not the last hop, so a route ending early there had no
    information matrix for its standard errors (KeyError in finalize)."""
    frames = sites(train)
    plain = run_secure_route(
        secure_copy(REFERENCE / train, tmp_path / "p", False, **params), frames, 10
    )
    masked = run_secure_route(
        secure_copy(REFERENCE / train, tmp_path / "s", **params, max_time=2000), frames, 10
    )
    assert plain.ended_at is not None and masked.ended_at == plain.ended_at < 29
    assert masked.state is not None and plain.state is not None
    for name, row in plain.state["coefficients"].items():
        got = masked.state["coefficients"][name]
        assert got["estimate"] == pytest.approx(row["estimate"], rel=1e-6), name
        assert got["se"] == pytest.approx(row["se"], rel=1e-6), name
