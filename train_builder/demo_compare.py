"""The demo's trains and data, and each verified result compared with the same analysis
of the pooled data (what a single site holding every row would compute)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from train_builder.pooled import pooled_cohort_stats, pooled_km, pooled_logit
from trains.runtime.core import load_train_module

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "trains" / "reference"
COHORT = REFERENCE / "cohort"
HOSPITALS = ["hospital-a", "hospital-b", "hospital-c"]
# The logistic regression runs on the hospitals' cohort table: is hypertension diagnosed?
LOGREG_PARAMETERS: dict[str, Any] = {
    "outcome": "diagnosis=hypertension",
    "covariates": ["age", "bmi", "sex=M", "smoker=yes"],
    "intercept": True,
    "min_rows": 10,
    "tol": 1e-8,
    "conf_level": 0.95,
}
LOGREG_ROUNDS = 5  # Newton-Raphson converges (step < tol) in 5 on this table
EXACT = 1e-6  # federated must equal pooled to this relative difference
# FedAvg on the same question, in parallel rounds joined at a data-less aggregator station
AGGREGATOR = "aggregator"
FEDAVG_ROUNDS = 8  # round 0 learns the scaling, 6 rounds train, the last one scores
FEDAVG_PARAMETERS: dict[str, Any] = {
    "outcome": "hypertension",
    "covariates": ["age", "bmi", "sex=M", "smoker=yes"],
    "epochs": 1,
    "batch_size": 16,
    "learning_rate": 0.1,
    "alpha": 0.001,
    "test_fraction": 0.25,
    "seed": 0,
    "auc_bins": 1000,
    "min_rows": 10,
}
ITERATIVE = 0.01  # an iterative method must come within 1 percentage point of pooled


def hospital_datasets(name: str) -> dict[str, Path]:
    """What each demo hospital offers: the cohort sample as ``cohort`` (cohort and logreg
    trains), the Kaplan-Meier sample as ``survival`` (km train) and the FedAvg sample, a
    table with a learnable hypertension outcome, as ``risk`` (fedavg train)."""
    return {
        "cohort": COHORT / "sample" / f"{name}.csv",
        "survival": REFERENCE / "km" / "sample" / f"{name}.csv",
        "risk": REFERENCE / "fedavg" / "sample" / f"{name}.csv",
    }


def frames_of(dataset: str) -> list[pd.DataFrame]:
    return [pd.read_csv(hospital_datasets(h)[dataset]) for h in HOSPITALS]


Shown = tuple[str, float | None, float | None]  # label, federated, pooled


@dataclass
class Comparison:
    """One train's verified result against the pooled analysis."""

    train: str
    rounds: int
    seconds: float
    shown: list[Shown]  # a few key numbers
    compared: int  # how many numbers were compared in all
    max_rel: float  # the largest relative difference among them (absolute for rates)
    tolerance: float = EXACT
    suppressed: int = 0  # suppressions the releasing station reported (not compared)

    @property
    def equal(self) -> bool:
        return self.max_rel <= self.tolerance


def rel(a: float | None, b: float | None) -> float:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        same = (a is None or not math.isfinite(a)) and (b is None or not math.isfinite(b))
        return 0.0 if same else math.inf  # both undefined (e.g. median not reached) is equal
    return abs(a - b) / max(abs(b), 1e-12)


def released(published: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The released quantities of a ``published.json`` by name."""
    return {q["name"]: q for q in published["quantities"]}


def suppressed(published: dict[str, Any]) -> int:
    """How many suppressions the releasing station's rules report (never compared)."""
    return len(published["release"]["suppressed"])


def _table(q: dict[str, Any]) -> dict[str, int | None]:
    return {row: cells[0] for row, cells in zip(q["rows"], q["counts"], strict=True)}


def compare_cohort(published: dict[str, Any], seconds: float) -> Comparison:
    """Every released count, mean and sd against pandas on the pooled rows; a suppressed
    cell (``None``) is not compared, but every released cell is, and one is there for every
    pooled category."""
    pooled = pooled_cohort_stats(frames_of("cohort"), min_cell=0)
    q = released(published)
    diffs = [0.0 if _table(q["rows"])["all"] == pooled["rows"] else math.inf]
    shown: list[Shown] = []
    for col, p in pooled["numeric"].items():
        mean, sd = q[f"{col}/mean"], q[f"{col}/sd"]
        diffs += [rel(mean["value"], p["mean"]), rel(sd["value"], p["std"])]
        diffs.append(0.0 if mean["n"] == sd["n"] == p["count"] else math.inf)
        shown.append((f"{col} mean", mean["value"], p["mean"]))
    for col, counts in pooled["categorical"].items():
        got = _table(q[col])
        diffs.append(0.0 if set(got) == set(counts) else math.inf)
        diffs += [0.0 if got[k] == counts[k] else math.inf for k in got if got[k] is not None]
    return Comparison(
        "cohort", 1, seconds, shown, len(diffs), max(diffs), EXACT, suppressed(published)
    )


def compare_logreg(published: dict[str, Any], rounds: int, seconds: float) -> Comparison:
    """The released coefficients and standard errors against statsmodels on the pooled
    rows (the train's p-values are computed from them, and stay at the release point)."""
    pooled = pooled_logit(
        frames_of("cohort"), LOGREG_PARAMETERS["outcome"], LOGREG_PARAMETERS["covariates"]
    )
    q = released(published)["logreg"]
    fit = dict(
        zip(q["terms"], zip(q["coefficients"], q["standard_errors"], strict=True), strict=True)
    )
    diffs = [0.0 if set(fit) == set(pooled) else math.inf]
    shown: list[Shown] = []
    for name, p in pooled.items():
        estimate, se = fit[name]
        diffs += [rel(estimate, p["estimate"]), rel(se, p["se"])]
        shown.append((f"{name} log-odds", estimate, p["estimate"]))
    return Comparison(
        "logreg", rounds, seconds, shown, len(diffs), max(diffs), EXACT, suppressed(published)
    )


def compare_km(published: dict[str, Any], seconds: float) -> Comparison:
    """Each released survival step (the station cut the steps with fewer than k at risk),
    the medians the station computed from them, and the log-rank chi2, against the pooled
    Kaplan-Meier fit."""
    pooled = pooled_km(frames_of("survival"), "time", "event", "treatment")
    q = released(published)
    diffs: list[float] = []
    shown: list[Shown] = []
    for label, p in pooled["curves"].items():
        f = q[f"km/{label}"]
        at = dict(zip(p["time"].tolist(), p["survival"].tolist(), strict=True))
        diffs += [rel(s, at.get(t)) for t, s in zip(f["times"], f["survival"], strict=True)]
        diffs.append(0.0 if f["times"] else math.inf)  # a curve was released
        if f["median"] is not None:  # else the curve was cut before it: not released
            diffs.append(rel(f["median"], p["median"]))
        shown.append((f"{label} median", f["median"], p["median"]))
    chi2 = q["km/logrank_chi2"]["value"]
    diffs.append(rel(chi2, pooled["chi2"]))
    shown.append(("log-rank chi2", chi2, pooled["chi2"]))
    return Comparison("km", 1, seconds, shown, len(diffs), max(diffs), EXACT, suppressed(published))


def compare_fedavg(folder: Path, published: dict[str, Any], seconds: float) -> Comparison:
    """FedAvg is iterative, not exact: compare its released held-out accuracy and AUC with
    the same model trained by the same code on the pooled training rows (what pooling
    would give)."""
    from sklearn.metrics import roc_auc_score

    core = load_train_module(folder).core
    params = FEDAVG_PARAMETERS
    parts = [core.design(f, params["covariates"], params["outcome"]) for f in frames_of("risk")]
    masks = [core.held_out(len(y), params["test_fraction"], params["seed"]) for _, y in parts]
    test_x = np.vstack([x[m] for (x, _), m in zip(parts, masks, strict=True)])
    test_y = np.concatenate([y[m] for (_, y), m in zip(parts, masks, strict=True)])
    x = np.vstack([x[~m] for (x, _), m in zip(parts, masks, strict=True)])
    y = np.concatenate([y[~m] for (_, y), m in zip(parts, masks, strict=True)])
    scaler = core.merge_moments([core.moments(x)])
    weights = np.zeros(x.shape[1] + 1)
    for r in range(1, FEDAVG_ROUNDS - 1):
        weights = core.train_locally(weights, core.standardise(scaler, x), y, params, [0, r])
    score = core.logits(weights, core.standardise(scaler, test_x))
    accuracy = float(np.mean((score > 0) == test_y))
    auc = float(roc_auc_score(test_y, score))
    q = released(published)
    fed_accuracy, fed_auc = q["accuracy"]["value"], q["auc"]["value"]
    shown: list[Shown] = [
        ("held-out accuracy", fed_accuracy, accuracy),
        ("held-out AUC", fed_auc, auc),
    ]
    gaps = [
        math.inf if v is None else abs(v - w) for v, w in ((fed_accuracy, accuracy), (fed_auc, auc))
    ]
    return Comparison(
        "fedavg", FEDAVG_ROUNDS, seconds, shown, 2, max(gaps), ITERATIVE, suppressed(published)
    )


def print_summary(comparisons: list[Comparison]) -> None:
    say("\ntrain (route time)     quantity                   released        pooled")
    for c in comparisons:
        head = f"{c.train} ({c.rounds} rd, {c.seconds:.0f}s)"
        for i, (label, fed, pooled) in enumerate(c.shown):
            say(f"  {head if i == 0 else '':<21} {label:<22} {_num(fed):>12}  {_num(pooled):>12}")
        if c.tolerance == EXACT:
            verdict = "equal" if c.equal else "DIFFERENT"
            say(
                f"  {'':<21} max relative difference {c.max_rel:.1e} over {c.compared} "
                f"released numbers: {verdict}; {c.suppressed} suppressed, not compared"
            )
        else:
            verdict = "within" if c.equal else "NOT within"
            say(
                f"  {'':<21} largest gap {100 * c.max_rel:.2f} percentage points: {verdict} "
                f"{100 * c.tolerance:g} pp of pooled; {c.suppressed} suppressed"
            )
    same = all(c.equal for c in comparisons)
    say(
        f"\nexact methods equal pooled (to {EXACT:g}), iterative ones within "
        f"{100 * ITERATIVE:g} pp: {'yes' if same else 'NO'}"
    )


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.6g}"


def print_comparison(published: dict[str, Any]) -> None:
    """The cohort's released numbers beside pandas on the pooled rows."""
    pooled = pooled_cohort_stats(frames_of("cohort"), min_cell=0)
    q = released(published)
    say("\nnumeric columns        released (3 stations)             pooled (all data in one place)")
    for col, p in pooled["numeric"].items():
        mean, sd = q[f"{col}/mean"], q[f"{col}/sd"]
        say(
            f"  {col:<12} mean {mean['value']:>9.4f} sd {sd['value']:>8.4f} n {mean['n']:>4}"
            f"    mean {p['mean']:>9.4f} sd {p['std']:>8.4f} n {p['count']:>4}"
        )
    say("categorical counts (None = suppressed by the releasing station's rules)")
    for col, counts in pooled["categorical"].items():
        got = _table(q[col])
        for key, count in counts.items():
            say(f"  {col:<12} {key:<14} {got.get(key)!s:>6}    {count!s:>6}")
    for note in published["release"]["suppressed"]:
        say(f"  suppressed: {note['quantity']} {note['what']} ({note['rule']})")


def say(text: str) -> None:
    print(text, flush=True)
