"""Every reference train that supports secure = true gives the unmasked result to the
fixed-point precision: each hop with the stations' real masks (tests/secure_route.py)
against the same train with secure = false, on the reference samples. Target: 1e-9
relative for estimates, standard errors, counts, curves and model weights (the ring keeps
2^-32 absolute per contribution; p-values and intervals derive from these)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.secure_route import run_secure_route, secure_copy
from tests.test_reference_fedavg import run_parallel
from tests.test_reference_trains import run_route

REFERENCE = Path(__file__).resolve().parents[1] / "trains" / "reference"
REL = 1e-9
SKIPPED = ("min", "max", "p", "t", "z", "ci_low", "ci_high", "odds_ratio")


def sites(train: str) -> list[pd.DataFrame]:
    return [pd.read_csv(p) for p in sorted((REFERENCE / train / "sample").glob("*.csv"))]


def numbers(value: Any, path: str = "") -> dict[str, float]:
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key in sorted(value):
            if key not in SKIPPED:
                out |= numbers(value[key], f"{path}/{key}")
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out |= numbers(item, f"{path}[{i}]")
        return out
    if value is None or isinstance(value, (str, bool)):
        return {}
    return {path: float(value)}


def assert_equal_to_precision(secure: dict[str, Any], plain: dict[str, Any], key: str) -> None:
    got, expected = numbers(secure[key]), numbers(plain[key])
    assert got.keys() == expected.keys()
    for path, value in expected.items():
        assert np.isclose(got[path], value, rtol=REL, atol=1e-12), path


LEVELS = {
    "sex": ["F", "M"],
    "smoker": ["no", "yes"],
    "diagnosis": ["none", "hypertension", "copd", "t2_diabetes", "sarcoidosis"],
}
CASES = [
    ("cohort", {}, {"levels": LEVELS}, 1, "numeric"),
    ("linreg", {}, {}, 1, "coefficients"),
    ("logreg", {}, {}, 6, "coefficients"),
    (
        "km",
        {"time_unit": 1},
        {"max_time": 2000, "levels": {"treatment": ["control", "new"]}},
        1,
        "curves",
    ),
]


@pytest.mark.parametrize(("train", "common", "secure_only", "rounds", "key"), CASES)
def test_secure_equals_unmasked_on_a_sequential_route(
    tmp_path, train, common, secure_only, rounds, key
):
    frames = sites(train)
    if train == "km":
        common = common | {"group": "treatment"}
    plain = run_route(
        secure_copy(REFERENCE / train, tmp_path / "p", False, **common),
        frames,
        tmp_path / "run",
        rounds,
    )
    masked = run_secure_route(
        secure_copy(REFERENCE / train, tmp_path / "s", **common, **secure_only), frames, rounds
    )
    assert masked.state is not None
    assert_equal_to_precision(masked.state, plain, key)
    if train == "cohort":
        assert masked.state["categorical"] == plain["categorical"]


@pytest.mark.parametrize("train", ["fedavg", "fedprox"])
def test_secure_equals_unmasked_on_a_parallel_route(tmp_path, train):
    frames = sites("fedavg")
    plain = run_parallel(REFERENCE / train, frames, tmp_path / "p", 4)
    masked = run_secure_route(
        secure_copy(REFERENCE / train, tmp_path / "s"), frames, 4, parallel=True
    )
    assert masked.state is not None
    assert_equal_to_precision(masked.state, plain, "model")
    for key in ("n_train", "n_test", "accuracy", "auc"):
        assert np.isclose(masked.state[key], plain[key], rtol=REL), key


def test_secure_cohort_without_declared_levels_says_what_to_declare(tmp_path):
    with pytest.raises(ValueError, match="declare the categories of column"):
        run_secure_route(secure_copy(REFERENCE / "cohort", tmp_path / "s"), sites("cohort"))


def test_the_secure_file_is_declared_in_the_manifest_outputs(tmp_path):
    from trains.train_spec import load_train_spec

    spec = load_train_spec(secure_copy(REFERENCE / "linreg", tmp_path / "s"))
    assert spec.secure and spec.outputs == ["state.json", "secure.json"]
    plain = load_train_spec(REFERENCE / "linreg")
    assert not plain.secure and plain.outputs == ["state.json"]


def test_secure_cox_equals_unmasked(tmp_path):
    frames = sites("cox")
    common = {"time_unit": 1}
    plain_dir = secure_copy(REFERENCE / "cox", tmp_path / "p", False, **common)
    plain = run_route(plain_dir, frames, tmp_path / "run", 6)
    masked_dir = secure_copy(REFERENCE / "cox", tmp_path / "s", **common, max_time=2000)
    masked = run_secure_route(masked_dir, frames, 6)
    assert masked.state is not None
    assert_equal_to_precision(masked.state, plain, "coefficients")
    assert masked.state["n_events"] == plain["n_events"]


@pytest.mark.parametrize(("train", "rounds"), [("logreg", 3), ("cox", 3)])
def test_an_iterative_train_passes_on_its_model_not_the_pooled_sums(tmp_path, train, rounds):
    """The first stop of round 1 receives the model of round 0, not the pooled score and
    information (from which it could subtract its own share)."""
    extra = {"time_unit": 1, "max_time": 2000} if train == "cox" else {}
    run = run_secure_route(
        secure_copy(REFERENCE / train, tmp_path / "s", **extra), sites(train), rounds
    )
    state = json.loads(run.received[3]["state.json"])
    assert not {"gradient", "information", "deaths", "event_sum_x", "s0"} & set(state)
