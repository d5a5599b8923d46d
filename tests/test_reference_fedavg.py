"""FedAvg and FedProx over simulated parallel rounds, through the runtime the image runs.

The harness is ``pht-train test --parallel`` in-process: every stop runs ``local`` from the
previous round's global state (``PHT_MODE=local``), then the aggregator stop runs
``aggregate`` with the stops' partial states as ``input/<i>/state.json`` in route order.
Every hop's output is kept, so the tests can read the partial and global states."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from train_builder.local_run import run_local, stops_from_frames
from trains.errors import TrainFailed
from trains.runtime import Context, run_train
from trains.runtime.core import load_train_module, read_train_toml

REFERENCE = Path(__file__).resolve().parents[1] / "trains" / "reference"


def sites(train: str) -> list[pd.DataFrame]:
    return [pd.read_csv(p) for p in sorted((REFERENCE / train / "sample").glob("*.csv"))]


def configured(train: str, folder: Path, **params: Any) -> Path:
    """A copy of a reference train whose [parameters] are updated with ``params``."""
    folder.mkdir(parents=True)
    for path in (REFERENCE / train).glob("*.py"):
        shutil.copy2(path, folder / path.name)
    text = (REFERENCE / train / "train.toml").read_text()
    merged = read_train_toml(REFERENCE / train)["parameters"] | params
    lines = [f"{key} = {json.dumps(value)}" for key, value in merged.items()]
    head = text[: text.index("[parameters]")]
    (folder / "train.toml").write_text(head + "[parameters]\n" + "\n".join(lines) + "\n")
    return folder


def run_parallel(
    train_dir: Path, frames: list[pd.DataFrame], tmp_path: Path, rounds: int
) -> dict[str, Any]:
    """Parallel rounds over the stops ``site-0``, ``site-1``, ...; every hop's output stays
    in ``tmp_path/hops/<hop>`` (read it with ``partial`` and ``global_state``)."""
    dataset = read_train_toml(train_dir)["datasets"][0]
    stops = stops_from_frames(frames, dataset, tmp_path / "data")
    result = run_local(train_dir, stops, rounds, parallel=True, keep_hops=tmp_path / "hops")
    state = result.finalized or result.state  # the whole result; only published.json leaves
    assert state is not None
    return state


def hop_dir(run: Path, r: int, stop: int, stops: int = 3) -> Path:
    """What stop ``stop`` handed on in round ``r``, hop r*(n+1)+s of a parallel route; stop
    ``stops`` is the aggregator."""
    return run / "hops" / str(r * (stops + 1) + stop)


def partial(run: Path, r: int, stop: int) -> dict[str, Any]:
    return read(hop_dir(run, r, stop))


def global_state(run: Path, r: int, stops: int = 3) -> dict[str, Any]:
    """The aggregator's state after round ``r``."""
    return read(hop_dir(run, r, stops, stops))


def read(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((path / "state.json").read_text())
    return loaded


def split(train_dir: Path, frames: list[pd.DataFrame]) -> tuple[np.ndarray, ...]:
    """Training and held-out rows of all sites, split exactly as the train splits them."""
    core = load_train_module(train_dir).core
    p = read_train_toml(train_dir)["parameters"]
    parts = [core.design(f, p["covariates"], p["outcome"]) for f in frames]
    masks = [core.held_out(len(y), p["test_fraction"], p["seed"]) for _, y in parts]
    pairs = list(zip(parts, masks, strict=True))
    return (
        np.vstack([x[~m] for (x, _), m in pairs]),
        np.concatenate([y[~m] for (_, y), m in pairs]),
        np.vstack([x[m] for (x, _), m in pairs]),
        np.concatenate([y[m] for (_, y), m in pairs]),
    )


def pooled_training(train_dir: Path, fit_x: np.ndarray, fit_y: np.ndarray, rounds: int) -> Any:
    """The same model, trained by the same code on all training rows in one place for as
    many epochs as the federated model had rounds of training."""
    core = load_train_module(train_dir).core
    p = read_train_toml(train_dir)["parameters"]
    scaler = core.merge_moments([core.moments(fit_x)])
    w = np.zeros(fit_x.shape[1] + 1)
    for r in range(1, rounds - 1):
        w = core.train_locally(w, core.standardise(scaler, fit_x), fit_y, p, [0, r])
    return lambda x: core.logits(w, core.standardise(scaler, x))


@pytest.mark.parametrize("train", ["fedavg", "fedprox"])
def test_parallel_rounds_match_the_model_trained_on_pooled_rows(train, tmp_path):
    frames = sites(train)
    rounds = 12  # every round: tests/test_fedavg_early_end.py has the route that ends early
    every_round = configured(train, tmp_path / "train", stop_early=False)
    result = run_parallel(every_round, frames, tmp_path, rounds)
    fit_x, fit_y, test_x, test_y = split(REFERENCE / train, frames)
    assert result["method"] == train and result["training_rounds"] == rounds - 2
    assert (result["n_train"], result["n_test"]) == (len(fit_y), len(test_y))
    # the scores it reports are those of the model it hands back, on every site's held-out rows
    model = result["model"]
    np.testing.assert_allclose(model["mean"], fit_x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(model["scale"], fit_x.std(0, ddof=1), rtol=1e-12)
    logit = (test_x - model["mean"]) / model["scale"] @ model["coef"] + model["intercept"]
    assert result["accuracy"] == np.mean((logit > 0) == test_y)
    assert abs(result["auc"] - roc_auc_score(test_y, logit)) < 2e-3  # binned vs exact
    # as good as the same model trained on the pooled rows (90 held-out rows: 1 = 1.1 pp)
    pooled = pooled_training(REFERENCE / train, fit_x, fit_y, rounds)(test_x)
    assert abs(result["accuracy"] - np.mean((pooled > 0) == test_y)) <= 0.012
    assert abs(result["auc"] - roc_auc_score(test_y, pooled)) <= 0.01
    # one history entry per round that scored a model; the first is the zero model
    assert [h["round"] for h in result["history"]] == list(range(1, rounds))
    assert result["history"][-1]["accuracy"] == result["accuracy"]


def test_aggregate_is_the_row_weighted_average_of_the_stops_models(tmp_path):
    run_parallel(REFERENCE / "fedavg", sites("fedavg"), tmp_path, rounds=4)
    for r in (1, 2):
        partials = [partial(tmp_path, r, s) for s in range(3)]
        n = np.array([p["n"] for p in partials], dtype=float)
        assert n.tolist() == [90, 68, 112]  # 75% of 120 / 90 / 150 rows train
        weights = np.array([p["weights"] for p in partials])
        assert not np.allclose(weights[0], weights[1])  # each stop trained its own model
        expected = n @ weights / n.sum()
        np.testing.assert_allclose(global_state(tmp_path, r)["weights"], expected, rtol=1e-13)
    # the last round only scores: every stop hands back the final model unchanged
    final = global_state(tmp_path, 2)["weights"]
    assert all(partial(tmp_path, 3, s)["weights"] == final for s in range(3))


def test_what_leaves_a_stop_is_a_model_and_counts_never_rows(tmp_path):
    run_parallel(REFERENCE / "fedavg", sites("fedavg"), tmp_path, rounds=3)
    first = partial(tmp_path, 0, 0)
    assert set(first) == {"kind", "round", "columns", "moments"}
    assert first["moments"]["n"] == 90 and len(first["moments"]["mean"]) == 4
    second = partial(tmp_path, 1, 0)
    assert set(second) == {
        "kind", "round", "columns", "scaler", "history", "n", "evaluation", "weights",
        "started_from",
    }  # fmt: skip
    assert set(second["evaluation"]) == {"n", "correct", "log_loss", "positive", "negative"}
    assert len(second["weights"]) == 5  # intercept + 4 covariates, plain JSON numbers


def test_fedprox_with_mu_zero_is_fedavg_and_mu_keeps_stops_near_the_global_model(tmp_path):
    fedavg = run_parallel(REFERENCE / "fedavg", sites("fedavg"), tmp_path / "avg", rounds=5)
    zero = configured("fedprox", tmp_path / "prox0", mu=0.0)
    prox0 = run_parallel(zero, sites("fedprox"), tmp_path / "p0", rounds=5)
    assert prox0["model"] == fedavg["model"] and prox0["settings"] == {"mu": 0.0}
    strong = configured("fedprox", tmp_path / "prox1", mu=1.0)
    run_parallel(strong, sites("fedprox"), tmp_path / "p1", rounds=5)

    def drift(run: Path) -> float:
        start = np.array(global_state(run, 1)["weights"])
        return max(
            float(np.linalg.norm(np.array(partial(run, 2, s)["weights"]) - start)) for s in range(3)
        )

    assert drift(tmp_path / "p1") < 0.9 * drift(tmp_path / "avg")


def test_same_inputs_give_the_same_model(tmp_path):
    a = run_parallel(REFERENCE / "fedavg", sites("fedavg"), tmp_path / "a", rounds=4)
    b = run_parallel(REFERENCE / "fedavg", sites("fedavg"), tmp_path / "b", rounds=4)
    assert a == b


def test_on_a_sequential_route_the_train_says_it_needs_parallel_rounds(tmp_path):
    train = REFERENCE / "fedavg"
    (tmp_path / "d" / "cohort").mkdir(parents=True)
    sites("fedavg")[0].to_csv(tmp_path / "d" / "cohort" / "data.csv", index=False)
    (tmp_path / "in").mkdir()
    (tmp_path / "out0").mkdir()
    ctx = Context(round=0, hop=0, is_last=False, stop=0, stops=2, rounds=4)
    run_train(train, tmp_path / "in", tmp_path / "d", tmp_path / "out0", ctx)
    (tmp_path / "out1").mkdir()
    ctx = Context(round=0, hop=1, is_last=False, stop=1, stops=2, rounds=4)
    with pytest.raises(ValueError, match="runs on parallel rounds"):
        run_train(train, tmp_path / "out0", tmp_path / "d", tmp_path / "out1", ctx)


def test_too_few_rounds_are_refused(tmp_path):
    with pytest.raises(TrainFailed, match="at least 3 rounds"):
        run_parallel(REFERENCE / "fedavg", sites("fedavg"), tmp_path, rounds=2)


def test_aggregator_refuses_a_missing_or_stale_partial_state(tmp_path):
    train = REFERENCE / "fedavg"
    run_parallel(train, sites("fedavg"), tmp_path / "run", rounds=4)
    ctx = Context(mode="aggregate", round=2, stop=3, stops=3, rounds=4, is_last=False)
    data = tmp_path / "no-data"  # aggregate() reads partial states, never data
    data.mkdir()

    def round_two(folder: Path) -> Path:
        """The aggregator's input of round 2: input/<s>/ is stop s's partial state."""
        for s in range(3):
            shutil.copytree(hop_dir(tmp_path / "run", 2, s), folder / str(s))
        return folder

    # a stop's state of round 1 replayed into round 2
    stale = round_two(tmp_path / "stale")
    shutil.copy2(hop_dir(tmp_path / "run", 1, 1) / "state.json", stale / "1" / "state.json")
    (tmp_path / "o1").mkdir()
    with pytest.raises(ValueError, match="not from round 2"):
        run_train(train, stale, data, tmp_path / "o1", ctx)
    # one stop's state missing
    missing = round_two(tmp_path / "missing")
    (missing / "2" / "state.json").unlink()
    (tmp_path / "o2").mkdir()
    with pytest.raises(ValueError, match="one partial state from every stop"):
        run_train(train, missing, data, tmp_path / "o2", ctx)
    # a stop that scored with another standardisation than the others
    forged = round_two(tmp_path / "forged")
    state = read(forged / "0")
    state["scaler"]["mean"][0] += 1.0
    (forged / "0" / "state.json").write_text(json.dumps(state))
    (tmp_path / "o3").mkdir()
    with pytest.raises(ValueError, match="disagree on 'scaler'"):
        run_train(train, forged, data, tmp_path / "o3", ctx)
