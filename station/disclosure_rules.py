"""The output-checking rules per typed quantity, applied where a result is released.

The rules and their default parameters are those of the SACRO guidelines as the ``acro``
package (AI-SDC/ACRO, ``acro/default.yaml``) implements them: threshold ``k`` (ACRO's
``safe_threshold`` and ``survival_safe_threshold``, 10), minimum residual degrees of freedom
(``safe_dof_threshold``, 10), (n, k) dominance with n = 2 (``safe_nk_n``/``safe_nk_k``,
the largest two contributions may not make up 90 % or more of a cell) and the p-ratio rule
(``safe_pratio_p``, 10 %). ACRO itself is not imported (docs/station-admin.md says why):
it checks pandas tables built from the microdata, where a station sees only aggregates.

Per type:

* frequency table: cells ``0 < n < k`` suppressed (zeros too if ``zeros_disclosive``), then
  secondary suppression until no row or column has exactly one hidden cell, so a hidden
  cell cannot be recovered from a margin; two tables with the same rows and columns may not
  differ by ``0 < d < k`` in a released cell or in their totals (differencing);
* magnitude table: a cell over fewer than ``k`` records, or failing (n, k) dominance or the
  p-ratio, is suppressed; then secondary suppression as above; negative contributions make
  dominance undefined (ACRO: "review"), so such cells are suppressed;
* statistic: over fewer than ``k`` records, suppressed;
* survival curve: cut before the first time with fewer than ``k`` at risk; its survival,
  median and quartiles are computed here, from the released steps only;
* regression: residual df below ``min_df`` or fewer than ``k`` records: suppressed whole;
* model parameters: fitted on fewer than ``k`` records, or with a site below ``k``:
  suppressed whole.

A suppressed value becomes ``null``. Every suppression is a :class:`Note` naming the
quantity, the part of it, the rule and never the value. Standard library only: this runs in
the station's bounded child parser (``station.output_parse``) and in ``pht-train test``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

from trains.published import (
    FrequencyTable,
    MagnitudeTable,
    ModelParameters,
    Quantity,
    Regression,
    Statistic,
    SurvivalCurve,
)

QUANTILES = ("0.25", "0.5", "0.75")
Table = TypeVar("Table", FrequencyTable, MagnitudeTable)


@dataclass(frozen=True)
class Rules:
    """The parameters of the rules (``[policy.disclosure]`` of station.toml)."""

    k: int = 10
    min_df: int = 10
    nk_k: float = 0.9
    p_ratio: float = 0.1
    zeros_disclosive: bool = False


@dataclass(frozen=True)
class Note:
    """One suppressed part of a quantity: ``what`` names the part, ``rule`` the reason."""

    quantity: str
    what: str
    rule: str
    action: str = "suppressed"


def apply_rules(quantities: list[Quantity], rules: Rules) -> tuple[list[Quantity], list[Note]]:
    """The quantities as they may be released, and a note per suppression."""
    notes: list[Note] = []
    out: list[Quantity] = []
    for q in quantities:
        if isinstance(q, FrequencyTable):
            out.append(_frequency(q, rules, notes))
        elif isinstance(q, MagnitudeTable):
            out.append(_magnitude(q, rules, notes))
        elif isinstance(q, Statistic):
            out.append(_statistic(q, rules, notes))
        elif isinstance(q, SurvivalCurve):
            out.append(_survival(q, rules, notes))
        elif isinstance(q, Regression):
            out.append(_regression(q, rules, notes))
        else:
            out.append(_parameters(q, rules, notes))
    _differencing(out, rules, notes)
    return out, notes


# --- tables -----------------------------------------------------------------------------------


def _frequency(q: FrequencyTable, rules: Rules, notes: list[Note]) -> FrequencyTable:
    def small(n: int | None) -> bool:
        return n is not None and (0 < n < rules.k or (rules.zeros_disclosive and n == 0))

    hidden = {(i, j) for i, row in enumerate(q.counts) for j, n in enumerate(row) if small(n)}
    for cell in sorted(hidden):
        notes.append(Note(q.name, _cell(q, cell), f"threshold: fewer than {rules.k} records"))
    return _hide(q, hidden, notes)


def _magnitude(q: MagnitudeTable, rules: Rules, notes: list[Note]) -> MagnitudeTable:
    hidden: set[tuple[int, int]] = set()
    for i, row in enumerate(q.counts):
        for j, n in enumerate(row):
            reason = _magnitude_reason(q, i, j, n, rules)
            if reason:
                hidden.add((i, j))
                notes.append(Note(q.name, _cell(q, (i, j)), reason))
    released = _hide(q, hidden, notes)
    # each cell's largest contributions are single records' values: they serve the
    # dominance rules here and never leave the station
    return replace(released, top=[[[] for _ in row] for row in released.top])


def _magnitude_reason(q: MagnitudeTable, i: int, j: int, n: int | None, r: Rules) -> str:
    value = q.values[i][j]
    if n is None or value is None:
        return ""
    if n < r.k:
        return f"threshold: fewer than {r.k} records"
    if q.bounds[0] < 0:
        return "dominance: undefined with negative contributions"
    total = value if q.statistic == "sum" else value * n
    top = [*q.top[i][j], 0.0, 0.0][:2]
    if total <= 0:
        return ""
    if top[0] + top[1] >= r.nk_k * total:
        return f"dominance (2, {r.nk_k:.0%}): the largest two records make up the cell"
    if (total - top[0] - top[1]) < r.p_ratio * top[0]:
        return f"p-ratio {r.p_ratio:.0%}: the other records hide the largest too little"
    return ""


def _hide(q: Table, hidden: set[tuple[int, int]], notes: list[Note]) -> Table:
    """Secondary suppression, then blank every hidden cell.

    While a row or column holds exactly one hidden cell (and more than one cell), its
    margin would give the hidden cell away: hide that line's smallest released cell too."""
    counts = q.counts
    rows, columns = len(counts), len(counts[0])
    primary = set(hidden)
    changed = bool(hidden)
    while changed:
        changed = False
        lines = [[(i, j) for j in range(columns)] for i in range(rows)] if columns > 1 else []
        lines += [[(i, j) for i in range(rows)] for j in range(columns)] if rows > 1 else []
        for line in lines:
            if sum(c in hidden for c in line) != 1:
                continue
            shown = [c for c in line if c not in hidden and counts[c[0]][c[1]] is not None]
            if not shown:
                continue
            pick = min(shown, key=lambda c: (counts[c[0]][c[1]] or 0, c))
            hidden.add(pick)
            changed = True
    for cell in sorted(hidden - primary):
        notes.append(Note(q.name, _cell(q, cell), "secondary: would be recovered from a margin"))
    blank = [
        [None if (i, j) in hidden else n for j, n in enumerate(r)] for i, r in enumerate(counts)
    ]
    if isinstance(q, MagnitudeTable):
        values = [
            [None if (i, j) in hidden else v for j, v in enumerate(r)]
            for i, r in enumerate(q.values)
        ]
        top = [
            [[] if (i, j) in hidden else t for j, t in enumerate(r)] for i, r in enumerate(q.top)
        ]
        return replace(q, counts=blank, values=values, top=top)
    return replace(q, counts=blank)


def _cell(q: FrequencyTable | MagnitudeTable, cell: tuple[int, int]) -> str:
    return f"cell [{q.rows[cell[0]]}, {q.columns[cell[1]]}]"


def _differencing(out: list[Quantity], rules: Rules, notes: list[Note]) -> None:
    """Two frequency tables with the same rows and columns, e.g. over all patients and over
    all but one: a released cell or total differing by ``0 < d < k`` would give away the
    records in between. The later table of such a pair is suppressed whole."""
    seen: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]] = {}
    for index, q in enumerate(out):
        if not isinstance(q, FrequencyTable):
            continue
        key = (tuple(q.rows), tuple(q.columns))
        for other in seen.get(key, []):
            earlier = out[other]
            assert isinstance(earlier, FrequencyTable)
            if _too_close(earlier, q, rules.k):
                notes.append(
                    Note(
                        q.name,
                        "whole table",
                        f"differencing: differs from {earlier.name!r} by fewer than "
                        f"{rules.k} records",
                    )
                )
                out[index] = replace(q, counts=[[None for _ in r] for r in q.counts])
                break
        else:
            seen.setdefault(key, []).append(index)


def _too_close(a: FrequencyTable, b: FrequencyTable, k: int) -> bool:
    pairs = [
        (x, y)
        for ra, rb in zip(a.counts, b.counts, strict=True)
        for x, y in zip(ra, rb, strict=True)
        if x is not None and y is not None
    ]
    if any(0 < abs(x - y) < k for x, y in pairs):
        return True
    total_a = sum(n for r in a.counts for n in r if n is not None)
    total_b = sum(n for r in b.counts for n in r if n is not None)
    return 0 < abs(total_a - total_b) < k


# --- one-number and model quantities ----------------------------------------------------------


def _statistic(q: Statistic, rules: Rules, notes: list[Note]) -> Statistic:
    if q.n < rules.k and q.value is not None:
        notes.append(Note(q.name, "value", f"threshold: over fewer than {rules.k} records"))
        return replace(q, value=None)
    return q


def _regression(q: Regression, rules: Rules, notes: list[Note]) -> Regression:
    if q.residual_df < rules.min_df:
        rule = f"degrees of freedom: fewer than {rules.min_df} residual df"
    elif q.n < rules.k:
        rule = f"threshold: fitted on fewer than {rules.k} records"
    else:
        return q
    notes.append(Note(q.name, "coefficients and standard errors", rule))
    blank: list[float | None] = [None for _ in q.terms]
    return replace(q, coefficients=blank, standard_errors=list(blank))


def _parameters(q: ModelParameters, rules: Rules, notes: list[Note]) -> ModelParameters:
    if q.site_min_n < rules.k:
        rule = f"threshold: a site contributed fewer than {rules.k} records"
    elif q.n < rules.k:
        rule = f"threshold: fitted on fewer than {rules.k} records"
    else:
        return q
    notes.append(Note(q.name, "weights", rule))
    return replace(q, weights=[None for _ in q.weights])


def _survival(q: SurvivalCurve, rules: Rules, notes: list[Note]) -> SurvivalCurve:
    keep = next((i for i, n in enumerate(q.at_risk) if n < rules.k), len(q.times))
    if keep < len(q.times):
        # never the time of the first step cut: fewer than k were at risk there, so it is
        # (close to) one patient's day
        where = "steps after the last released one" if keep else "whole curve"
        notes.append(Note(q.name, where, f"threshold: fewer than {rules.k} at risk"))
    times, at_risk, events = q.times[:keep], q.at_risk[:keep], q.events[:keep]
    survival, s = [], 1.0
    for n, d in zip(at_risk, events, strict=True):
        s *= 1 - d / n
        survival.append(s)
    # quantiles from the released curve only: beyond its end they are unknown (null)
    quantiles: dict[str, float | None] = {}
    for label in QUANTILES:
        level = 1 - float(label)
        quantiles[label] = next(
            (t for t, v in zip(times, survival, strict=True) if v <= level), None
        )
    return SurvivalCurve(q.name, times, at_risk, events, survival, quantiles["0.5"], quantiles)
