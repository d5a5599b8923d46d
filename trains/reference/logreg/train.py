"""Logistic regression, exact across stations: federated Newton-Raphson.

The log-likelihood, its gradient X'(y - p) and its Hessian -X'WX are sums over patients,
so at the coefficients of round r every stop adds its share and the last stop of the round
holds exactly the pooled gradient and Hessian and takes the Newton step (the iteration
used by GLORE, Wu et al., "Grid Binary LOgistic REgression", JAMIA 2012). After enough
rounds the coefficients, standard errors and p-values equal statsmodels' Logit on the
pooled data; ``converged`` says whether the last step was below ``tol``.
"""

import numpy as np

from trains.runtime.design import (
    regression_design,
    require_binary_outcome,
    require_min_rows,
    the_dataset,
)
from trains.runtime.secure import is_secure, sum_parts
from trains.runtime.wald import wald_table


def local(data, state, ctx):
    p = ctx.params
    x, y, names = regression_design(
        the_dataset(data), p["covariates"], p["outcome"], p.get("intercept", True)
    )
    require_min_rows(len(y), ctx)
    require_binary_outcome(y, p["outcome"])
    if state is None:
        state = {"columns": names, "beta": np.zeros(len(names)), "history": [], "converged": False}
    if state["columns"] != names:
        raise ValueError(f"state columns {state['columns']} differ from this stop's {names}")
    beta = np.asarray(state["beta"], dtype=float)
    eta = x @ beta
    prob = 1.0 / (1.0 + np.exp(-eta))
    mine = {
        "n": len(y),
        "loglik": float(y @ eta - np.logaddexp(0.0, eta).sum()),
        "gradient": x.T @ (y - prob),
        "information": (x * (prob * (1 - prob))[:, None]).T @ x,
    }
    # a new round (stop 0) starts fresh sums at the coefficients the last round chose
    sums = sum_parts(ctx, None if ctx.stop == 0 else state, mine)
    if sums is None:  # secure = true, mid-round: the sums travel masked, not in the state
        return {key: value for key, value in state.items() if key not in mine}
    state.update(sums)
    if ctx.is_round_end:
        newton_step(state, float(p.get("tol", 1e-8)), ctx.round)
        # the pooled sums stay here and the model goes on, unless the route ends at this
        # hop (the last, or converged where it may end: finalize needs the information)
        ends_here = ctx.is_last or (ctx.may_end and converged(state, ctx))
        if is_secure(ctx) and not ends_here:
            return {key: value for key, value in state.items() if key not in mine}
    return state


def newton_step(state, tol, round_):
    """Move the coefficients by information^-1 gradient; record how far they moved."""
    try:
        step = np.linalg.solve(np.asarray(state["information"]), np.asarray(state["gradient"]))
    except np.linalg.LinAlgError:
        raise ValueError(
            "the information matrix is singular: a covariate is constant or collinear, or the "
            "outcome is perfectly separated; drop that covariate"
        ) from None
    state["beta"] = np.asarray(state["beta"]) + step
    largest = float(np.abs(step).max())
    state["converged"] = largest < tol
    state["history"].append({"round": round_, "loglik": state["loglik"], "max_step": largest})


def finalize(state, ctx):
    """Coefficients after the last step; standard errors from the information before it
    (equal at convergence, which ``converged`` reports)."""
    conf_level = float(ctx.params.get("conf_level", 0.95))
    coefficients = wald_table(state["columns"], state["beta"], state["information"], conf_level)
    for row in coefficients.values():
        row["odds_ratio"] = np.exp(row["estimate"])
    terms = list(coefficients)
    ctx.publish.regression(  # what leaves a station, typed (residual df = n - terms)
        "logreg",
        terms,
        [coefficients[t]["estimate"] for t in terms],
        [coefficients[t]["se"] for t in terms],
        state["n"],
        max(int(state["n"]) - len(terms), 0),
    )
    return {
        "method": "logreg",
        "n": state["n"],
        "converged": state["converged"],
        "iterations": len(state["history"]),
        "loglik": state["loglik"],
        "history": state["history"],
        "conf_level": conf_level,
        "coefficients": coefficients,
    }


def converged(state, ctx):
    """End the route early once a Newton step moved no coefficient by ``tol`` or more
    (the station signs that the route ended here); ``stop_early = false`` runs every round."""
    return bool(state["converged"]) and bool(ctx.params.get("stop_early", True))
