"""Cox proportional hazards regression, exact across stations (Breslow ties).

WebDISCO (Lu et al., "WebDISCO: a web service for distributed Cox model learning without
patient-level data sharing", JAMIA 2015): the partial likelihood, its gradient and its
Hessian depend on the data only through, at each distinct event time t, the number of
events d(t) and the risk-set sums S0(t) = sum exp(x'b), S1(t) = sum x exp(x'b) and
S2(t) = sum x x' exp(x'b) over patients still at risk, and through the sum of covariates
over all events. Round 0 collects the event times, their event counts and the covariate
sums; every later round each stop adds its risk-set sums at the current coefficients and
the last stop takes the Newton step. The result equals the pooled Cox fit with Breslow's
handling of ties (statsmodels' PHReg(ties="breslow"); lifelines uses Efron's, which equals
Breslow's only when no two events share a time).
"""

import numpy as np

from trains.runtime.design import column as _column
from trains.runtime.design import complete_cases, require_min_rows, the_dataset
from trains.runtime.secure import is_secure, sum_parts
from trains.runtime.wald import wald_table


def survival_design(frame, p):
    """Complete-case times, events and covariate matrix."""
    time, event, covariates = p.get("time", "time"), p.get("event", "event"), p["covariates"]
    rows = complete_cases(frame, [time, event, *covariates])
    t = rows[time].to_numpy(dtype=float)
    unit = float(p.get("time_unit", 0))
    if unit > 0:
        t = np.ceil(t / unit) * unit
    e = rows[event].to_numpy(dtype=float)
    if not np.isin(e, (0.0, 1.0)).all():
        raise ValueError(f"event column {event!r} must hold 0 (censored) or 1 (event)")
    x = np.column_stack([_column(rows, item) for item in covariates])
    return t, e, x


def setup(state, t, e, x):
    """Round 0: event times with their counts, sums of covariates over events and over all."""
    times, inverse = np.unique(t[e == 1], return_inverse=True)
    deaths = np.bincount(inverse, minlength=times.size)
    if "event_times" in state:
        both = np.concatenate([state["event_times"], times])
        times, inverse = np.unique(both, return_inverse=True)
        deaths = np.bincount(inverse, weights=np.concatenate([state["deaths"], deaths]))
    state["event_times"], state["deaths"] = times, deaths.astype(int)
    state["n"] = state.get("n", 0) + len(t)
    zeros = np.zeros(x.shape[1])
    state["sum_x"] = np.asarray(state.get("sum_x", zeros)) + x.sum(0)
    state["event_sum_x"] = np.asarray(state.get("event_sum_x", zeros)) + x[e == 1].sum(0)


def risk_sums(times, t, x, beta):
    """S0, S1, S2 over this station's patients at risk (time >= t_j) at every event time."""
    order = np.argsort(t, kind="stable")
    t, x = t[order], x[order]
    w = np.exp(x @ beta)
    k = x.shape[1]
    # suffix sums: row i holds the sum over patients i.. (time-sorted); the last row is 0
    s0 = np.concatenate([np.cumsum(w[::-1])[::-1], [0.0]])
    s1 = np.vstack([np.cumsum((w[:, None] * x)[::-1], axis=0)[::-1], np.zeros((1, k))])
    outer = w[:, None, None] * x[:, :, None] * x[:, None, :]
    s2 = np.concatenate([np.cumsum(outer[::-1], axis=0)[::-1], np.zeros((1, k, k))])
    first = np.searchsorted(t, times, side="left")
    return s0[first], s1[first], s2[first]


def local(data, state, ctx):
    p = ctx.params
    t, e, x = survival_design(the_dataset(data), p)
    require_min_rows(len(t), ctx)
    if ctx.rounds < 2:
        raise ValueError(
            "the cox train needs at least 2 rounds (1 setup + iterations); submit with --rounds 10"
        )
    state = state or {"columns": list(p["covariates"]), "history": [], "converged": False}
    if is_secure(ctx):
        return secure_local(state, t, e, x, ctx)
    if ctx.round == 0:
        setup(state, t, e, x)
        if ctx.is_round_end:
            state["beta"] = np.zeros(x.shape[1])
        return state
    # Center on the pooled means: risk-set sums scale by a common factor, the fit is unchanged
    # and exp() stays in range.
    xc = x - np.asarray(state["sum_x"]) / state["n"]
    times = np.asarray(state["event_times"], dtype=float)
    beta = np.asarray(state["beta"], dtype=float)
    s0, s1, s2 = risk_sums(times, t, xc, beta)
    if ctx.stop == 0:
        state.update(s0=s0, s1=s1, s2=s2)
    else:
        state["s0"] = np.asarray(state["s0"]) + s0
        state["s1"] = np.asarray(state["s1"]) + s1
        state["s2"] = np.asarray(state["s2"]) + s2
    if ctx.is_round_end:
        newton_step(state, float(p.get("tol", 1e-8)), ctx.round)
    return state


def secure_local(state, t, e, x, ctx):
    """secure = true: every sum on a grid every stop shares (time_unit steps up to
    max_time), masked. Round 0 sums n and the covariates (the release point turns them
    into the centre every stop uses, like the model it passes on); every later round each
    stop adds its event counts, its centred covariate sums over events and its risk-set
    sums at every grid time, and the release point takes the Newton step over the grid
    times with events: the unmasked fit with the same time_unit."""
    p = ctx.params
    unit, horizon = float(p.get("time_unit", 0)), p.get("max_time")
    if unit <= 0 or horizon is None:
        raise ValueError(
            "secure = true: masked sums need a time grid every stop shares: set "
            "time_unit > 0 and max_time in [parameters]"
        )
    grid = np.arange(int(np.ceil(float(horizon) / unit)) + 1) * unit
    index = np.round(t / unit).astype(int)
    if index.min() < 0 or index.max() >= grid.size:
        raise ValueError("a time lies outside 0 .. max_time; raise max_time in [parameters]")
    if ctx.round == 0:
        totals = sum_parts(ctx, None, {"n": len(t), "sum_x": x.sum(0)})
        if totals is not None:
            state |= {"n": totals["n"], "sum_x": totals["sum_x"], "beta": np.zeros(x.shape[1])}
        return state
    xc = x - np.asarray(state["sum_x"]) / state["n"]
    s0, s1, s2 = risk_sums(grid, t, xc, np.asarray(state["beta"], dtype=float))
    mine = {
        "deaths": np.bincount(index[e == 1], minlength=grid.size),
        "event_sum": xc[e == 1].sum(0),
        "s0": s0,
        "s1": s1,
        "s2": s2,
    }
    totals = sum_parts(ctx, None, mine)
    if totals is None:  # masked here: the sums travel in secure.json only
        return state
    events = totals["deaths"] > 0
    state["deaths"] = totals["deaths"][events]
    state |= {key: totals[key][events] for key in ("s0", "s1", "s2")}
    centre = np.asarray(state["sum_x"]) / state["n"]
    state["event_sum_x"] = totals["event_sum"] + state["deaths"].sum() * centre
    newton_step(state, float(p.get("tol", 1e-8)), ctx.round)
    # the pooled sums stay here and the model (and the centre) go on, unless the route ends
    # here (the last hop, or converged where it may end: finalize needs the information)
    if not (ctx.is_last or (ctx.may_end and converged(state, ctx))):
        for key in ("deaths", "event_sum_x", "information"):
            del state[key]
    return state


def newton_step(state, tol, round_):
    """Partial likelihood, gradient and information from the summed risk sets; one step."""
    d = np.asarray(state["deaths"], dtype=float)
    s0, s1, s2 = (np.asarray(state[key], dtype=float) for key in ("s0", "s1", "s2"))
    beta = np.asarray(state["beta"], dtype=float)
    event_sum = np.asarray(state["event_sum_x"]) - d.sum() * np.asarray(state["sum_x"]) / state["n"]
    mean = s1 / s0[:, None]
    gradient = event_sum - d @ mean
    information = np.einsum("j,jab->ab", d / s0, s2) - np.einsum("j,ja,jb->ab", d, mean, mean)
    state["loglik"] = float(event_sum @ beta - d @ np.log(s0))
    try:
        step = np.linalg.solve(information, gradient)
    except np.linalg.LinAlgError:
        raise ValueError(
            "the information matrix is singular: a covariate is constant or collinear; "
            "drop that covariate"
        ) from None
    state["information"] = information
    state["beta"] = beta + step
    largest = float(np.abs(step).max())
    state["converged"] = largest < tol
    state["history"].append({"round": round_, "loglik": state["loglik"], "max_step": largest})
    for key in ("s0", "s1", "s2"):
        del state[key]  # the next round starts fresh; the last stop's sums need not travel


def finalize(state, ctx):
    """Hazard ratios with confidence intervals; standard errors from the information at the
    coefficients before the last step (equal at convergence, which ``converged`` reports)."""
    conf_level = float(ctx.params.get("conf_level", 0.95))
    coefficients = wald_table(state["columns"], state["beta"], state["information"], conf_level)
    for row in coefficients.values():  # the interval is published on the hazard-ratio scale
        low, high = row.pop("ci_low"), row.pop("ci_high")
        row.update(
            hazard_ratio=np.exp(row["estimate"]), hr_ci_low=np.exp(low), hr_ci_high=np.exp(high)
        )
    # what leaves a station, typed; a Cox model's information is in its events, so the
    # residual df are events - terms. No median or quantile: this train has no baseline curve
    terms, n_events = list(coefficients), int(np.sum(state["deaths"]))
    ctx.publish.regression(
        "cox",
        terms,
        [coefficients[t]["estimate"] for t in terms],
        [coefficients[t]["se"] for t in terms],
        state["n"],
        max(n_events - len(terms), 0),
    )
    ctx.publish.frequency_table("cox/size", ["all"], [[state["n"], n_events]], ["n", "n_events"])
    return {
        "method": "cox",
        "ties": "breslow",
        "n": state["n"],
        "n_events": int(np.sum(state["deaths"])),
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
