"""Kaplan-Meier survival curves, exact across stations.

The product-limit estimator (Kaplan & Meier, JASA 1958) needs only, at each distinct time,
the number of events and the number of patients leaving the risk set; both are counts over
patients, so summing them stop by stop gives the pooled counts and the pooled curve. The
band is Greenwood's variance on the log(-log) scale ("exponential Greenwood"), as lifelines'
KaplanMeierFitter reports it; for two or more groups the log-rank test (Mantel 1966) is
computed from the same counts.
"""

import numpy as np
from scipy import stats

from trains.runtime.design import require_min_rows, the_dataset
from trains.runtime.secure import is_secure, sum_parts


def counts(frame, time, event, unit):
    """Distinct times with events and removals (events + censorings) at each."""
    t = frame[time].to_numpy(dtype=float)
    if unit > 0:
        t = np.ceil(t / unit) * unit
    times, inverse = np.unique(t, return_inverse=True)
    events = np.bincount(inverse, weights=frame[event].to_numpy(dtype=float))
    removed = np.bincount(inverse)
    return {"time": times, "events": events.astype(int), "removed": removed}


def merge(a, b):
    times, inverse = np.unique(np.concatenate([a["time"], b["time"]]), return_inverse=True)
    return {
        key: np.bincount(inverse, weights=np.concatenate([a[key], b[key]])).astype(int)
        for key in ("events", "removed")
    } | {"time": times}


def local(data, state, ctx):
    p = ctx.params
    time, event, group = p.get("time", "time"), p.get("event", "event"), p.get("group", "")
    frame = the_dataset(data)
    needed = [c for c in (time, event, group) if c]
    missing = sorted(set(needed) - set(frame.columns))
    if missing:
        raise ValueError(f"the dataset has no column(s) {missing}; fix [parameters] in train.toml")
    frame = frame.dropna(subset=needed)
    require_min_rows(len(frame), ctx)
    if not frame[event].isin([0, 1]).all():
        raise ValueError(f"event column {event!r} must hold 0 (censored) or 1 (event)")
    unit = float(p.get("time_unit", 0))
    groups = dict((state or {}).get("groups", {}))
    labels = frame[group].astype(str) if group else np.full(len(frame), "all")
    if is_secure(ctx):
        return secure_local(frame, labels, state, ctx)
    for label in sorted(set(labels)):
        mine = counts(frame[labels == label], time, event, unit)
        groups[label] = merge(groups[label], mine) if label in groups else mine
    return {"groups": groups, "stations": (state or {}).get("stations", 0) + 1}


def secure_local(frame, labels, state, ctx):
    """secure = true: events and removals on a grid every stop shares (time_unit steps up
    to max_time) for the groups [parameters] levels declares, summed masked; the release
    point keeps the grid times where something happened, as the unmasked merge does."""
    p = ctx.params
    time, event, group = p.get("time", "time"), p.get("event", "event"), p.get("group", "")
    unit, horizon = float(p.get("time_unit", 0)), p.get("max_time")
    declared = p.get("levels", {}).get(group) if group else ["all"]
    if unit <= 0 or horizon is None or not declared:
        raise ValueError(
            "secure = true: masked sums need a layout every stop shares: set time_unit > 0 "
            "and max_time in [parameters] (and levels = { <group> = [...] } for the groups)"
        )
    grid = np.arange(int(np.ceil(float(horizon) / unit)) + 1) * unit
    index = np.ceil(frame[time].to_numpy(dtype=float) / unit).astype(int)
    if index.min() < 0 or index.max() >= grid.size:
        raise ValueError("a time lies outside 0 .. max_time; raise max_time in [parameters]")
    parts = {}
    for label in [str(g) for g in declared]:
        rows = np.asarray(labels == label)
        events = frame[event].to_numpy(dtype=float)[rows].astype(int)
        parts[f"events/{label}"] = np.bincount(index[rows], events, grid.size).astype(int)
        parts[f"removed/{label}"] = np.bincount(index[rows], minlength=grid.size)
    totals = sum_parts(ctx, None, parts)
    stations = (state or {}).get("stations", 0) + 1
    if totals is None:  # masked here: only the count of stops travels
        return {"stations": stations}
    groups = {}
    for label in [str(g) for g in declared]:
        removed = totals[f"removed/{label}"]
        keep = removed > 0
        if keep.any():
            events = totals[f"events/{label}"][keep]
            groups[label] = {"time": grid[keep], "events": events, "removed": removed[keep]}
    return {"groups": groups, "stations": stations}


def curve(c, conf_level, min_at_risk):
    """Survival, Greenwood standard error and log(-log) band at every distinct time."""
    events, removed = np.asarray(c["events"], float), np.asarray(c["removed"], float)
    at_risk = removed.sum() - np.concatenate([[0.0], np.cumsum(removed)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        survival = np.cumprod(1 - events / at_risk)
        terms = np.where(at_risk > events, events / (at_risk * (at_risk - events)), 0.0)
        greenwood = np.cumsum(terms)
        z = stats.norm.ppf(0.5 + conf_level / 2)
        log_s = np.log(survival)
        low = np.exp(-np.exp(np.log(-log_s) - z * np.sqrt(greenwood) / log_s))
        high = np.exp(-np.exp(np.log(-log_s) + z * np.sqrt(greenwood) / log_s))
    # before the first event log(S) = 0 and the band is the point itself, as in lifelines
    low, high = np.where(log_s == 0, 1.0, low), np.where(log_s == 0, 1.0, high)
    keep = at_risk >= min_at_risk
    # the median from the published (cut) curve only, never from steps it leaves out
    below_half = np.nonzero((survival <= 0.5) & keep)[0]
    return {
        "time": np.asarray(c["time"])[keep],
        "at_risk": at_risk[keep].astype(int),
        "events": events[keep].astype(int),
        "censored": (removed - events)[keep].astype(int),
        "survival": survival[keep],
        "se": (survival * np.sqrt(greenwood))[keep],
        "ci_low": low[keep],
        "ci_high": high[keep],
        "median": float(c["time"][below_half[0]]) if below_half.size else None,
        "n": int(removed.sum()),
        "n_events": int(events.sum()),
    }


def logrank(groups):
    """Log-rank chi-square over all groups from the summed counts (Mantel 1966)."""
    labels = sorted(groups)
    times = np.unique(np.concatenate([np.asarray(groups[g]["time"]) for g in labels]))
    d = np.zeros((len(labels), times.size))
    n = np.zeros((len(labels), times.size))
    for i, g in enumerate(labels):
        idx = np.searchsorted(times, groups[g]["time"])
        d[i, idx] = groups[g]["events"]
        removed = np.zeros(times.size)
        removed[idx] = groups[g]["removed"]
        n[i] = removed.sum() - np.concatenate([[0.0], np.cumsum(removed)[:-1]])
    d_all, n_all = d.sum(0), n.sum(0)
    safe = np.where(n_all > 1, n_all, 2.0)
    expected = (n * d_all / np.where(n_all > 0, n_all, 1.0)).sum(1)
    factor = np.where(n_all > 1, d_all * (n_all - d_all) / (safe**2 * (safe - 1)), 0.0)
    cov = np.diag((factor * n_all * n).sum(1)) - np.einsum("t,it,jt->ij", factor, n, n)
    diff = d.sum(1) - expected
    k = len(labels) - 1
    chi2 = float(diff[:k] @ np.linalg.solve(cov[:k, :k], diff[:k]))
    return {
        "groups": labels,
        "observed": d.sum(1),
        "expected": expected,
        "chi2": chi2,
        "df": k,
        "p": float(stats.chi2.sf(chi2, k)),
    }


def finalize(state, ctx):
    p = ctx.params
    conf_level, min_at_risk = float(p.get("conf_level", 0.95)), int(p.get("min_at_risk", 5))
    result = {
        "method": "km",
        "stations": state["stations"],
        "conf_level": conf_level,
        "min_at_risk": min_at_risk,
        "curves": {g: curve(c, conf_level, min_at_risk) for g, c in state["groups"].items()},
    }
    if len(state["groups"]) > 1:
        result["logrank"] = logrank(state["groups"])
    publish(state["groups"], result, ctx)
    return result


def publish(groups, result, ctx):
    """The released result, typed: each group's curve as counts (the releasing station cuts
    it where fewer than k are at risk and computes its median and quartiles from what it
    releases), the group sizes as a frequency table, the log-rank test over all records."""
    labels = sorted(groups)
    for g in labels:
        c = groups[g]
        removed = np.asarray(c["removed"], float)
        at_risk = removed.sum() - np.concatenate([[0.0], np.cumsum(removed)[:-1]])
        ctx.publish.survival_curve(f"km/{g}", c["time"], at_risk, c["events"])
    sizes = [[result["curves"][g]["n"], result["curves"][g]["n_events"]] for g in labels]
    ctx.publish.frequency_table("km/sizes", labels, sizes, columns=["n", "n_events"])
    if "logrank" in result:
        n = sum(result["curves"][g]["n"] for g in labels)
        ctx.publish.statistic("km/logrank_chi2", "other", result["logrank"]["chi2"], n)
