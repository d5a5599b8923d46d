"""The per-type rules of station.disclosure_rules, one rule at a time."""

from __future__ import annotations

import pytest

from station.disclosure_rules import Rules, apply_rules
from trains.published import (
    FrequencyTable,
    MagnitudeTable,
    ModelParameters,
    Regression,
    Statistic,
    SurvivalCurve,
)

RULES = Rules()  # the defaults: ACRO's (k=10, df 10, (2, 90%), p-ratio 10%)


def cost_table(values, counts, top, lo=0.0):
    rows = [f"r{i}" for i in range(len(values))]
    return MagnitudeTable(
        "cost",
        rows,
        ["sum"],
        "sum",
        [[v] for v in values],
        [[n] for n in counts],
        [[t] for t in top],
        (lo, 1e6),
    )


def test_dominance_nk_and_p_ratio_hide_a_cell_one_record_makes_up():
    # r0: 20 records, the largest two are 95% of the sum -> (2, 90%) dominance;
    # r2, r3 are spread evenly and stay released (two hidden cells need no partner)
    tops = [[900.0, 50.0], [850.0, 100.0], [60.0, 55.0], [110.0, 100.0]]
    table = cost_table([1000.0, 1000.0, 1000.0, 2000.0], [20] * 4, tops)
    (out,), notes = apply_rules([table], RULES)
    assert isinstance(out, MagnitudeTable)
    assert {n.what: n.rule.split(" ")[0] for n in notes} == {
        "cell [r0, sum]": "dominance",
        "cell [r1, sum]": "dominance",
    }
    assert [v[0] for v in out.values] == [None, None, 1000.0, 2000.0]
    # with the defaults (2, 90%) implies the 10% p-ratio; a laxer (2, 99%) leaves it to
    # the p-ratio: the other 18 records (50) hide the largest (850) by less than 10%
    (out,), notes = apply_rules([table], Rules(nk_k=0.99))
    assert {n.what: n.rule.split(" ")[0] for n in notes} == {
        "cell [r0, sum]": "p-ratio",
        "cell [r1, sum]": "p-ratio",
    }


def test_a_magnitude_cell_over_few_records_and_its_partner_are_hidden():
    table = cost_table(
        [500.0, 900.0, 1000.0], [3, 30, 40], [[200.0, 150.0], [50.0, 40.0], [30.0, 30.0]]
    )
    (out,), notes = apply_rules([table], RULES)
    assert isinstance(out, MagnitudeTable)
    assert [v[0] for v in out.values] == [None, None, 1000.0]
    assert [v[0] for v in out.counts] == [None, None, 40]
    assert [n.rule.split(":")[0] for n in notes] == ["threshold", "secondary"]


def test_dominance_is_undefined_with_negative_contributions():
    table = cost_table([500.0], [30], [[50.0, 40.0]], lo=-10.0)
    (out,), notes = apply_rules([table], RULES)
    assert isinstance(out, MagnitudeTable) and out.values == [[None]]
    assert notes[0].rule.startswith("dominance: undefined")


def test_zeros_are_released_unless_the_station_says_they_disclose():
    table = FrequencyTable("t", ["a", "b", "c"], ["n"], [[0], [20], [30]])
    (out,), _ = apply_rules([table], RULES)
    assert isinstance(out, FrequencyTable) and out.counts == [[0], [20], [30]]
    (out,), _ = apply_rules([table], Rules(zeros_disclosive=True))
    assert isinstance(out, FrequencyTable) and out.counts == [[None], [None], [30]]


def test_a_statistic_at_exactly_k_records_is_released():
    stats = [Statistic("a", "mean", 1.5, 10), Statistic("b", "mean", 1.5, 9)]
    out, notes = apply_rules(stats, RULES)
    assert [s.value for s in out] == [1.5, None]  # type: ignore[union-attr]
    assert [n.quantity for n in notes] == ["b"]


@pytest.mark.parametrize(
    ("n", "df", "released"), [(100, 10, True), (100, 9, False), (9, 50, False)]
)
def test_regression_needs_residual_df_and_records(n, df, released):
    fit = Regression("ols", ["x"], [1.0], [0.1], n, df)
    (out,), _ = apply_rules([fit], RULES)
    assert isinstance(out, Regression)
    assert (out.coefficients == [1.0]) is released


def test_model_parameters_need_every_site_at_k():
    good = ModelParameters("w", [0.5, 1.0], 300, 10)
    tiny = ModelParameters("v", [0.5, 1.0], 300, 9)
    out, notes = apply_rules([good, tiny], RULES)
    assert [q.weights for q in out] == [[0.5, 1.0], [None, None]]  # type: ignore[union-attr]
    assert "a site contributed fewer than 10" in notes[0].rule


def test_survival_quantiles_come_from_the_released_steps():
    at_risk = [40, 30, 20, 12, 9, 5]
    events = [10, 10, 6, 2, 4, 5]
    curve = SurvivalCurve("km", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], at_risk, events)
    (out,), notes = apply_rules([curve], RULES)
    assert isinstance(out, SurvivalCurve)
    assert out.times == [1.0, 2.0, 3.0, 4.0]  # at risk 9 at t=5: cut there
    assert out.survival == pytest.approx([0.75, 0.5, 0.35, 0.35 * 10 / 12])
    assert out.quantiles == {"0.25": 1.0, "0.5": 2.0, "0.75": None}  # 0.75 quantile not reached
    assert out.median == 2.0
    assert notes[0].what == "steps after the last released one"  # no time: one patient's


def test_a_curve_that_starts_below_k_is_withheld_whole():
    curve = SurvivalCurve("km", [1.0, 2.0], [7, 6], [1, 1])
    (out,), notes = apply_rules([curve], RULES)
    assert isinstance(out, SurvivalCurve) and out.times == [] and out.median is None
    assert notes[0].what == "whole curve"


def test_tables_of_other_layouts_are_not_compared_for_differencing():
    a = FrequencyTable("sex", ["f", "m"], ["n"], [[50], [50]])
    b = FrequencyTable("smoker", ["no", "yes"], ["n"], [[51], [48]])
    out, notes = apply_rules([a, b], RULES)
    assert notes == [] and out == [a, b]


def test_the_largest_contributions_never_leave_the_station():
    """A magnitude table's ``top`` (each cell's two largest single contributions: one
    patient's value each) is there for the dominance rules, here; the release keeps none."""
    table = cost_table([900.0, 1000.0], [30, 40], [[50.0, 40.0], [30.0, 30.0]])
    (out,), _ = apply_rules([table], RULES)
    assert isinstance(out, MagnitudeTable)
    assert [v[0] for v in out.values] == [900.0, 1000.0]  # released
    assert all(cell == [] for row in out.top for cell in row)
