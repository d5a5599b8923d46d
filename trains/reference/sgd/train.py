"""Incremental logistic model by stochastic gradient descent, carried along the route.

A single model travels: at each visit a stop continues training scikit-learn's
SGDClassifier(loss="log_loss") with ``partial_fit`` on its own rows (Robbins & Monro's
stochastic approximation; the sequential "cyclic institutional incremental learning" of
Chang et al., JAMIA 2018). Nothing is pickled: the coefficients, intercept, classes and
step counter travel as JSON lists and the model is rebuilt at each hop. Round 0 sums the
standardisation statistics (Chan et al.'s merge of means and squared deviations); the last
round scores every stop's held-out rows and sums a confusion table and per-class score
histograms, from which ``finalize`` reports accuracy and AUC. Unlike the exact trains this
is approximate: the result depends on stop order and on how the data differ between sites.
"""

import numpy as np
from sklearn.linear_model import SGDClassifier

from trains.runtime.design import column as _column
from trains.runtime.design import (
    complete_cases,
    require_binary_outcome,
    require_min_rows,
    the_dataset,
)


def design(frame, covariates, outcome):
    """Complete-case feature matrix X and 0/1 outcome y."""
    rows = complete_cases(frame, [*covariates, outcome])
    x = np.column_stack([_column(rows, item) for item in covariates])
    y = require_binary_outcome(_column(rows, outcome), outcome)
    return x, y.astype(int)


def held_out(n, fraction, seed):
    """Deterministic held-out mask: the same rows every round at a given station."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[: round(fraction * n)]] = True
    return mask


def _merge_moments(state, x):
    n_b, mean_b = len(x), x.mean(0)
    m2_b = ((x - mean_b) ** 2).sum(0)
    if "n" not in state:
        state.update(n=n_b, mean=mean_b, m2=m2_b)
        return
    n_a, mean_a, m2_a = state["n"], np.asarray(state["mean"]), np.asarray(state["m2"])
    n = n_a + n_b
    delta = mean_b - mean_a
    state.update(n=n, mean=mean_a + delta * n_b / n, m2=m2_a + m2_b + delta**2 * n_a * n_b / n)


def standardise(state, x):
    scale = np.sqrt(np.asarray(state["m2"]) / (state["n"] - 1))
    return (x - np.asarray(state["mean"])) / np.where(scale > 0, scale, 1.0)


def train_here(state, x, y, p, hop):
    model = SGDClassifier(
        loss="log_loss",
        alpha=float(p.get("alpha", 1e-3)),
        learning_rate=str(p.get("learning_rate", "invscaling")),
        eta0=float(p.get("eta0", 0.1)),
        random_state=int(p.get("seed", 0)) + hop,
    )
    if "coef" in state:  # continue the travelling model where the previous stop left it
        model.coef_ = np.asarray(state["coef"], dtype=float)
        model.intercept_ = np.asarray(state["intercept"], dtype=float)
        model.classes_ = np.asarray(state["classes"])
        model.t_ = float(state["t"])
    for _ in range(int(p.get("epochs_per_stop", 1))):
        model.partial_fit(x, y, classes=np.array([0, 1]))
    state.update(
        coef=model.coef_,
        intercept=model.intercept_,
        classes=model.classes_,
        t=model.t_,
        passes=state.get("passes", 0) + 1,
    )


def evaluate_here(state, x, y, bins):
    coef, intercept = np.asarray(state["coef"], dtype=float), np.asarray(state["intercept"])
    logit = x @ coef.ravel() + intercept[0]
    score = 1.0 / (1.0 + np.exp(-logit))
    predicted = (logit > 0).astype(int)
    # histograms of the logit (clipped to +-8), where scores spread out more than in [0, 1]
    edges = np.linspace(-8.0, 8.0, bins + 1)
    logit = np.clip(logit, -8.0, 8.0)
    sums = state.setdefault(
        "evaluation",
        {
            "n": 0,
            "correct": 0,
            "log_loss": 0.0,
            "positive": np.zeros(bins),
            "negative": np.zeros(bins),
        },
    )
    clipped = np.clip(score, 1e-15, 1 - 1e-15)
    sums["n"] += len(y)
    sums["correct"] += int((predicted == y).sum())
    sums["log_loss"] += float(-(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)).sum())
    sums["positive"] = np.asarray(sums["positive"]) + np.histogram(logit[y == 1], edges)[0]
    sums["negative"] = np.asarray(sums["negative"]) + np.histogram(logit[y == 0], edges)[0]


def local(data, state, ctx):
    p = ctx.params
    if ctx.rounds < 3:
        raise ValueError(
            "the sgd train needs at least 3 rounds (standardise, train, evaluate); "
            "submit with e.g. --rounds 7"
        )
    x, y = design(the_dataset(data), p["covariates"], p["outcome"])
    require_min_rows(len(y), ctx)
    state = state or {"columns": list(p["covariates"]), "scaler": {}}
    state["site_min_n"] = min(int(state.get("site_min_n", len(y))), len(y))  # for release
    test = held_out(len(y), float(p.get("test_fraction", 0.25)), int(p.get("seed", 0)))
    if ctx.round == 0:
        _merge_moments(state["scaler"], x[~test])
    elif ctx.round < ctx.rounds - 1:
        train_here(state, standardise(state["scaler"], x[~test]), y[~test], p, ctx.hop)
    else:
        evaluate_here(
            state, standardise(state["scaler"], x[test]), y[test], int(p.get("auc_bins", 1000))
        )
    return state


def binned_auc(positive, negative):
    """Mann-Whitney AUC from score histograms; pairs in one bin count as ties (half)."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    below = np.concatenate([[0.0], np.cumsum(negative)[:-1]])
    pairs = positive.sum() * negative.sum()
    return float((positive * (below + 0.5 * negative)).sum() / pairs) if pairs else None


def finalize(state, ctx):
    ev = state["evaluation"]
    scaler = state["scaler"]
    publish_model(ctx, state, ev, scaler["n"])
    return {
        "method": "sgd",
        "passes": state["passes"],
        "n_train": scaler["n"],
        "n_test": ev["n"],
        "accuracy": ev["correct"] / ev["n"],
        "auc": binned_auc(ev["positive"], ev["negative"]),
        "log_loss": ev["log_loss"] / ev["n"],
        "model": {
            "columns": state["columns"],
            "coef": np.asarray(state["coef"]).ravel(),
            "intercept": float(np.asarray(state["intercept"])[0]),
            "mean": scaler["mean"],
            "scale": np.sqrt(np.asarray(scaler["m2"]) / (scaler["n"] - 1)),
        },
    }


def publish_model(ctx, state, ev, n_train):
    """What leaves a station, typed: the weights and the standardisation as model
    parameters (withheld if a site had fewer than k rows), the held-out scores."""
    site_min_n = int(state.get("site_min_n", 0))
    weights = [*np.asarray(state["intercept"]).ravel(), *np.asarray(state["coef"]).ravel()]
    ctx.publish.model_parameters("model/weights", weights, n_train, site_min_n)
    scaler = state["scaler"]
    scale = np.sqrt(np.asarray(scaler["m2"]) / (scaler["n"] - 1))
    standardise = [*np.asarray(scaler["mean"]).ravel(), *scale.ravel()]
    ctx.publish.model_parameters("model/standardisation", standardise, n_train, site_min_n)
    ctx.publish.statistic("accuracy", "proportion", ev["correct"] / ev["n"], ev["n"])
    ctx.publish.statistic("auc", "other", binned_auc(ev["positive"], ev["negative"]), ev["n"])
    ctx.publish.statistic("log_loss", "mean", ev["log_loss"] / ev["n"], ev["n"])
