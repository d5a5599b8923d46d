"""Pooled-analysis yardsticks: what the federated result must equal (demo, tests, benchmarks)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def pooled_cohort_stats(frames: list[pd.DataFrame], min_cell: int = 5) -> dict[str, Any]:
    pooled = pd.concat(frames, ignore_index=True)
    numeric = pooled.select_dtypes(include="number")

    def cell(count: int) -> int | None:
        return int(count) if count >= min_cell else None

    return {
        "rows": cell(len(pooled)),
        "numeric": {
            col: {
                "count": int(numeric[col].count()),
                "mean": float(numeric[col].mean()),
                "std": float(numeric[col].std()),
                "min": float(numeric[col].min()),
                "max": float(numeric[col].max()),
            }
            for col in numeric.columns
        },
        "categorical": {
            col: {str(k): cell(int(v)) for k, v in sorted(pooled[col].value_counts().items())}
            for col in pooled.columns.drop(numeric.columns)
        },
    }


def assert_matches_pooled(result: dict[str, Any], pooled: dict[str, Any]) -> None:
    assert result["rows"] == pooled["rows"]
    assert result["categorical"] == pooled["categorical"]
    assert set(result["numeric"]) == set(pooled["numeric"])
    for col, expected in pooled["numeric"].items():
        got = result["numeric"][col]
        assert got["count"] == expected["count"], col
        for stat in ("mean", "std", "min", "max"):
            assert math.isclose(got[stat], expected[stat], rel_tol=1e-9), (col, stat)


def pooled_histogram(frames: list[pd.DataFrame], column: str, edges: list[float]) -> dict[str, Any]:
    """Counts in [edge_i, edge_i+1) of the pooled column, by pandas, and those outside."""
    values = pd.concat(frames, ignore_index=True)[column].dropna().astype(float)
    bins = pd.cut(values, edges, right=False).value_counts(sort=False)
    return {
        "edges": list(edges),
        "counts": [int(n) for n in bins.to_numpy()],
        "below": int((values < edges[0]).sum()),
        "above": int((values >= edges[-1]).sum()),
    }


def pooled_crosstab(frames: list[pd.DataFrame], a: str, b: str) -> dict[str, dict[str, int]]:
    """The pooled cross-table of two categorical columns, by pandas (rows: ``a``)."""
    pooled = pd.concat(frames, ignore_index=True)
    table = pd.crosstab(pooled[a].astype("string"), pooled[b].astype("string"))
    return {str(x): {str(y): int(table.loc[x, y]) for y in table.columns} for x in table.index}


def design_columns(frame: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """Numeric columns, or ``"column=level"`` as a 0/1 indicator, as the reference trains
    build them."""
    columns: dict[str, Any] = {}
    for item in covariates:
        name, _, level = item.partition("=")
        columns[item] = (frame[name].astype(str) == level).astype(float) if level else frame[name]
    return pd.DataFrame(columns, index=frame.index)


def pooled_logit(
    frames: list[pd.DataFrame], outcome: str, covariates: list[str]
) -> dict[str, dict[str, float]]:
    """Maximum-likelihood logistic regression on the pooled complete cases (statsmodels,
    a dev extra that scripts/setup.sh installs): estimate, se and p per coefficient."""
    import statsmodels.api as sm

    pooled = pd.concat(frames, ignore_index=True)
    rows = pooled.dropna(subset=[item.partition("=")[0] for item in [*covariates, outcome]])
    x = design_columns(rows, covariates)
    x.insert(0, "intercept", 1.0)
    y = design_columns(rows, [outcome])[outcome].astype(float)
    fit = sm.Logit(y, x).fit(disp=0, tol=1e-12)
    return {
        name: {
            "estimate": float(fit.params[name]),
            "se": float(fit.bse[name]),
            "p": float(fit.pvalues[name]),
        }
        for name in x.columns
    }


def pooled_km(frames: list[pd.DataFrame], time: str, event: str, group: str) -> dict[str, Any]:
    """Kaplan-Meier curve per group and the log-rank test on the pooled rows (lifelines, a
    dev extra): ``{"curves": {label: {"time", "survival", "median"}}, "chi2", "p"}``."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    pooled = pd.concat(frames, ignore_index=True).dropna(subset=[time, event, group])
    curves = {}
    for label, part in pooled.groupby(pooled[group].astype(str)):
        kmf = KaplanMeierFitter().fit(part[time], part[event])
        curves[str(label)] = {
            "time": kmf.survival_function_.index.to_numpy(),
            "survival": kmf.survival_function_.iloc[:, 0].to_numpy(),
            "median": float(kmf.median_survival_time_),
        }
    test = multivariate_logrank_test(pooled[time], pooled[group], pooled[event])
    return {"curves": curves, "chi2": float(test.test_statistic), "p": float(test.p_value)}
