"""Federated averaging of a logistic model over parallel rounds: the part FedAvg and FedProx
share.

Part of the runtime, so it is in every base image: the FedAvg and FedProx reference trains
(``trains/reference/fedavg``, ``fedprox``) import it as ``from trains.runtime import
fedavg``. The two trains differ only in the extra gradient term of local training, which
their ``train.py`` hands to ``local``. Like the rest of the runtime it uses only numpy.

Rounds (``--rounds R``, at least 3):

* round 0: each stop reports the mean and squared deviations of its training rows; the
  aggregator merges them (Chan et al.'s update) into the standardisation every stop uses,
  and starts the model at zero (deterministic);
* rounds 1 .. R-2: each stop scores the global model it received on its held-out rows,
  then trains it for ``epochs`` passes of mini-batch gradient descent over its training
  rows and returns the weights and its row count ``n``; the aggregator takes the
  n-weighted average (McMahan et al., AISTATS 2017);
* round R-1: each stop only scores the final model; ``finalize`` publishes the model and
  the accuracy and AUC summed over every stop's held-out rows.

Ending early (``stop_early = true`` and ``tol`` in train.toml; ``converged`` below): the
aggregate of a training round records ``change``, the largest change of any weight that
round's averaging made. Below ``tol``, the route ends at that aggregate hop (trains/
early_end.py): the researcher gets the model it just averaged, and the held-out scores the
stops sent in that same round, which are those of the model one averaging earlier (at most
``change`` away in every weight). ``finalize`` publishes which model the scores belong to
(``training_rounds`` and ``scored_model_training_rounds``, published only then: after every
round the scores are the published model's, and what is published is as before).

The aggregator never sees a row: scores come to it as counts (a confusion count and
per-class histograms of the held-out logits). Weights travel as JSON lists, never pickled.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trains.runtime.core import Context
from trains.runtime.design import column as _column
from trains.runtime.design import (
    complete_cases,
    require_binary_outcome,
    require_min_rows,
    the_dataset,
)
from trains.runtime.fedavg_scores import EVALUATION, evaluate, scores, sum_evaluations
from trains.runtime.secure import is_secure, sum_partials, sum_parts

Array = npt.NDArray[Any]
Gradient = Callable[[Array, Array], Array]


def design(frame: pd.DataFrame, covariates: list[str], outcome: str) -> tuple[Array, Array]:
    """Complete-case feature matrix X and 0/1 outcome y."""
    rows = complete_cases(frame, [*covariates, outcome])
    x = np.column_stack([_column(rows, item) for item in covariates])
    y = require_binary_outcome(_column(rows, outcome), outcome)
    return x, y


def held_out(n: int, fraction: float, seed: int) -> Array:
    """Deterministic held-out mask: the same rows in every round at a given station."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[: round(fraction * n)]] = True
    return mask


def moments(x: Array) -> dict[str, Any]:
    mean = x.mean(0)
    return {"n": len(x), "mean": mean, "m2": ((x - mean) ** 2).sum(0)}


def merge_moments(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled n, mean and squared deviations from each stop's (Chan et al. 1979)."""
    n, mean, m2 = 0, 0.0, 0.0
    for part in parts:
        n_b, mean_b, m2_b = part["n"], np.asarray(part["mean"]), np.asarray(part["m2"])
        delta = mean_b - mean
        total = n + n_b
        mean, m2 = mean + delta * n_b / total, m2 + m2_b + delta**2 * n * n_b / total
        n = total
    return {"n": n, "mean": mean, "m2": m2}


def scale_of(scaler: dict[str, Any]) -> Array:
    scale = np.sqrt(np.asarray(scaler["m2"]) / (scaler["n"] - 1))
    return np.where(scale > 0, scale, 1.0)


def standardise(scaler: dict[str, Any], x: Array) -> Array:
    standardised: Array = (x - np.asarray(scaler["mean"])) / scale_of(scaler)
    return standardised


def logits(weights: Array, x: Array) -> Array:
    """weights = [intercept, coef_1 .. coef_p] on the standardised scale."""
    scores: Array = weights[0] + x @ weights[1:]
    return scores


def train_locally(
    weights: Array,
    x: Array,
    y: Array,
    params: dict[str, Any],
    seed: Any,
    extra_gradient: Gradient | None = None,
) -> Array:
    """``epochs`` passes of mini-batch gradient descent on the mean log-loss plus
    alpha/2 * ||coef||^2 (the intercept is not penalised), starting from ``weights``."""
    start = np.asarray(weights, dtype=np.float64)
    w = start.copy()
    lr, alpha = float(params.get("learning_rate", 0.1)), float(params.get("alpha", 1e-3))
    batch = int(params.get("batch_size", 16))
    rng = np.random.default_rng(seed)
    for _ in range(int(params.get("epochs", 1))):
        order = rng.permutation(len(y))
        for lo in range(0, len(y), batch):
            rows = order[lo : lo + batch]
            xb = x[rows]
            error = 1.0 / (1.0 + np.exp(-logits(w, xb))) - y[rows]
            grad = np.concatenate([[error.mean()], xb.T @ error / len(rows)])
            grad[1:] += alpha * w[1:]
            if extra_gradient is not None:
                grad += extra_gradient(w, start)
            w -= lr * grad
    return w


# ------------------------------------------------------------------ the train functions


def local(
    data: dict[str, pd.DataFrame],
    state: dict[str, Any] | None,
    ctx: Context,
    extra_gradient: Gradient | None = None,
) -> dict[str, Any]:
    """One stop of one round: statistics (round 0), score + train, or score only (last)."""
    p = ctx.params
    if ctx.rounds < 3:
        raise ValueError(
            "this train needs at least 3 rounds (standardise, train, evaluate); "
            "submit with e.g. --rounds 12"
        )
    if (state is not None) != (ctx.round > 0) or (state or {}).get("kind", "global") != "global":
        raise ValueError(
            "this train runs on parallel rounds: every stop starts from the global model of "
            "the aggregator stop; submit it with an aggregator, not on a sequential route"
        )
    frame = the_dataset(data)  # whatever name train.toml gives it ("cohort" by default)
    x, y = design(frame, p["covariates"], p["outcome"])
    require_min_rows(len(y), ctx)
    seed = int(p.get("seed", 0))
    test = held_out(len(y), float(p.get("test_fraction", 0.25)), seed)
    out = {"kind": "partial", "round": ctx.round, "columns": list(p["covariates"])}
    if state is None:  # round 0 (checked above)
        if is_secure(ctx):  # as sums: masked, they add up at the aggregator
            train = x[~test]
            sum_parts(
                ctx, None, {"n": len(train), "sum": train.sum(0), "squares": (train**2).sum(0)}
            )
            return out
        return out | {"moments": moments(x[~test])}
    scaler, weights = state["scaler"], np.asarray(state["weights"], dtype=np.float64)
    out |= {"scaler": scaler, "history": state["history"], "n": int((~test).sum())}
    # the global model it started from (every stop got it in the clear): the aggregate
    # measures how far this round's averaging moved it
    out["started_from"] = weights
    out["evaluation"] = evaluate(
        weights, standardise(scaler, x[test]), y[test], int(p.get("auc_bins", 1000))
    )
    if ctx.round == ctx.rounds - 1:
        return _secured(out | {"weights": weights}, ctx)  # the last round only scores
    trained = train_locally(
        weights,
        standardise(scaler, x[~test]),
        y[~test],
        p,
        [seed, ctx.round, ctx.stop],
        extra_gradient,
    )
    return _secured(out | {"weights": trained}, ctx)


def _secured(out: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """With secure = true the stop's row count, its n-weighted weights and its held-out
    scores go to the masked sums; the global model it started from stays in the state."""
    if not is_secure(ctx):
        return out
    n, evaluation = out.pop("n"), out.pop("evaluation")
    parts = {f"evaluation/{k}": v for k, v in evaluation.items()} | {"n": n}
    if ctx.round < ctx.rounds - 1:
        parts["weighted"] = n * np.asarray(out.pop("weights"), dtype=np.float64)
    sum_parts(ctx, None, parts)
    return out


def _secure_aggregate(
    states: list[dict[str, Any]], out: dict[str, Any], ctx: Context
) -> dict[str, Any]:
    """The aggregate from the round's masked sums (the masks cancel in their sum)."""
    if ctx.round == 0:
        sums = sum_partials(ctx, states, ["n", "sum", "squares"])
        n, total = round(sums["n"]), np.asarray(sums["sum"])
        mean = total / n
        scaler = {"n": n, "mean": mean, "m2": np.asarray(sums["squares"]) - total * mean}
        return out | {"scaler": scaler, "weights": np.zeros(len(out["columns"]) + 1), "history": []}
    names = ["n", *(f"evaluation/{k}" for k in EVALUATION)]
    last = ctx.round == ctx.rounds - 1
    sums = sum_partials(ctx, states, names if last else [*names, "weighted"])
    evaluation = {k: sums[f"evaluation/{k}"] for k in EVALUATION}
    for k in ("n", "correct"):
        evaluation[k] = round(evaluation[k])
    n_train = round(sums["n"])
    out |= {
        "scaler": _agree(states, "scaler"),
        "history": [*_agree(states, "history"), scores(evaluation, ctx.round)],
        "n_train": n_train,
        # masked, no site's own row count reaches the aggregator; every stop that took
        # part passed require_min_rows, so min_rows is the smallest a site can have had
        "site_min_n": int(ctx.params.get("min_rows", 10)),
    }
    if last:
        return out | {"weights": _agree(states, "weights"), "evaluation": evaluation}
    return _averaged(out, states, np.asarray(sums["weighted"]) / n_train)


def _agree(states: list[dict[str, Any]], key: str) -> Any:
    first = states[0][key]
    if any(s[key] != first for s in states[1:]):
        raise ValueError(f"the stops of this round disagree on {key!r}; the round is refused")
    return first


def aggregate(partials: list[dict[str, Any] | None], ctx: Context) -> dict[str, Any]:
    """The aggregator stop: merge the statistics (round 0) or average the weights."""
    states = [s for s in partials if s is not None and s.get("kind") == "partial"]
    if not states or len(states) != len(partials):
        raise ValueError("the aggregator needs one partial state from every stop of the round")
    if any(s["round"] != ctx.round for s in states):
        raise ValueError(f"a partial state is not from round {ctx.round}; the round is refused")
    columns = _agree(states, "columns")
    out = {"kind": "global", "round": ctx.round, "columns": columns}
    if is_secure(ctx):
        return _secure_aggregate(states, out, ctx)
    if ctx.round == 0:
        scaler = merge_moments([s["moments"] for s in states])
        return out | {"scaler": scaler, "weights": np.zeros(len(columns) + 1), "history": []}
    n = np.array([s["n"] for s in states], dtype=np.float64)
    evaluation = sum_evaluations([s["evaluation"] for s in states])
    out |= {
        "scaler": _agree(states, "scaler"),
        "history": [*_agree(states, "history"), scores(evaluation, ctx.round)],
        "n_train": int(n.sum()),
        "site_min_n": int(n.min()),  # the release point withholds a model of a tiny site
    }
    if ctx.round == ctx.rounds - 1:
        return out | {"weights": _agree(states, "weights"), "evaluation": evaluation}
    weights = np.array([s["weights"] for s in states], dtype=np.float64)
    return _averaged(out, states, n @ weights / n.sum())


def _averaged(out: dict[str, Any], states: list[dict[str, Any]], weights: Array) -> dict[str, Any]:
    """A training round's global model, and the largest change of a weight it made."""
    start = np.asarray(_agree(states, "started_from"), dtype=np.float64)
    return out | {"weights": weights, "change": float(np.abs(weights - start).max())}


def converged(state: dict[str, Any], ctx: Context) -> bool:
    """True when ``stop_early`` is on and this round's averaging moved no weight by ``tol``
    or more; asked by the runtime only at an aggregate hop that may end the route. Without
    ``stop_early`` in train.toml the route runs every round."""
    change = state.get("change")
    if not ctx.params.get("stop_early", False) or change is None:
        return False
    return bool(change < float(ctx.params.get("tol", 0.0)))


def finalize(
    state: dict[str, Any], ctx: Context, method: str, settings: dict[str, Any]
) -> dict[str, Any]:
    """What the researcher receives: the model and held-out scores over all stops, and
    which model the scores belong to (``scored_model_training_rounds``): the published one
    after every round, the one before the last averaging if the route ended early."""
    final = state["history"][-1]  # the round's scores of the model the stops received
    ended_early = state["round"] < ctx.rounds - 1
    trained = state["round"] if ended_early else ctx.rounds - 2
    scored = trained - 1 if ended_early else trained
    weights = np.asarray(state["weights"], dtype=np.float64)
    scaler = state["scaler"]
    publish = ctx.publish  # what leaves a station, typed
    site_min_n, n_train, n_test = state["site_min_n"], state["n_train"], final["n_test"]
    publish.model_parameters("model/weights", weights, n_train, site_min_n)
    standardise = np.concatenate([np.ravel(scaler["mean"]), scale_of(scaler)])
    publish.model_parameters("model/standardisation", standardise, n_train, site_min_n)
    for name, kind in (("accuracy", "proportion"), ("auc", "other"), ("log_loss", "mean")):
        publish.statistic(name, kind, final[name], n_test)
    if ended_early:  # the scores are not the published model's: say whose they are
        publish.statistic("training_rounds", "other", trained, n_train)
        publish.statistic("scored_model_training_rounds", "other", scored, n_test)
    return {
        "method": method,
        "settings": settings,
        "training_rounds": trained,
        "scored_model_training_rounds": scored,  # the scores below are of this model
        "ended_early": ended_early,
        "last_change": state.get("change"),  # None after every round: the last only scores
        "n_train": state["n_train"],
        "n_test": final["n_test"],
        "accuracy": final["accuracy"],
        "auc": final["auc"],
        "log_loss": final["log_loss"],
        "history": state["history"],
        "model": {
            "columns": state["columns"],
            "intercept": weights[0],
            "coef": weights[1:],
            "mean": scaler["mean"],
            "scale": scale_of(scaler),
        },
    }
