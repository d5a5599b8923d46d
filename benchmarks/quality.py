"""Quality benchmark: every reference train, federated vs pooled vs local-only.

Runs each train's route in-process as ``pht-train test`` does (``run_local``: every hop
through ``trains.runtime.run_train``, the code the containers run) on medical tables that
ship inside installed packages, so nothing is downloaded:

* NCCTG lung cancer (``lifelines.datasets.load_lung``): the 18 institutions ``inst`` are
  spread over three stations (station k holds the institutions with ``inst % 3 == k``);
* Wisconsin breast cancer (``sklearn.datasets.load_breast_cancer``): split non-IID over
  three stations by tumour size (small tumours, mostly benign, at the first station).

Prints a table, writes it to docs/quality.md and draws docs/quality.png.
Run from the repository root: ``python3 benchmarks/quality.py``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_lung
from lifelines.statistics import multivariate_logrank_test
from release_quality import release_markdown, release_rows  # run as: python3 benchmarks/quality.py
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import roc_auc_score

from train_builder.local_run import run_local, stops_from_frames
from trains.runtime.core import load_train_module, read_train_toml

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED: dict[str, dict[str, Any]] = {}  # per train: its published.json after the rules
FULL: dict[str, dict[str, Any]] = {}  # per train: what finalize returned
REFERENCE = ROOT / "trains" / "reference"
DOCS = ROOT / "docs"
EXACT = 1e-6  # target: exact trains equal pooled to this relative difference
SGD_TARGET = 0.01  # target: sgd within 1 percentage point of pooled accuracy and AUC

Row = dict[str, Any]


# ------------------------------------------------------------------ running a route


def configured(train: str, folder: Path, **params: Any) -> Path:
    """A copy of a reference train with its [parameters] table (the last one) replaced."""
    folder.mkdir(parents=True)
    for code in (REFERENCE / train).glob("*.py"):  # fedavg/fedprox carry a helper module
        shutil.copy2(code, folder / code.name)
    text = (REFERENCE / train / "train.toml").read_text()
    lines = [f"{key} = {json.dumps(value)}" for key, value in params.items()]
    head = text[: text.index("[parameters]")]
    (folder / "train.toml").write_text(head + "[parameters]\n" + "\n".join(lines) + "\n")
    return folder


def run_route(
    train_dir: Path, frames: list[pd.DataFrame], rounds: int = 1, parallel: bool = False
) -> dict[str, Any]:
    """``pht-train test``'s in-process route over ``frames`` (one per station) for ``rounds``
    rounds: sequential, or parallel (every stop runs ``local`` from the last global state,
    then the aggregator runs ``aggregate`` over the stops' partial states)."""
    dataset = read_train_toml(train_dir)["datasets"][0]
    with tempfile.TemporaryDirectory() as tmp:
        stops = stops_from_frames(frames, dataset, Path(tmp), prefix="station")
        result = run_local(train_dir, stops, rounds, parallel=parallel)
    # the whole federated result (finalized) is compared to pooled here; what a station
    # releases of it (published) is compared in release_quality.py
    state = result.finalized or result.state
    assert state is not None and result.published is not None
    PUBLISHED[train_dir.name], FULL[train_dir.name] = result.published, state
    return state


def rel(a: Any, b: Any) -> float:
    """Largest relative difference between two arrays (NaN-free parts)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-12)))


def indicators(frame: pd.DataFrame, covariates: list[str], intercept: bool) -> pd.DataFrame:
    columns: dict[str, Any] = {"intercept": np.ones(len(frame))} if intercept else {}
    for item in covariates:
        name, _, level = item.partition("=")
        columns[item] = (frame[name].astype(str) == level).astype(float) if level else frame[name]
    return pd.DataFrame(columns, index=frame.index)


def local_only(
    fit: Callable[[pd.DataFrame], np.ndarray], frames: list[pd.DataFrame], pooled: np.ndarray
) -> str:
    """Each station alone against pooled: the largest relative deviation, per station."""
    out = []
    for frame in frames:
        try:
            out.append(f"{rel(fit(frame), pooled):.2g}")
        except Exception as exc:  # a station alone may be too small or separated
            out.append(f"fails ({type(exc).__name__})")
    return " / ".join(out)


# ------------------------------------------------------------------ data


def lung_sites() -> list[pd.DataFrame]:
    lung = load_lung().dropna(subset=["inst"])
    return [lung[lung["inst"].astype(int) % 3 == k].reset_index(drop=True) for k in range(3)]


def cancer_sites() -> list[pd.DataFrame]:
    frame = load_breast_cancer(as_frame=True).frame
    frame["malignant"] = 1 - frame.pop("target")
    rank = frame["mean radius"].rank(pct=True).to_numpy()
    noise = np.random.default_rng(7).normal(0, 0.6, len(frame))
    site = np.clip(np.floor(rank * 3 + noise), 0, 2).astype(int)
    return [frame[site == k].reset_index(drop=True) for k in range(3)]


# ------------------------------------------------------------------ the trains


def bench_linreg(tmp: Path, frames: list[pd.DataFrame]) -> list[Row]:
    covariates = ["age", "sex=2", "ph.ecog", "wt.loss"]
    params = {
        "outcome": "pat.karno",
        "covariates": covariates,
        "intercept": True,
        "min_rows": 10,
        "conf_level": 0.95,
    }
    result = run_route(configured("linreg", tmp / "linreg", **params), frames)

    def ols(frame: pd.DataFrame) -> Any:
        rows = frame.dropna(subset=["pat.karno", "age", "sex", "ph.ecog", "wt.loss"])
        return sm.OLS(rows["pat.karno"], indicators(rows, covariates, True)).fit()

    pooled = ols(pd.concat(frames))
    coef = result["coefficients"]
    names = ["intercept", *covariates]  # the pooled fit's order (state.json sorts its keys)
    est = [coef[n]["estimate"] for n in names]
    se = [coef[n]["se"] for n in names]
    lonely = local_only(lambda f: ols(f).params.to_numpy(), frames, pooled.params.to_numpy())
    return [
        row(
            "linreg",
            "lung: pat.karno ~ age+sex+ecog+wt.loss",
            "coefficients",
            rel(est, pooled.params),
            lonely,
            EXACT,
        ),
        row("linreg", "", "standard errors", rel(se, pooled.bse), "", EXACT),
        row(
            "linreg", "", "p-values", rel([coef[n]["p"] for n in names], pooled.pvalues), "", EXACT
        ),
    ]


def bench_logreg(tmp: Path, frames: list[pd.DataFrame]) -> list[Row]:
    covariates = ["mean radius", "mean texture", "mean smoothness", "mean concavity"]
    params = {
        "outcome": "malignant",
        "covariates": covariates,
        "intercept": True,
        "min_rows": 10,
        "tol": 1e-8,
        "conf_level": 0.95,
    }
    result = run_route(configured("logreg", tmp / "logreg", **params), frames, rounds=12)

    def logit(frame: pd.DataFrame) -> Any:
        return sm.Logit(frame["malignant"], indicators(frame, covariates, True)).fit(
            disp=0, tol=1e-12, maxiter=100
        )

    pooled = logit(pd.concat(frames))
    coef = result["coefficients"]
    names = ["intercept", *covariates]  # the pooled fit's order (state.json sorts its keys)
    est = [coef[n]["estimate"] for n in names]
    lonely = local_only(lambda f: logit(f).params.to_numpy(), frames, pooled.params.to_numpy())
    extra = f"converged={result['converged']} after {result['iterations']} rounds"
    return [
        row(
            "logreg",
            "breast cancer: malignant ~ 4 features",
            "coefficients",
            rel(est, pooled.params),
            lonely,
            EXACT,
            extra,
        ),
        row(
            "logreg",
            "",
            "standard errors",
            rel([coef[n]["se"] for n in names], pooled.bse),
            "",
            EXACT,
        ),
    ]


def bench_km(tmp: Path, frames: list[pd.DataFrame]) -> tuple[list[Row], dict[str, Any]]:
    params = {
        "time": "time",
        "event": "status",
        "group": "sex",
        "time_unit": 0,
        "min_at_risk": 5,
        "min_rows": 10,
        "conf_level": 0.95,
    }
    result = run_route(configured("km", tmp / "km", **params), frames)
    pooled = pd.concat(frames)
    worst_s = worst_ci = 0.0
    fitted = {}
    for label, got in result["curves"].items():
        part = pooled[pooled["sex"].astype(str) == label]
        kmf = KaplanMeierFitter().fit(part["time"], part["status"])
        fitted[label] = kmf
        times = np.asarray(got["time"])
        worst_s = max(worst_s, rel(got["survival"], kmf.survival_function_.loc[times].iloc[:, 0]))
        band = kmf.confidence_interval_.loc[times].to_numpy()
        worst_ci = max(worst_ci, rel(got["ci_low"], band[:, 0]), rel(got["ci_high"], band[:, 1]))

    def curve_gap(frame: pd.DataFrame) -> np.ndarray:
        # largest absolute gap of a station's own curve to the pooled one (both sexes)
        gaps = []
        for label, kmf in fitted.items():
            part = frame[frame["sex"].astype(str) == label]
            own = KaplanMeierFitter().fit(part["time"], part["status"])
            grid = kmf.survival_function_.index
            gaps.append(
                np.abs(
                    own.survival_function_at_times(grid).to_numpy()
                    - kmf.survival_function_.iloc[:, 0].to_numpy()
                ).max()
            )
        return np.array([max(gaps)])

    lonely = " / ".join(f"{curve_gap(f)[0]:.2g} abs" for f in frames)
    test = multivariate_logrank_test(pooled["time"], pooled["sex"], pooled["status"])
    rows = [
        row("km", "lung: survival by sex", "survival curve", worst_s, lonely, EXACT),
        row("km", "", "Greenwood band (log-log)", worst_ci, "", EXACT),
        row(
            "km",
            "",
            "log-rank chi2",
            rel(result["logrank"]["chi2"], test.test_statistic),
            "",
            EXACT,
            f"p={result['logrank']['p']:.2g}",
        ),
    ]
    return rows, {"result": result, "fitted": fitted}


def bench_cox(tmp: Path, frames: list[pd.DataFrame]) -> tuple[list[Row], dict[str, Any]]:
    covariates = ["age", "sex=2", "ph.ecog"]
    params = {
        "time": "time",
        "event": "status",
        "covariates": covariates,
        "time_unit": 0,
        "min_rows": 10,
        "tol": 1e-8,
        "conf_level": 0.95,
    }
    result = run_route(configured("cox", tmp / "cox", **params), frames, rounds=10)

    def phreg(frame: pd.DataFrame) -> Any:
        rows = frame.dropna(subset=["ph.ecog"])
        x = indicators(rows, covariates, False)
        return sm.PHReg(rows["time"], x, status=rows["status"], ties="breslow").fit()

    pooled = phreg(pd.concat(frames))
    coef = result["coefficients"]
    hr = [coef[n]["hazard_ratio"] for n in covariates]
    low = [coef[n]["hr_ci_low"] for n in covariates]
    lonely = local_only(lambda f: np.exp(phreg(f).params), frames, np.exp(pooled.params))
    rows = [
        row(
            "cox",
            "lung: age+sex+ecog, Breslow ties",
            "hazard ratios",
            rel(hr, np.exp(pooled.params)),
            lonely,
            EXACT,
            f"converged={result['converged']} after {result['iterations']} iterations",
        ),
        row(
            "cox",
            "",
            "standard errors",
            rel([coef[n]["se"] for n in covariates], pooled.bse),
            "",
            EXACT,
        ),
        row("cox", "", "HR 95% CI", rel(low, np.exp(pooled.conf_int()[:, 0])), "", EXACT),
    ]
    sites = [np.exp(phreg(f).conf_int()) for f in frames]
    site_hr = [np.exp(phreg(f).params) for f in frames]
    return rows, {
        "result": result,
        "names": covariates,  # the pooled fit's order (state.json sorts its keys)
        "pooled": pooled,
        "sites": list(zip(site_hr, sites, strict=True)),
    }


def bench_sgd(tmp: Path, frames: list[pd.DataFrame]) -> tuple[list[Row], dict[str, Any]]:
    covariates = [c for c in frames[0].columns if c != "malignant"]
    params = {
        "outcome": "malignant",
        "covariates": covariates,
        "alpha": 0.001,
        "learning_rate": "invscaling",
        "eta0": 0.1,
        "epochs_per_stop": 1,
        "test_fraction": 0.25,
        "seed": 0,
        "auc_bins": 1000,
        "min_rows": 10,
    }
    train_dir = configured("sgd", tmp / "sgd", **params)
    code = load_train_module(train_dir)  # the train's own split, so all arms see the same rows
    parts = [code.design(f, covariates, "malignant") for f in frames]
    masks = [code.held_out(len(y), 0.25, 0) for _, y in parts]
    test_x = np.vstack([x[m] for (x, _), m in zip(parts, masks, strict=True)])
    test_y = np.concatenate([y[m] for (_, y), m in zip(parts, masks, strict=True)])

    def centralised(xs: list[np.ndarray], ys: list[np.ndarray], passes: int) -> tuple[float, float]:
        x, y = np.vstack(xs), np.concatenate(ys)
        mean, scale = x.mean(0), x.std(0, ddof=1)
        model = SGDClassifier(
            loss="log_loss", alpha=0.001, learning_rate="invscaling", eta0=0.1, random_state=0
        )
        rng = np.random.default_rng(0)
        for _ in range(passes):
            order = rng.permutation(len(y))
            model.partial_fit((x[order] - mean) / scale, y[order], classes=[0, 1])
        score = model.decision_function((test_x - mean) / scale)
        return float(np.mean((score > 0) == test_y)), float(roc_auc_score(test_y, score))

    fit_x = [x[~m] for (x, _), m in zip(parts, masks, strict=True)]
    fit_y = [y[~m] for (_, y), m in zip(parts, masks, strict=True)]
    curve: list[dict[str, Any]] = []
    for rounds in (3, 4, 5, 7, 10, 14):
        fed = run_route(train_dir, frames, rounds=rounds)
        pooled_acc, pooled_auc = centralised(fit_x, fit_y, rounds - 2)
        alone = [centralised([x], [y], rounds - 2) for x, y in zip(fit_x, fit_y, strict=True)]
        curve.append(
            {
                "passes": rounds - 2,
                "fed": (fed["accuracy"], fed["auc"]),
                "pooled": (pooled_acc, pooled_auc),
                "alone": alone,
            }
        )
    n_test = len(test_y)
    rows = []
    data = f"breast cancer, 30 features, non-IID, {n_test} held out"
    for entry in curve:
        (fed_acc, fed_auc), (pool_acc, pool_auc) = entry["fed"], entry["pooled"]
        label = f"{entry['passes'] + 2} rounds"
        rows += [
            row(
                "sgd",
                data if entry is curve[0] else "",
                f"accuracy, {label}",
                fed_acc - pool_acc,
                " / ".join(f"{a[0]:.3f}" for a in entry["alone"]),
                SGD_TARGET,
                f"fed {fed_acc:.3f} vs pooled {pool_acc:.3f}",
                absolute=True,
            ),
            row(
                "sgd",
                "",
                f"AUC, {label}",
                fed_auc - pool_auc,
                " / ".join(f"{a[1]:.3f}" for a in entry["alone"]),
                SGD_TARGET,
                f"fed {fed_auc:.4f} vs pooled {pool_auc:.4f}",
                absolute=True,
            ),
        ]
    return rows, {"curve": curve}


FED_ROUNDS = (4, 7, 12, 22)  # rounds of the fedavg/fedprox routes: 2 fewer train


def bench_fed(tmp: Path, frames: list[pd.DataFrame]) -> tuple[list[Row], dict[str, Any]]:
    """FedAvg and FedProx over parallel rounds vs the same model trained by the same code on
    the pooled training rows (one epoch per round of training) vs each station alone."""
    covariates = [c for c in frames[0].columns if c != "malignant"]
    common = {
        "outcome": "malignant",
        "covariates": covariates,
        "epochs": 1,
        "batch_size": 16,
        "learning_rate": 0.1,
        "alpha": 0.001,
        "test_fraction": 0.25,
        "seed": 0,
        "auc_bins": 1000,
        "min_rows": 10,
    }
    trains = {
        "fedavg": configured("fedavg", tmp / "fedavg", **common),
        "fedprox": configured("fedprox", tmp / "fedprox", **common, mu=0.1),
    }
    core = load_train_module(trains["fedavg"]).core  # the train's own split and training
    parts = [core.design(f, covariates, "malignant") for f in frames]
    masks = [core.held_out(len(y), 0.25, 0) for _, y in parts]
    pairs = list(zip(parts, masks, strict=True))
    test_x = np.vstack([x[m] for (x, _), m in pairs])
    test_y = np.concatenate([y[m] for (_, y), m in pairs])
    fit = [(x[~m], y[~m]) for (x, y), m in pairs]

    def centralised(x: np.ndarray, y: np.ndarray, rounds: int) -> tuple[float, float]:
        scaler = core.merge_moments([core.moments(x)])
        w = np.zeros(x.shape[1] + 1)
        for r in range(1, rounds - 1):
            w = core.train_locally(w, core.standardise(scaler, x), y, common, [0, r])
        score = core.logits(w, core.standardise(scaler, test_x))
        return float(np.mean((score > 0) == test_y)), float(roc_auc_score(test_y, score))

    pooled_x, pooled_y = np.vstack([x for x, _ in fit]), np.concatenate([y for _, y in fit])
    curve: list[dict[str, Any]] = []
    for rounds in FED_ROUNDS:
        entry: dict[str, Any] = {
            "rounds": rounds,
            "pooled": centralised(pooled_x, pooled_y, rounds),
            "alone": [centralised(x, y, rounds) for x, y in fit],
        }
        for name, folder in trains.items():
            result = run_route(folder, frames, rounds, parallel=True)
            entry[name] = (result["accuracy"], result["auc"])
            entry[f"{name}_history"] = result["history"]
        curve.append(entry)
    rows = []
    data = f"breast cancer, 30 features, non-IID, {len(test_y)} held out"
    for name in trains:
        for entry in curve:
            (fed_acc, fed_auc), (pool_acc, pool_auc) = entry[name], entry["pooled"]
            label = f"{entry['rounds']} rounds ({entry['rounds'] - 2} epochs)"
            first = name != "fedavg" or entry is curve[0]
            rows += [
                row(
                    name,
                    data if first and entry is curve[0] else "",
                    f"accuracy, {label}",
                    fed_acc - pool_acc,
                    " / ".join(f"{a[0]:.3f}" for a in entry["alone"]),
                    SGD_TARGET,
                    f"fed {fed_acc:.3f} vs pooled {pool_acc:.3f}",
                    absolute=True,
                ),
                row(
                    name,
                    "",
                    f"AUC, {label}",
                    fed_auc - pool_auc,
                    " / ".join(f"{a[1]:.3f}" for a in entry["alone"]),
                    SGD_TARGET,
                    f"fed {fed_auc:.4f} vs pooled {pool_auc:.4f}",
                    absolute=True,
                ),
            ]
    return rows, {"curve": curve}


SECURE_TARGET = 1e-9  # secure = true equals the unmasked result to this relative difference


def bench_secure(tmp: Path, lung: list[pd.DataFrame], cancer: list[pd.DataFrame]) -> list[Row]:
    """secure = true against the same train unmasked, on the same data and parameters: every
    hop with the stations' real masks (tests/secure_route.py: station.secure_masking around
    trains.runtime.run_train, one X25519 key per station). Fixed point 2^-32."""
    import sys

    sys.path.insert(0, str(ROOT))  # the route harness lives with the tests
    from tests.secure_route import run_secure_route, secure_copy

    linreg = {"outcome": "pat.karno", "covariates": ["age", "sex=2", "ph.ecog", "wt.loss"]}
    logreg = {"outcome": "malignant", "covariates": ["mean radius", "mean texture"], "tol": 1e-8}
    km = {"time": "time", "event": "status", "group": "sex", "time_unit": 1}
    cox = {"time": "time", "event": "status", "covariates": ["age", "sex=2"], "time_unit": 1}
    fed = {"outcome": "malignant", "covariates": ["mean radius", "mean texture", "mean area"]}
    cases: list[tuple[str, list[pd.DataFrame], dict[str, Any], int, bool, str]] = [
        ("cohort", lung, {}, 1, False, "numeric"),
        ("linreg", lung, linreg, 1, False, "coefficients"),
        ("logreg", cancer, logreg, 8, False, "coefficients"),
        ("km", lung, km, 1, False, "curves"),
        ("cox", lung, cox, 8, False, "coefficients"),
        ("fedavg", cancer, fed, 5, True, "model"),
        ("fedprox", cancer, fed, 5, True, "model"),
    ]
    extra = {"km": {"max_time": 1100, "levels": {"sex": ["1", "2"]}}, "cox": {"max_time": 1100}}
    rows = []
    for train, frames, params, rounds, parallel, key in cases:
        plain = secure_copy(REFERENCE / train, tmp / f"{train}-plain", False, **params)
        masked = secure_copy(
            REFERENCE / train, tmp / f"{train}-secure", **params, **extra.get(train, {})
        )
        a = run_route(plain, frames, rounds, parallel)
        b = run_secure_route(masked, frames, rounds, parallel).state
        assert b is not None
        pairs = zip(_numbers(b[key]), _numbers(a[key]), strict=True)
        diff = max(rel(x, y) for x, y in pairs)
        rows.append(
            row(train, "secure", f"secure=true vs unmasked: {key}", diff, "", SECURE_TARGET)
        )
    return rows


SKIPPED = ("min", "max", "p", "t", "z", "ci_low", "ci_high", "odds_ratio")


def _numbers(value: Any) -> list[float]:
    """Every number in a result, in order: estimates, standard errors, counts, curves,
    weights. Left out: min and max (not sums, so not published under secure) and what is
    derived from an estimate and its standard error (p-values, which amplify a relative
    difference by z^2 in the tail, and intervals)."""
    if isinstance(value, dict):
        return [x for k in sorted(value) if k not in SKIPPED for x in _numbers(value[k])]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return [] if value is None or isinstance(value, (str, bool)) else [float(value)]


def row(
    train: str,
    data: str,
    quantity: str,
    diff: float,
    alone: str,
    target: float,
    note: str = "",
    absolute: bool = False,
) -> Row:
    return {
        "train": train,
        "data": data,
        "quantity": quantity,
        "diff": diff,
        "alone": alone,
        "target": target,
        "ok": abs(diff) <= target,
        "note": note,
        "absolute": absolute,
    }


# ------------------------------------------------------------------ report


def fmt_diff(r: Row) -> str:
    return f"{r['diff'] * 100:+.2f} pp" if r["absolute"] else f"{r['diff']:.1e}"


def markdown(rows: list[Row], seconds: float) -> str:
    lines = [
        "# Quality of the reference trains: federated vs pooled vs local-only",
        "",
        "Produced by `python3 benchmarks/quality.py` (every train run in-process through",
        "`trains.runtime.run_train`, the code the containers run, over three stations).",
        "Exact trains: largest relative difference to the same method on the pooled data",
        f"(target {EXACT:g}). SGD, FedAvg, FedProx: federated minus pooled, in percentage",
        f"points (target {SGD_TARGET * 100:g} pp); pooled is the same model trained by the same",
        "code on all training rows in one place for as many epochs. *Local-only*: each",
        "station's own fit against the pooled one (largest relative deviation; KM: largest",
        "absolute gap of the survival curve; SGD, FedAvg, FedProx: each station's model, trained",
        "alone, on all held-out rows) - what a station learns alone.",
        "",
        "Data: NCCTG lung cancer (lifelines; 227 patients, institutions spread over 3 stations",
        "by `inst % 3`: 77 / 105 / 45 patients) and Wisconsin breast cancer (scikit-learn; 569",
        "tumours split non-IID by size: 215 / 179 / 175, 8% / 30% / 81% malignant).",
        "",
        "| train | data | quantity | federated vs pooled | local-only (station 1 / 2 / 3) "
        "| target | met | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = f"{r['target'] * 100:g} pp" if r["absolute"] else f"{r['target']:g}"
        lines.append(
            f"| {r['train']} | {r['data']} | {r['quantity']} | {fmt_diff(r)} | {r['alone']} "
            f"| {target} | {'yes' if r['ok'] else '**no**'} | {r['note']} |"
        )
    lines += [
        "",
        "SGD is not exact: one model travels the stations in order, so after every round it",
        "has last seen the third station (81% malignant) and its intercept leans that way;",
        "the decreasing step size (`invscaling`) shrinks that pull with every pass. The gap",
        "counts whole held-out tumours: 1 of them is 0.70 pp. AUC (ranking) stays within",
        "0.5 pp from the first pass on; accuracy (one threshold) needs about 8 passes to come",
        "within 1 pp. Each station alone does worse on the other stations' tumours.",
        "",
        "FedAvg and FedProx run on parallel rounds: every station trains the global model",
        "for one epoch of mini-batch gradient descent (batch 16, step 0.1), the aggregator",
        "averages the three models weighted by row counts. Averaging removes SGD's order",
        "effect: at every measured length (2 to 20 rounds of training) both stay within",
        "0.7 pp (one held-out tumour) of the pooled model's accuracy and within 0.12 pp of",
        "its AUC, on a split where the stations differ strongly (8% / 30% / 81%",
        "malignant), while each station alone misses by up to 16 pp (accuracy) after 2",
        "rounds and 3.5 pp after 20. FLamby's Fed-Heart-Disease (Ogier du Terrail et al.,",
        "NeurIPS 2022) reports FedAvg several points below pooled; this split is easier (a",
        "well-separated outcome, a convex model, one local epoch per round), so do not read",
        "these numbers as a promise for harder data. FedProx (mu = 0.1) differs from FedAvg",
        "by less than one held-out tumour here: with one local epoch the stations' models",
        "drift little from the global one, which is the drift the proximal term limits.",
        "The accuracy and AUC are those of the final global model, scored by every station",
        "on its own held-out rows in the last round and summed as counts at the aggregator.",
        "",
        "![federated vs pooled](quality.png)",
        "",
        f"Run time of the whole benchmark: {seconds:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def plot(
    km: dict[str, Any], cox: dict[str, Any], sgd: dict[str, Any], fed: dict[str, Any], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    ax = axes[0]
    for label, got in km["result"]["curves"].items():
        name = {"1": "male", "2": "female"}.get(label, label)
        km["fitted"][label].plot_survival_function(ax=ax, ci_show=True, label=f"pooled {name}")
        ax.plot(got["time"], got["survival"], "k.", markersize=3)
    ax.plot([], [], "k.", label="federated (3 stations)")
    ax.set(title="Kaplan-Meier, lung, by sex", xlabel="days", ylabel="survival")
    ax.legend(fontsize=8)

    ax = axes[1]
    names = cox["names"]
    pooled_ci = np.exp(cox["pooled"].conf_int())
    for i, name in enumerate(names):
        got = cox["result"]["coefficients"][name]
        ax.errorbar(
            got["hazard_ratio"],
            i,
            fmt="ko",
            xerr=[
                [got["hazard_ratio"] - got["hr_ci_low"]],
                [got["hr_ci_high"] - got["hazard_ratio"]],
            ],
            label="federated" if i == 0 else None,
        )
        ax.plot(pooled_ci[i], [i + 0.12] * 2, "r-", label="pooled 95% CI" if i == 0 else None)
        for k, (hr, ci) in enumerate(cox["sites"]):
            ax.errorbar(
                hr[i],
                i - 0.15 - 0.1 * k,
                xerr=[[hr[i] - ci[i, 0]], [ci[i, 1] - hr[i]]],
                fmt="s",
                color="0.6",
                markersize=3,
                label="each station alone" if i == 0 and k == 0 else None,
            )
    ax.axvline(1.0, color="0.8", zorder=0)
    ax.set_yticks(range(len(names)), names)
    ax.set(title="Cox hazard ratios, lung (Breslow)", xlabel="hazard ratio", xscale="log")
    ax.set_xticks([0.25, 0.5, 1, 2, 4], ["0.25", "0.5", "1", "2", "4"])
    ax.minorticks_off()
    ax.legend(fontsize=8)

    ax = axes[2]
    passes = [c["passes"] for c in sgd["curve"]]
    ax.plot(passes, [c["fed"][1] for c in sgd["curve"]], "ko-", label="federated AUC")
    ax.plot(passes, [c["pooled"][1] for c in sgd["curve"]], "r^--", label="pooled AUC")
    ax.plot(
        passes, [c["fed"][0] for c in sgd["curve"]], "ks-", mfc="none", label="federated accuracy"
    )
    ax.plot(
        passes, [c["pooled"][0] for c in sgd["curve"]], "r^:", mfc="none", label="pooled accuracy"
    )
    for k in range(3):
        ax.plot(
            passes,
            [c["alone"][k][0] for c in sgd["curve"]],
            color="0.6",
            lw=1,
            label="station alone, accuracy" if k == 0 else None,
        )
    ax.set(
        title="SGD, breast cancer (non-IID)",
        xlabel="training passes (rounds - 2)",
        ylabel="held-out score",
    )
    ax.legend(fontsize=8)

    ax = axes[3]
    last = fed["curve"][-1]
    for name, style in (("fedavg", "ko-"), ("fedprox", "bs--")):
        history = last[f"{name}_history"]
        epochs = [h["round"] - 1 for h in history]
        ax.plot(epochs, [h["auc"] for h in history], style, ms=3, label=f"{name} AUC")
        ax.plot(epochs, [h["accuracy"] for h in history], style, ms=3, mfc="none", alpha=0.6,
                label=f"{name} accuracy")  # fmt: skip
    for c in fed["curve"]:
        ax.plot(c["rounds"] - 2, c["pooled"][1], "r^", label="pooled AUC" if c is last else None)
        ax.plot(c["rounds"] - 2, c["pooled"][0], "rv", mfc="none",
                label="pooled accuracy" if c is last else None)  # fmt: skip
    ax.set(
        title="FedAvg / FedProx, breast cancer (non-IID)",
        xlabel="rounds of training (epochs)",
        ylabel="held-out score",
        ylim=(0.9, 1.0),
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------ differential privacy


DP_EPSILONS = (0.1, 1.0, 10.0)


def bench_dp(frames: list[pd.DataFrame], releases: int = 100) -> list[Row]:
    """The error of DP releases (station.privacy.apply_dp, a station with ``mode =
    "required"``) against the exact value, at each ε in DP_EPSILONS: one release holds a
    frequency table (sex x ECOG), the pooled Kaplan-Meier curve (steps with at least 5 at
    risk), the mean age (bounds [18, 100]) and the curve again on a 60-day grid, so ε is
    split over 7 noised parts. Each row
    is the mean over ``releases`` releases of the mean absolute error per value."""
    from station.audit import AuditLog
    from station.config import PrivacyPolicy
    from station.privacy import apply_dp
    from station.privacy_ledger import BudgetLedger
    from trains.published import FrequencyTable, Statistic, SurvivalCurve

    pooled = pd.concat(frames)
    table = pooled.dropna(subset=["ph.ecog"]).query("`ph.ecog` < 3")
    crosstab = pd.crosstab(table["sex"], table["ph.ecog"])
    frequency = FrequencyTable(
        "sex x ecog",
        [str(v) for v in crosstab.index],
        [str(v) for v in crosstab.columns],
        crosstab.to_numpy().astype(int).tolist(),
    )

    def km_curve(name: str, time: pd.Series) -> tuple[SurvivalCurve, KaplanMeierFitter]:
        kmf = KaplanMeierFitter().fit(time, pooled["status"])
        steps = kmf.event_table[kmf.event_table["observed"] > 0]
        steps = steps[steps["at_risk"] >= 5]
        curve = SurvivalCurve(
            name,
            [float(t) for t in steps.index],
            steps["at_risk"].astype(int).tolist(),
            steps["observed"].astype(int).tolist(),
        )
        return curve, kmf

    curve, kmf = km_curve("lung km", pooled["time"])
    # the same curve on a 60-day grid: 15 steps instead of 130, each summing fewer noises
    grid, grid_kmf = km_curve("lung km, 60-day grid", np.ceil(pooled["time"] / 60) * 60)
    exact_median = float(kmf.median_survival_time_)
    age = Statistic("mean age", "mean", float(pooled["age"].mean()), len(pooled), (18.0, 100.0))
    exact_cells = np.array(frequency.counts, dtype=float)
    rows: list[Row] = []
    for epsilon in DP_EPSILONS:
        privacy = PrivacyPolicy(mode="required", epsilon_per_release=epsilon, budget=10_000)
        errors: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            ledger = BudgetLedger(Path(tmp), AuditLog(Path(tmp) / "audit.jsonl"))
            for _ in range(releases):
                out, _ = apply_dp([frequency, curve, age, grid], privacy, ledger, "bench", ["lung"])
                noisy_table, noisy_curve, noisy_age, noisy_grid = out
                assert isinstance(noisy_table, FrequencyTable)
                assert isinstance(noisy_curve, SurvivalCurve)
                assert isinstance(noisy_age, Statistic)
                assert isinstance(noisy_grid, SurvivalCurve)
                cells = np.array(noisy_table.counts, dtype=float)
                found = {
                    "table cells (counts)": np.abs(cells - exact_cells).mean(),
                    "km at risk": np.abs(np.subtract(noisy_curve.at_risk, curve.at_risk)).mean(),
                    "km events": np.abs(np.subtract(noisy_curve.events, curve.events)).mean(),
                    "km survival (largest gap)": np.abs(
                        np.subtract(
                            noisy_curve.survival,
                            kmf.survival_function_at_times(curve.times).to_numpy(),
                        )
                    ).max(),
                    "km median (days)": abs((noisy_curve.median or np.nan) - exact_median),
                    "mean age (years)": abs((noisy_age.value or np.nan) - (age.value or 0.0)),
                    "mean age n": abs(noisy_age.n - age.n),
                    "km 60-day grid: at risk": np.abs(
                        np.subtract(noisy_grid.at_risk, grid.at_risk)
                    ).mean(),
                    "km 60-day grid: survival gap": np.abs(
                        np.subtract(
                            noisy_grid.survival,
                            grid_kmf.survival_function_at_times(grid.times).to_numpy(),
                        )
                    ).max(),
                }
                for name, value in found.items():
                    errors.setdefault(name, []).append(float(value))
        for name, values in errors.items():
            mean = float(np.nanmean(values))
            missing = int(np.isnan(values).sum())
            note = f"none released (null) in {missing}/{releases} releases" if missing else ""
            rows.append({"epsilon": epsilon, "quantity": name, "error": mean, "note": note})
    return rows


def dp_markdown(rows: list[Row]) -> str:
    """The DP error table (``bench_dp``) as a section of docs/quality.md."""
    lines = [
        "",
        "## Differential privacy: error of a noisy release against the exact value",
        "",
        'A station with `[policy.privacy] mode = "required"` (Laplace; station.privacy): one',
        "release of a frequency table (sex x ECOG, NCCTG lung), the pooled Kaplan-Meier curve",
        "(daily, and on a 60-day grid) and the mean age, ε split over 7 parts; mean absolute",
        "error over 100 releases (survival: the largest gap along the curve).",
        "",
        "| ε | quantity | mean absolute error | note |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['epsilon']:g} | {r['quantity']} | {r['error']:.3g} | {r['note']} |" for r in rows
    ]
    return "\n".join(lines) + "\n"


def print_dp(rows: list[Row]) -> None:
    print(f"{'ε':>5} {'DP release: quantity':28} {'mean abs error':>14}")
    for r in rows:
        print(f"{r['epsilon']:>5g} {r['quantity']:28} {r['error']:>14.3g}  {r['note']}")


def main() -> int:
    warnings.simplefilter("ignore")  # statsmodels and lifelines chatter about versions
    started = time.perf_counter()
    lung, cancer = lung_sites(), cancer_sites()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        rows = bench_linreg(base, lung) + bench_logreg(base, cancer)
        km_rows, km = bench_km(base, lung)
        cox_rows, cox = bench_cox(base, lung)
        sgd_rows, sgd = bench_sgd(base, cancer)
        fed_rows, fed = bench_fed(base, cancer)
        secure_rows = bench_secure(base, lung, cancer)
    dp_rows = bench_dp(lung)
    rows += km_rows + cox_rows + sgd_rows + fed_rows + secure_rows
    seconds = time.perf_counter() - started
    print(f"{'train':7} {'quantity':26} {'fed vs pooled':>14}  {'met':4} local-only")
    for r in rows:
        print(
            f"{r['train']:7} {r['quantity']:32} {fmt_diff(r):>14}  "
            f"{'yes' if r['ok'] else 'NO':4} {r['alone']}  {r['note']}"
        )
    released = release_rows(PUBLISHED, FULL, km["fitted"])
    print(f"\n{'train':7} {'quantities':>10} {'released':>9} {'suppressed':>10}  released vs exact")
    for r in released:
        print(
            f"{r['train']:7} {r['quantities']:>10} {r['released']:>9} {r['suppressed']:>10}  "
            f"{r['worst']:.1e}"
        )
    print_dp(dp_rows)
    DOCS.mkdir(exist_ok=True)
    (DOCS / "quality.md").write_text(
        markdown(rows, seconds) + release_markdown(released) + dp_markdown(dp_rows)
    )
    plot(km, cox, sgd, fed, DOCS / "quality.png")
    print(f"wrote {DOCS / 'quality.md'} and {DOCS / 'quality.png'} ({seconds:.0f} s)")
    # the exact trains must meet their target; sgd is reported (see docs/quality.md)
    return 0 if all(r["ok"] for r in rows if not r["absolute"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
