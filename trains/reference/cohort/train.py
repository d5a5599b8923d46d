"""Cohort statistics, exact: each stop merges its sufficient statistics into the state.

Numeric columns carry (n, mean, M2, min, max) and are merged with Chan et al.'s parallel
update ("Updating Formulae and a Pairwise Algorithm for Computing Sample Variances", 1979),
which stays accurate where sums of squares would cancel. Categorical columns carry counts.
Optional: histograms of numeric columns over bin edges fixed in ``[parameters]`` (so every
station bins identically; bins are [edge_i, edge_i+1), values outside are counted as
``below`` / ``above``) and cross-tables of two categorical columns; both are counts summed
over stops. At the last hop ``finalize`` publishes count, mean, standard deviation (ddof=1),
min and max, and suppresses every count below ``min_cell``; in a histogram or a cross-table
a line (the bins of a histogram, a row or column of a table) with exactly one suppressed
cell loses its smallest other cell too, so a suppressed count cannot be recovered as a
published total minus the published cells.
"""

import itertools

import numpy as np
import pandas as pd

from trains.runtime.design import the_dataset
from trains.runtime.secure import is_secure, sum_parts


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


def histogram(values, edges):
    """Counts in [edge_i, edge_i+1), plus values below the first and from the last edge on."""
    values = values.dropna().astype(float).to_numpy()
    index = np.searchsorted(np.asarray(edges, dtype=float), values, side="right") - 1
    k = len(edges) - 1
    return {
        "edges": list(edges),
        "counts": [int((index == i).sum()) for i in range(k)],
        "below": int((index < 0).sum()),
        "above": int((index >= k).sum()),
    }


def crosstab(frame, a, b):
    rows = frame[[a, b]].dropna().astype(str)
    counts = {}
    for (x, y), n in rows.value_counts().items():
        counts.setdefault(x, {})[y] = int(n)
    return counts


def extras(frame: pd.DataFrame, params: dict) -> dict:
    """This station's histograms and cross-tables, as [parameters] ask for them."""
    histograms = params.get("histograms", {})
    pairs = [tuple(pair) for pair in params.get("crosstabs", [])]
    needed = set(histograms) | {c for pair in pairs for c in pair}
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise ValueError(
            f"the dataset has no column(s) {missing}; fix histograms / crosstabs in "
            "[parameters] of train.toml"
        )
    for column, edges in histograms.items():
        if len(edges) < 2 or any(lo >= hi for lo, hi in itertools.pairwise(edges)):
            raise ValueError(f"histogram edges of {column!r} must be at least two, increasing")
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError('each crosstabs entry names two columns, e.g. ["sex", "smoker"]')
    return {
        "histograms": {c: histogram(frame[c], e) for c, e in histograms.items()},
        "crosstabs": {f"{a} x {b}": crosstab(frame, a, b) for a, b in pairs},
    }


def merge_extras(a: dict, b: dict) -> dict:
    histograms = {}
    for column, h in b["histograms"].items():
        mine = a["histograms"][column]
        if mine["edges"] != h["edges"]:
            raise ValueError(f"the previous stop binned {column!r} with other edges")
        histograms[column] = {
            "edges": h["edges"],
            "counts": [x + y for x, y in zip(mine["counts"], h["counts"], strict=True)],
            "below": mine["below"] + h["below"],
            "above": mine["above"] + h["above"],
        }
    crosstabs = {}
    for name, table in b["crosstabs"].items():
        merged = {x: dict(row) for x, row in a["crosstabs"][name].items()}
        for x, row in table.items():
            for y, n in row.items():
                merged.setdefault(x, {})[y] = merged.get(x, {}).get(y, 0) + n
        crosstabs[name] = merged
    return {"histograms": histograms, "crosstabs": crosstabs}


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
    frame = the_dataset(data)
    if is_secure(ctx):
        return secure_local(frame, state, ctx)
    mine = summarise(frame) | extras(frame, ctx.params)
    merged = mine if state is None else merge(state, mine) | merge_extras(state, mine)
    merged["stations"] = (state or {}).get("stations", 0) + 1
    return merged


# ----------------------------------------------------------- secure = true: sums only
# Masked sums need a layout every stop shares, so category names come from [parameters]
# levels (never from the data), and a numeric column travels as n, sum and sum of squares
# (min and max are not sums: with secure = true they are not published).


def _levels(params, column):
    levels = params.get("levels", {}).get(column)
    if not levels:
        raise ValueError(
            f"secure = true: declare the categories of column {column!r} in [parameters], "
            f'e.g. levels = {{ {column} = ["a", "b"] }}; with masked sums category names '
            "cannot come from the data (they would travel in the clear)"
        )
    return [str(v) for v in levels]


def secure_parts(frame, params):
    """This stop's additive parts, in the layout every stop shares."""
    numeric = frame.select_dtypes(include="number")
    parts = {"rows": len(frame)}
    for col in numeric.columns:
        values = numeric[col].dropna().astype(float)
        parts[f"numeric/{col}"] = [len(values), values.sum(), (values**2).sum()]
    for col in frame.columns.drop(numeric.columns):
        levels, values = _levels(params, col), frame[col].dropna().astype(str)
        counts = [int((values == level).sum()) for level in levels]
        parts[f"categorical/{col}"] = [*counts, int((~values.isin(levels)).sum())]
    for name, h in extras(frame, params)["histograms"].items():
        parts[f"histogram/{name}"] = [h["below"], *h["counts"], h["above"]]
    for a, b in (tuple(pair) for pair in params.get("crosstabs", [])):
        la, lb = _levels(params, a), _levels(params, b)
        rows = frame[[a, b]].dropna().astype(str)
        grid = [[int(((rows[a] == x) & (rows[b] == y)).sum()) for y in lb] for x in la]
        parts[f"crosstab/{a} x {b}"] = grid
    return parts


def from_totals(totals, params):
    """The merged state ``merge`` would have built, from the unmasked totals."""
    state = {"rows": totals["rows"], "numeric": {}, "categorical": {}}
    state |= {"histograms": {}, "crosstabs": {}}
    for key, value in totals.items():
        kind, _, name = key.partition("/")
        if kind == "numeric":
            n, total, squares = float(value[0]), float(value[1]), float(value[2])
            mean = total / n if n else 0.0
            m2 = max(squares - total * mean, 0.0) if n else 0.0
            state["numeric"][name] = {"n": round(n), "mean": mean, "m2": m2}
            state["numeric"][name] |= {"min": None, "max": None}
        elif kind == "categorical":
            labels = [*_levels(params, name), "(other)"]
            state["categorical"][name] = {
                k: int(c) for k, c in zip(labels, value, strict=True) if c > 0
            }
        elif kind == "histogram":
            edges = params["histograms"][name]
            cells = [int(c) for c in value]
            state["histograms"][name] = {"edges": edges, "counts": cells[1:-1]}
            state["histograms"][name] |= {"below": cells[0], "above": cells[-1]}
        elif kind == "crosstab":
            a, _, b = name.partition(" x ")
            la, lb = _levels(params, a), _levels(params, b)
            table = {
                x: {y: int(c) for y, c in zip(lb, row, strict=True) if c > 0}
                for x, row in zip(la, value, strict=True)
            }
            state["crosstabs"][name] = {x: row for x, row in table.items() if row}
    return state


def secure_local(frame, state, ctx):
    totals = sum_parts(ctx, None, secure_parts(frame, ctx.params))
    stations = (state or {}).get("stations", 0) + 1
    if totals is None:  # the sums are masked here: only the count of stops travels
        return {"stations": stations}
    return from_totals(totals, ctx.params) | {"stations": stations}


def suppress_lines(grid, min_cell):
    """Primary suppression (cells below min_cell), then secondary: while a row or column
    has exactly one suppressed cell, suppress its smallest published cell as well."""
    grid = np.asarray(grid, dtype=float)
    hidden = grid < min_cell
    changed = True
    while changed:
        changed = False
        for lines, mask in ((grid, hidden), (grid.T, hidden.T)):
            for values, line in zip(lines, mask, strict=True):
                if line.sum() == 1 and (~line).any():
                    shown = np.where(line, np.inf, values)
                    line[int(np.argmin(shown))] = True
                    changed = True
    return [
        [None if h else int(v) for v, h in zip(r, m, strict=True)]
        for r, m in zip(grid, hidden, strict=True)
    ]


def publish_histogram(h, min_cell):
    (cells,) = suppress_lines([[h["below"], *h["counts"], h["above"]]], min_cell)
    return {"edges": h["edges"], "counts": cells[1:-1], "below": cells[0], "above": cells[-1]}


def publish_crosstab(table, min_cell):
    rows = sorted(table)
    columns = sorted({y for row in table.values() for y in row})
    grid = [[table[x].get(y, 0) for y in columns] for x in rows]
    cells = suppress_lines(grid, min_cell)
    return {x: dict(zip(columns, line, strict=True)) for x, line in zip(rows, cells, strict=True)}


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
        "histograms": {
            c: publish_histogram(h, min_cell) for c, h in state.get("histograms", {}).items()
        },
        "crosstabs": {
            name: publish_crosstab(table, min_cell)
            for name, table in state.get("crosstabs", {}).items()
        },
    }


def finalize(state, ctx):
    publish_typed(state, ctx)
    return publish(state, int(ctx.params.get("min_cell", 5)))


def publish_typed(state, ctx):
    """What leaves a station: the raw counts and statistics, typed, for the releasing
    station's rules (threshold, secondary suppression) to suppress. Min and max are one
    patient's value each: they are not published."""
    out = ctx.publish
    out.frequency_table("rows", ["all"], [state["rows"]])
    for col, s in sorted(state["numeric"].items()):
        out.statistic(f"{col}/mean", "mean", s["mean"], s["n"])
        if s["n"] > 1:
            out.statistic(f"{col}/sd", "sd", (s["m2"] / (s["n"] - 1)) ** 0.5, s["n"])
    for col, counts in sorted(state["categorical"].items()):
        keys = sorted(counts)
        out.frequency_table(col, keys, [counts[k] for k in keys])
    for col, h in sorted(state.get("histograms", {}).items()):
        edges = h["edges"]
        labels = ["below", *(f"[{a}, {b})" for a, b in itertools.pairwise(edges)), "above"]
        out.frequency_table(f"histogram/{col}", labels, [h["below"], *h["counts"], h["above"]])
    for name, table in sorted(state.get("crosstabs", {}).items()):
        rows = sorted(table)
        columns = sorted({y for row in table.values() for y in row})
        grid = [[table[x].get(y, 0) for y in columns] for x in rows]
        out.frequency_table(f"crosstab/{name}", rows, grid, columns=columns)
