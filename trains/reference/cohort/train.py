"""Cohort statistics, exact: each stop merges its sufficient statistics into the state.

Numeric columns carry (n, mean, M2, min, max) and are merged with Chan et al.'s parallel
update ("Updating Formulae and a Pairwise Algorithm for Computing Sample Variances", 1979),
which stays accurate where sums of squares would cancel. Categorical columns carry counts.
At the last hop ``finalize`` publishes count, mean, standard deviation (ddof=1), min and
max, and suppresses every count below ``min_cell``.
"""

import pandas as pd


def _numeric_summary(values):
    values = values.dropna().astype(float)
    n = int(values.size)
    if n == 0:
        return {"n": 0, "mean": 0.0, "m2": 0.0, "min": None, "max": None}
    mean = float(values.mean())
    return {
        "n": n,
        "mean": mean,
        "m2": float(((values - mean) ** 2).sum()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _merge_numeric(a, b):
    if a["n"] == 0:
        return b
    if b["n"] == 0:
        return a
    n = a["n"] + b["n"]
    delta = b["mean"] - a["mean"]
    return {
        "n": n,
        "mean": a["mean"] + delta * b["n"] / n,
        "m2": a["m2"] + b["m2"] + delta * delta * a["n"] * b["n"] / n,
        "min": min(a["min"], b["min"]),
        "max": max(a["max"], b["max"]),
    }


def summarise(frame: pd.DataFrame) -> dict:
    numeric = frame.select_dtypes(include="number")
    categorical = frame.drop(columns=numeric.columns)
    return {
        "rows": len(frame),
        "numeric": {col: _numeric_summary(numeric[col]) for col in numeric.columns},
        "categorical": {
            col: {str(k): int(v) for k, v in categorical[col].dropna().value_counts().items()}
            for col in categorical.columns
        },
    }


def merge(a: dict, b: dict) -> dict:
    numeric = dict(a["numeric"])
    for col, stats in b["numeric"].items():
        numeric[col] = _merge_numeric(numeric[col], stats) if col in numeric else stats
    categorical = {col: dict(counts) for col, counts in a["categorical"].items()}
    for col, counts in b["categorical"].items():
        merged = categorical.setdefault(col, {})
        for key, count in counts.items():
            merged[key] = merged.get(key, 0) + count
    return {"rows": a["rows"] + b["rows"], "numeric": numeric, "categorical": categorical}


def local(data, state, ctx):
    mine = summarise(data["cohort"])
    merged = mine if state is None else merge(state, mine)
    merged["stations"] = (state or {}).get("stations", 0) + 1
    return merged


def publish(state: dict, min_cell: int = 5) -> dict:
    """The released statistics: small cells suppressed (None), as pooled analysis would."""

    def cell(count):
        return count if count >= min_cell else None

    numeric = {}
    for col, s in state["numeric"].items():
        if s["n"] < min_cell:
            numeric[col] = {"count": None, "mean": None, "std": None, "min": None, "max": None}
            continue
        numeric[col] = {
            "count": s["n"],
            "mean": s["mean"],
            "std": (s["m2"] / (s["n"] - 1)) ** 0.5 if s["n"] > 1 else None,
            "min": s["min"],
            "max": s["max"],
        }
    categorical = {
        col: {key: cell(count) for key, count in sorted(counts.items())}
        for col, counts in state["categorical"].items()
    }
    return {
        "rows": cell(state["rows"]),
        "stations": state["stations"],
        "min_cell": min_cell,
        "numeric": numeric,
        "categorical": categorical,
    }


def finalize(state, ctx):
    return publish(state, int(ctx.params.get("min_cell", 5)))
