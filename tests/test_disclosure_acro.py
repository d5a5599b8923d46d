"""ACRO (SACRO's output checker, the ``acro`` package) as the oracle for the station's rules.

A station sees only what a train publishes, so ``station.disclosure_rules`` reimplements
ACRO's table rules on that evidence (docs/station-admin.md says why ACRO is not imported
there). Here both judge the same microdata: ACRO's own checks (``SDCChecks``:
``check_min_threshold``, ``check_nk_dominance``, ``check_ppercent_dominance``,
``check_model_dof``) on the interim tables ACRO builds from records, and the station's rules
on the magnitude table a train would publish from them. They must flag the same cells, and
the station's defaults must be ACRO's.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

acro = pytest.importorskip("acro")
from acro.sdcchecks import SDCChecks, SDCEvidence  # noqa: E402

from station.config import DisclosurePolicy  # noqa: E402
from station.disclosure_rules import Rules, apply_rules  # noqa: E402
from trains.published import MagnitudeTable, Regression  # noqa: E402

DEFAULTS = yaml.safe_load((Path(acro.__file__).with_name("default.yaml")).read_text())


def test_the_stations_defaults_are_acros():
    policy = DisclosurePolicy()
    assert policy.k == DEFAULTS["safe_threshold"] == DEFAULTS["survival_safe_threshold"]
    assert policy.min_df == DEFAULTS["safe_dof_threshold"]
    assert DEFAULTS["safe_nk_n"] == 2  # the station's dominance uses the largest two
    assert policy.nk_k == DEFAULTS["safe_nk_k"]
    assert policy.p_ratio == DEFAULTS["safe_pratio_p"]


def records(seed: int) -> pd.DataFrame:
    """Costs per patient in a 4 x 5 grid of cells: some cells small, some dominated by one
    or two patients, some spread."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(4):
        for c in range(5):
            n = int(rng.choice([1, 3, 8, 9, 10, 11, 25, 60]))
            cost = rng.gamma(2.0, 100.0, n)
            shape = rng.integers(0, 3)
            if shape == 1 and n > 1:
                cost[0] *= 200  # one patient makes up the cell
            elif shape == 2 and n > 2:
                cost[0] *= 30
                cost[1] *= 30  # two patients do
            rows += [(f"r{r}", f"c{c}", float(x)) for x in cost]
    return pd.DataFrame(rows, columns=["row", "col", "cost"])


def acro_masks(frame: pd.DataFrame) -> dict[str, set[tuple[str, str]]]:
    grouped = frame.groupby(["row", "col"])["cost"]

    def table(series: pd.Series) -> pd.DataFrame:
        return series.unstack("col")

    evidence = SDCEvidence(
        interim_tables={
            "count_table": table(grouped.count()),
            "sum": table(grouped.sum()),
            "max": table(grouped.max()),
            "top_2_sum": table(grouped.apply(lambda v: v.nlargest(2).sum())),
            "top_n_sum": table(grouped.apply(lambda v: v.nlargest(2).sum())),
            "num_negative": table(grouped.apply(lambda v: int((v < 0).sum()))),
        }
    )
    checks = SDCChecks(DEFAULTS)
    model = SimpleNamespace(model_type="table")
    out = {}
    for rule, check in (
        ("threshold", checks.check_min_threshold),
        ("dominance", checks.check_nk_dominance),
        ("p-ratio", checks.check_ppercent_dominance),
    ):
        _, _, mask = check("t", evidence, model)
        out[rule] = {(str(r), str(c)) for (r, c), flagged in mask.stack().items() if flagged}
    return out


def published_table(frame: pd.DataFrame) -> MagnitudeTable:
    """What a train publishes from the same records: sums, counts, the largest two."""
    rows, cols = sorted(frame["row"].unique()), sorted(frame["col"].unique())
    cells = {key: part["cost"].to_numpy() for key, part in frame.groupby(["row", "col"])}
    return MagnitudeTable(
        "cost",
        rows,
        cols,
        "sum",
        [[float(cells[(r, c)].sum()) for c in cols] for r in rows],
        [[len(cells[(r, c)]) for c in cols] for r in rows],
        [[sorted(cells[(r, c)].tolist(), reverse=True)[:2] for c in cols] for r in rows],
        (0.0, 1e9),
    )


@pytest.mark.parametrize("seed", range(5))
def test_the_station_flags_the_cells_acro_flags(seed):
    frame = records(seed)
    masks = acro_masks(frame)
    _, notes = apply_rules([published_table(frame)], Rules())
    primary = {n.what: n.rule.split(" ")[0].rstrip(":") for n in notes if "secondary" not in n.rule}

    def cell(key: tuple[str, str]) -> str:
        return f"cell [{key[0]}, {key[1]}]"

    # the station names one rule per cell, the first that fails: threshold, dominance, p-ratio
    assert {k for k, v in primary.items() if v == "threshold"} == {
        cell(k) for k in masks["threshold"]
    }
    big = {k for k in masks["dominance"] | masks["p-ratio"] if k not in masks["threshold"]}
    assert {k for k, v in primary.items() if v != "threshold"} == {cell(k) for k in big}
    for key in masks["dominance"] - masks["threshold"]:
        assert primary[cell(key)] == "dominance"
    assert any(masks.values())  # the data exercises the rules


@pytest.mark.parametrize("df", [0, 9, 10, 50])
def test_residual_df_as_acro_judges_it(df):
    checks = SDCChecks(DEFAULTS)
    status, _, _ = checks.check_model_dof("m", SDCEvidence(dof=df), SimpleNamespace())
    fit = Regression("ols", ["x"], [1.0], [0.1], 100, df)
    (out,), _ = apply_rules([fit], Rules())
    assert isinstance(out, Regression)
    assert (status == "pass") is (out.coefficients == [1.0])
