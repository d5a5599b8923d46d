"""Linear regression (ordinary least squares), exact across stations.

OLS depends on the data only through the sufficient statistics X'X, X'y, y'y and n, and
these are sums over patients, so summing them stop by stop gives exactly the pooled ones
(e.g. Karr et al., "Secure regression on distributed databases", JCGS 2005). ``finalize``
solves the normal equations and reports coefficients, standard errors, t statistics,
p-values and confidence intervals, as statsmodels' OLS does on the pooled data.
"""

import numpy as np
from scipy import stats

from trains.runtime.design import regression_design, require_min_rows, the_dataset
from trains.runtime.secure import sum_parts


def local(data, state, ctx):
    p = ctx.params
    x, y, names = regression_design(
        the_dataset(data), p["covariates"], p["outcome"], p.get("intercept", True)
    )
    require_min_rows(len(y), ctx)
    if state is not None and state["columns"] != names:
        raise ValueError(f"state columns {state['columns']} differ from this stop's {names}")
    # the additive parts: in the state, or masked in secure.json with secure = true
    sums = sum_parts(
        ctx,
        state,
        {"n": len(y), "xtx": x.T @ x, "xty": x.T @ y, "yty": float(y @ y), "sum_y": float(y.sum())},
    )
    stations = (state or {}).get("stations", 0) + 1
    return {"columns": names, "stations": stations} | (sums or {})


def fit(state, conf_level=0.95):
    """Coefficients and their inference from the summed statistics alone."""
    xtx, xty, n = np.asarray(state["xtx"]), np.asarray(state["xty"]), state["n"]
    k = len(xty)
    df = n - k
    if df <= 0:
        raise ValueError(
            f"{n} rows for {k} coefficients: too few to fit; add rows or drop covariates"
        )
    # Equilibrate before solving: covariates on very different scales make X'X ill-conditioned.
    scale = 1.0 / np.sqrt(np.diag(xtx))
    inverse = scale[:, None] * np.linalg.inv(xtx * np.outer(scale, scale)) * scale[None, :]
    beta = inverse @ xty
    rss = max(state["yty"] - 2 * beta @ xty + beta @ xtx @ beta, 0.0)
    sigma2 = rss / df
    se = np.sqrt(np.diag(inverse) * sigma2)
    t = beta / se
    q = stats.t.ppf(0.5 + conf_level / 2, df)
    tss = state["yty"] - state["sum_y"] ** 2 / n
    coefficients = {
        name: {
            "estimate": beta[i],
            "se": se[i],
            "t": t[i],
            "p": 2 * stats.t.sf(abs(t[i]), df),
            "ci_low": beta[i] - q * se[i],
            "ci_high": beta[i] + q * se[i],
        }
        for i, name in enumerate(state["columns"])
    }
    return {
        "n": n,
        "df_resid": df,
        "sigma": float(np.sqrt(sigma2)),
        "r_squared": 1 - rss / tss if "intercept" in state["columns"] else None,
        "conf_level": conf_level,
        "coefficients": coefficients,
    }


def finalize(state, ctx):
    result = fit(state, float(ctx.params.get("conf_level", 0.95)))
    result["method"] = "linreg"
    result["stations"] = state["stations"]
    publish(result, ctx)
    return result


def publish(result, ctx):
    """What leaves a station, typed: the coefficients with their residual df."""
    terms = list(result["coefficients"])
    rows = [result["coefficients"][t] for t in terms]
    n = result["n"]
    ctx.publish.regression(
        "linreg",
        terms,
        [r["estimate"] for r in rows],
        [r["se"] for r in rows],
        n,
        result["df_resid"],
    )
    ctx.publish.statistic("linreg/sigma", "sd", result["sigma"], n)
    if result["r_squared"] is not None:
        ctx.publish.statistic("linreg/r_squared", "other", result["r_squared"], n)
