"""Reference trains, run in-process through the same runtime the image uses, over three
site splits and several rounds, against the same method fitted on the pooled data."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test

from train_builder.local_run import run_local, stops_from_frames
from trains.errors import TrainFailed
from trains.runtime.core import load_train_module, read_train_toml

REFERENCE = Path(__file__).resolve().parents[1] / "trains" / "reference"
REL = 1e-6


def sites(train: str) -> list[pd.DataFrame]:
    return [pd.read_csv(p) for p in sorted((REFERENCE / train / "sample").glob("*.csv"))]


def with_parameters(train: str, folder: Path, **params: Any) -> Path:
    """A copy of a reference train whose [parameters] are replaced (the last table)."""
    source = REFERENCE / train
    folder.mkdir(parents=True)
    shutil.copy2(source / "train.py", folder / "train.py")
    text = (source / "train.toml").read_text()
    head = text[: text.index("[parameters]")]
    lines = [f"{key} = {json.dumps(value)}" for key, value in params.items()]
    (folder / "train.toml").write_text(head + "[parameters]\n" + "\n".join(lines) + "\n")
    return folder


def run_route(
    train_dir: Path, frames: list[pd.DataFrame], tmp_path: Path, rounds: int = 1
) -> dict[str, Any]:
    """Hop through the stops (``site-0``, ``site-1``, ...) in order for ``rounds`` rounds,
    as a sequential route does: ``pht-train test``'s in-process route."""
    dataset = read_train_toml(train_dir)["datasets"][0]
    stops = stops_from_frames(frames, dataset, tmp_path / "data")
    result = run_local(train_dir, stops, rounds)
    # the train's whole result; only its published quantities would leave a station
    state = result.finalized or result.state
    assert state is not None
    return state


def close(a: float, b: float, rel: float = REL) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def indicator_design(frame: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    columns = {}
    for item in covariates:
        name, _, level = item.partition("=")
        columns[item] = (frame[name].astype(str) == level).astype(float) if level else frame[name]
    return pd.DataFrame(columns)


# ---------------------------------------------------------------- linreg


def ended_at_first_converged_step(
    result: dict[str, Any], params: dict[str, Any], rounds: int
) -> bool:
    """The route ended early (trains/early_end.py) at the first Newton step below tol."""
    steps = [h["max_step"] for h in result["history"]]
    tol = params["tol"]
    return len(steps) < rounds and steps[-1] < tol and all(s >= tol for s in steps[:-1])


def test_linreg_equals_pooled_ols(tmp_path):
    frames = sites("linreg")
    params = read_train_toml(REFERENCE / "linreg")["parameters"]
    result = run_route(REFERENCE / "linreg", frames, tmp_path)
    pooled = pd.concat(frames, ignore_index=True)
    x = sm.add_constant(indicator_design(pooled, params["covariates"])).rename(
        columns={"const": "intercept"}
    )
    ols = sm.OLS(pooled[params["outcome"]].astype(float), x).fit()
    ci = ols.conf_int()
    assert result["n"] == len(pooled) and result["stations"] == 3
    for name, got in result["coefficients"].items():
        assert close(got["estimate"], ols.params[name]), name
        assert close(got["se"], ols.bse[name]), name
        assert close(got["t"], ols.tvalues[name]), name
        assert close(got["p"], ols.pvalues[name]), name
        assert close(got["ci_low"], ci.loc[name, 0]) and close(got["ci_high"], ci.loc[name, 1])
    assert close(result["r_squared"], ols.rsquared)
    assert close(result["sigma"], math.sqrt(ols.scale))


# ---------------------------------------------------------------- logreg


def test_logreg_newton_rounds_equal_pooled_logit(tmp_path):
    frames = sites("logreg")
    params = read_train_toml(REFERENCE / "logreg")["parameters"]
    result = run_route(REFERENCE / "logreg", frames, tmp_path, rounds=8)
    pooled = pd.concat(frames, ignore_index=True)
    x = sm.add_constant(indicator_design(pooled, params["covariates"])).rename(
        columns={"const": "intercept"}
    )
    logit = sm.Logit(pooled[params["outcome"]].astype(float), x).fit(disp=0, tol=1e-12)
    assert result["converged"] is True and ended_at_first_converged_step(result, params, 8)
    assert close(result["loglik"], logit.llf)
    for name, got in result["coefficients"].items():
        assert close(got["estimate"], logit.params[name]), name
        assert close(got["se"], logit.bse[name]), name
        assert close(got["p"], logit.pvalues[name]), name
    # the log-likelihood climbs round by round, as Newton-Raphson's does
    logliks = [h["loglik"] for h in result["history"]]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(logliks))


def test_logreg_with_too_few_rounds_says_not_converged(tmp_path):
    result = run_route(REFERENCE / "logreg", sites("logreg"), tmp_path, rounds=2)
    assert result["converged"] is False


# ---------------------------------------------------------------- km


def test_km_curves_and_logrank_equal_pooled_lifelines(tmp_path):
    frames = sites("km")
    result = run_route(REFERENCE / "km", frames, tmp_path)
    pooled = pd.concat(frames, ignore_index=True)
    assert set(result["curves"]) == {"control", "new"}
    for label, got in result["curves"].items():
        part = pooled[pooled["treatment"] == label]
        kmf = KaplanMeierFitter().fit(part["time"], part["event"])
        times = np.asarray(got["time"])
        expected = kmf.survival_function_.loc[times].iloc[:, 0].to_numpy()
        band = kmf.confidence_interval_.loc[times].to_numpy()
        np.testing.assert_allclose(got["survival"], expected, rtol=REL)
        np.testing.assert_allclose(got["ci_low"], band[:, 0], rtol=REL)
        np.testing.assert_allclose(got["ci_high"], band[:, 1], rtol=REL)
        np.testing.assert_allclose(got["at_risk"], kmf.event_table.loc[times, "at_risk"])
        assert got["median"] == kmf.median_survival_time_
        # the published curve stops where fewer than min_at_risk remain
        assert min(got["at_risk"]) >= result["min_at_risk"]
        assert times.max() < part["time"].max()
    test = multivariate_logrank_test(pooled["time"], pooled["treatment"], pooled["event"])
    assert close(result["logrank"]["chi2"], test.test_statistic)
    assert close(result["logrank"]["p"], test.p_value)


# ---------------------------------------------------------------- cox


def pooled_phreg(pooled: pd.DataFrame, covariates: list[str]) -> Any:
    x = indicator_design(pooled, covariates)
    model = sm.PHReg(pooled["time"].astype(float), x, status=pooled["event"], ties="breslow")
    return model.fit()


def test_cox_equals_pooled_breslow_phreg(tmp_path):
    frames = sites("cox")
    params = read_train_toml(REFERENCE / "cox")["parameters"]
    covariates = params["covariates"]
    result = run_route(REFERENCE / "cox", frames, tmp_path, rounds=10)
    pooled = pd.concat(frames, ignore_index=True)
    assert pooled["time"][pooled["event"] == 1].duplicated().any()  # ties are exercised
    fit = pooled_phreg(pooled, covariates)
    assert result["converged"] is True and ended_at_first_converged_step(result, params, 10)
    assert close(result["loglik"], fit.llf)
    ci = np.exp(fit.conf_int())
    for i, name in enumerate(covariates):
        got = result["coefficients"][name]
        assert close(got["estimate"], fit.params[i]), name
        assert close(got["se"], fit.bse[i]), name
        assert close(got["hazard_ratio"], math.exp(fit.params[i])), name
        assert close(got["hr_ci_low"], ci[i, 0]) and close(got["hr_ci_high"], ci[i, 1])
        assert close(got["p"], fit.pvalues[i]), name


# ---------------------------------------------------------------- sgd


def sgd_split(frames: list[pd.DataFrame], params: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """Each site's training and held-out rows exactly as the train splits them."""
    code = load_train_module(REFERENCE / "sgd")
    parts = [code.design(f, params["covariates"], params["outcome"]) for f in frames]
    masks = [code.held_out(len(y), params["test_fraction"], params["seed"]) for _, y in parts]
    fit_x = np.vstack([x[~m] for (x, _), m in zip(parts, masks, strict=True)])
    fit_y = np.concatenate([y[~m] for (_, y), m in zip(parts, masks, strict=True)])
    test_x = np.vstack([x[m] for (x, _), m in zip(parts, masks, strict=True)])
    test_y = np.concatenate([y[m] for (_, y), m in zip(parts, masks, strict=True)])
    return fit_x, fit_y, test_x, test_y


def pooled_sgd(
    fit_x: np.ndarray, fit_y: np.ndarray, params: dict[str, Any], epochs: int
) -> Callable[[np.ndarray], np.ndarray]:
    """The same SGD model trained on all training rows in one place, ``epochs`` passes."""
    from sklearn.linear_model import SGDClassifier

    mean, scale = fit_x.mean(0), fit_x.std(0, ddof=1)
    model = SGDClassifier(
        loss="log_loss",
        alpha=params["alpha"],
        random_state=params["seed"],
        learning_rate=params["learning_rate"],
        eta0=params["eta0"],
    )
    rng = np.random.default_rng(params["seed"])
    for _ in range(epochs):
        order = rng.permutation(len(fit_y))
        model.partial_fit((fit_x[order] - mean) / scale, fit_y[order], classes=[0, 1])
    return lambda x: model.decision_function((x - mean) / scale)


def test_sgd_model_travels_and_matches_pooled_training(tmp_path):
    from sklearn.metrics import roc_auc_score

    frames = sites("sgd")
    params = read_train_toml(REFERENCE / "sgd")["parameters"]
    rounds = 7
    result = run_route(REFERENCE / "sgd", frames, tmp_path, rounds=rounds)
    fit_x, fit_y, test_x, test_y = sgd_split(frames, params)
    assert result["passes"] == 3 * (rounds - 2)
    assert (result["n_train"], result["n_test"]) == (len(fit_y), len(test_y))
    # the reported numbers are those of the model it hands back, on every site's held-out rows
    model = result["model"]
    np.testing.assert_allclose(model["mean"], fit_x.mean(0), rtol=1e-12)
    logit = (test_x - model["mean"]) / model["scale"] @ model["coef"] + model["intercept"]
    assert result["accuracy"] == np.mean((logit > 0) == test_y)
    assert abs(result["auc"] - roc_auc_score(test_y, logit)) < 2e-3  # binned vs exact
    # as good as the same model trained on the pooled rows (90 held-out rows: 1 row = 1.1 pp)
    pooled = pooled_sgd(fit_x, fit_y, params, rounds - 2)(test_x)
    assert abs(result["accuracy"] - np.mean((pooled > 0) == test_y)) <= 0.025
    assert abs(result["auc"] - roc_auc_score(test_y, pooled)) <= 0.02


def test_sgd_refuses_a_route_too_short_to_train(tmp_path):
    with pytest.raises(TrainFailed, match="at least 3 rounds"):
        run_route(REFERENCE / "sgd", sites("sgd"), tmp_path, rounds=2)


# ---------------------------------------------------------------- shared behaviour


def test_station_with_too_few_rows_refuses_to_contribute(tmp_path):
    frames = sites("linreg")
    frames[1] = frames[1].head(6)  # six patients: their sums would all but reveal them
    with pytest.raises(TrainFailed, match="site-1 has 6 complete rows, fewer than min_rows=10"):
        run_route(REFERENCE / "linreg", frames, tmp_path)


def test_missing_column_names_the_parameter_to_fix(tmp_path):
    train = with_parameters(
        "logreg", tmp_path / "t", outcome="hypertension", covariates=["age", "weight"]
    )
    with pytest.raises(TrainFailed, match=r"no column\(s\) \['weight'\]; fix \[parameters\]"):
        run_route(train, sites("logreg"), tmp_path / "run", rounds=1)


def test_cox_result_does_not_depend_on_stop_order(tmp_path):
    frames = sites("cox")
    forward = run_route(REFERENCE / "cox", frames, tmp_path / "f", rounds=10)
    backward = run_route(REFERENCE / "cox", frames[::-1], tmp_path / "b", rounds=10)
    for name, got in forward["coefficients"].items():
        assert close(got["estimate"], backward["coefficients"][name]["estimate"], 1e-9)
        assert close(got["se"], backward["coefficients"][name]["se"], 1e-9)


def test_km_coarsened_times_equal_pooled_on_coarsened_times(tmp_path):
    train = with_parameters(
        "km",
        tmp_path / "t",
        time="time",
        event="event",
        group="",
        time_unit=30,
        min_at_risk=0,
        min_rows=10,
        conf_level=0.95,
    )
    frames = sites("km")
    result = run_route(train, frames, tmp_path / "run")
    pooled = pd.concat(frames, ignore_index=True)
    months = np.ceil(pooled["time"] / 30) * 30
    kmf = KaplanMeierFitter().fit(months, pooled["event"])
    got = result["curves"]["all"]
    assert set(got["time"]) <= set(range(30, 1200, 30))  # no exact day leaves any station
    expected = kmf.survival_function_.loc[got["time"]].iloc[:, 0].to_numpy()
    np.testing.assert_allclose(got["survival"], expected, rtol=REL)
    assert "logrank" not in result
