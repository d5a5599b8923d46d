"""DP noise on typed outputs: really applied, at the scale ε says, close to exact at a huge ε,
counts non-negative integers, charged once, and nothing returned when refused.

The scale tests are statistical: one release of a table of 4,000 cells draws 4,000
independent noises, whose mean absolute value is compared with the distribution's own
(within 10 %, about five standard errors; the wrong scale by a factor 1.5 fails them)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from station.audit import AUDIT_FILE, AuditLog
from station.config import PrivacyPolicy
from station.privacy import apply_dp
from station.privacy_ledger import BudgetLedger
from trains.errors import BudgetExceeded, DisclosureRefused
from trains.published import (
    FrequencyTable,
    MagnitudeTable,
    Regression,
    Statistic,
    SurvivalCurve,
)

ALICE = "sha256:" + "a" * 64
CELLS = 4000


def policy(**fields):
    return PrivacyPolicy(mode="required", **{"budget": 10_000, **fields})


def release(quantities, privacy, tmp_path):
    ledger = BudgetLedger(tmp_path, AuditLog(tmp_path / AUDIT_FILE))
    return apply_dp(quantities, privacy, ledger, ALICE, ["cohort"], train_id="t", hop=2)


def big_table(value=1000, cells=CELLS):
    rows = [f"r{i}" for i in range(cells)]
    return FrequencyTable("big", rows, ["n"], [[value] for _ in rows])


def discrete_laplace_mean_abs(scale):
    p = math.exp(-1 / scale)
    return 2 * p / (1 - p * p)


def test_counts_get_noise_of_the_scale_epsilon_says(tmp_path):
    (noisy,), notes = release([big_table()], policy(epsilon_per_release=0.5), tmp_path)
    noise = [row[0] - 1000 for row in noisy.counts]
    assert len(set(noise)) > 5  # repeated draws differ
    observed = sum(abs(n) for n in noise) / CELLS
    expected = discrete_laplace_mean_abs(1 / 0.5)  # one part of the budget, sensitivity 1
    assert observed == pytest.approx(expected, rel=0.10)
    assert abs(sum(noise) / CELLS) < 0.2  # unbiased
    assert notes[0].action == "noised" and "ε = 0.5" in notes[0].rule


def test_two_releases_differ_and_each_is_charged(tmp_path):
    privacy = policy(epsilon_per_release=1.0, budget=5.0)
    (first,), _ = release([big_table(cells=50)], privacy, tmp_path)
    (second,), _ = release([big_table(cells=50)], privacy, tmp_path)
    assert first.counts != second.counts
    ledger = BudgetLedger(tmp_path, AuditLog(tmp_path / AUDIT_FILE))
    assert ledger.account(ALICE, "cohort").epsilon == Decimal("2.0")


def test_the_budget_is_split_over_the_parts_of_a_release(tmp_path):
    """Two tables in one release: each gets half of ε, so twice the noise."""
    other = FrequencyTable("other", ["x"], ["n"], [[7]])
    (noisy, _), notes = release([big_table(), other], policy(epsilon_per_release=1.0), tmp_path)
    observed = sum(abs(row[0] - 1000) for row in noisy.counts) / CELLS
    assert observed == pytest.approx(discrete_laplace_mean_abs(2.0), rel=0.10)
    assert all("2 parts" in n.rule for n in notes)


def test_sums_get_noise_scaled_by_the_declared_bounds(tmp_path):
    rows = [f"r{i}" for i in range(CELLS)]
    table = MagnitudeTable(
        "spend",
        rows,
        ["sum"],
        "sum",
        [[500.0] for _ in rows],
        [[100] for _ in rows],
        [[[9.0, 9.0]] for _ in rows],
        (0.0, 10.0),
    )
    (noisy,), _ = release([table], policy(epsilon_per_release=1.0), tmp_path)
    observed = sum(abs(row[0] - 500.0) for row in noisy.values) / CELLS
    # sums and counts take half of ε each; a record moves a sum by at most 10
    assert observed == pytest.approx(10 / 0.5, rel=0.10)
    assert noisy.top == [[[]] for _ in rows]  # single records' values never leave
    assert all(isinstance(row[0], int) and row[0] >= 0 for row in noisy.counts)


def test_gaussian_noise_has_the_standard_deviation_of_its_rho(tmp_path):
    privacy = policy(mechanism="gaussian", epsilon_per_release=1.0, delta=1e-6)
    (noisy,), notes = release([big_table()], privacy, tmp_path)
    noise = [row[0] - 1000 for row in noisy.counts]
    sd = math.sqrt(sum(n * n for n in noise) / CELLS)
    log_term = math.log(1e6)
    rho = (math.sqrt(log_term + 1.0) - math.sqrt(log_term)) ** 2
    assert sd == pytest.approx(1 / math.sqrt(2 * rho), rel=0.10)
    assert "δ = 1e-06" in notes[0].rule


def test_a_huge_epsilon_gives_values_close_to_exact(tmp_path):
    curve = SurvivalCurve("km", [1.0, 2.0, 3.0, 5.0], [40, 31, 20, 12], [6, 8, 5, 4])
    mean = Statistic("age", "mean", 61.5, 200, (18.0, 100.0))
    out, _ = release([big_table(cells=200), curve, mean], policy(epsilon_per_release=100), tmp_path)
    table, noisy_curve, noisy_mean = out
    assert max(abs(row[0] - 1000) for row in table.counts) <= 1
    assert noisy_curve.at_risk == pytest.approx(curve.at_risk, abs=2)
    assert noisy_curve.events == pytest.approx(curve.events, abs=1)
    assert noisy_mean.n == pytest.approx(200, abs=1)
    assert noisy_mean.value == pytest.approx(61.5, abs=0.5)


def test_counts_stay_non_negative_integers(tmp_path):
    """At ε = 0.1 most noise is larger than the counts: none may come out negative, a
    curve's at-risk never grows, its events never exceed it."""
    small = FrequencyTable("small", [f"r{i}" for i in range(300)], ["n"], [[0]] * 300)
    curve = SurvivalCurve("km", [1.0, 2.0, 3.0], [6, 5, 3], [1, 2, 1], quantiles={"0.25": None})
    out, _ = release([small, curve], policy(epsilon_per_release=0.1), tmp_path)
    table, noisy = out
    cells = [row[0] for row in table.counts]
    assert all(type(c) is int and c >= 0 for c in cells) and max(cells) > 0
    assert all(type(n) is int and n >= 0 for n in noisy.at_risk + noisy.events)
    assert all(a >= b for a, b in zip(noisy.at_risk, noisy.at_risk[1:], strict=False))
    assert all(e <= n for e, n in zip(noisy.events, noisy.at_risk, strict=True))
    assert set(noisy.quantiles) == {"0.25"}
    assert len(noisy.survival) == 3


def test_suppressed_cells_stay_suppressed(tmp_path):
    table = FrequencyTable("t", ["a", "b"], ["n"], [[None], [40]])
    (noisy,), _ = release([table], policy(), tmp_path)
    assert noisy.counts[0] == [None] and isinstance(noisy.counts[1][0], int)


def test_off_changes_nothing_and_charges_nothing(tmp_path):
    table = big_table(cells=10)
    out, notes = release([table], PrivacyPolicy(), tmp_path)
    assert out == [table] and notes == []
    assert not (tmp_path / "privacy" / "ledger.json").exists()


def test_uncovered_quantities_refuse_or_are_named(tmp_path):
    fit = Regression("fit", ["intercept", "age"], [1.0, 0.2], [0.1, 0.01], 120, 118)
    with pytest.raises(DisclosureRefused, match="cover the regression of this release"):
        release([big_table(cells=3), fit], policy(), tmp_path)
    assert not (tmp_path / "privacy" / "ledger.json").exists()  # nothing charged
    out, notes = release([big_table(cells=3), fit], policy(uncovered="release"), tmp_path)
    assert out[1] == fit
    assert [(n.quantity, n.action) for n in notes] == [("big", "noised"), ("fit", "not covered")]


def test_over_budget_returns_nothing_and_charges_nothing(tmp_path):
    privacy = policy(epsilon_per_release=2.0, budget=3.0)
    release([big_table(cells=3)], privacy, tmp_path)
    with pytest.raises(BudgetExceeded, match=r"spent 2\.0 of 3\.0, 1\.0 remains"):
        release([big_table(cells=3)], privacy, tmp_path)
    ledger = BudgetLedger(tmp_path, AuditLog(tmp_path / AUDIT_FILE))
    assert ledger.account(ALICE, "cohort").epsilon == Decimal("2.0")


def test_policy_is_checked_at_load():
    with pytest.raises(ValueError, match="needs a delta"):
        PrivacyPolicy(mechanism="gaussian")
    with pytest.raises(ValueError, match="only to mechanism"):
        PrivacyPolicy(delta=1e-6)
    with pytest.raises(ValueError, match="larger than the whole budget"):
        PrivacyPolicy(epsilon_per_release=5, budget=1)


def test_a_long_curve_is_not_biased_upward(tmp_path):
    """At-risk is summed from noisy exits before any clipping: clipping each step's small
    exit count at 0 first piles a bias up over the steps (seen failing first: +56 at the
    first of 100 steps)."""
    times = [float(t) for t in range(1, 101)]
    curve = SurvivalCurve("long", times, list(range(100, 0, -1)), [1] * 100)
    privacy = policy(epsilon_per_release=1.0)
    errors = []
    for _ in range(40):
        (noisy,), _ = release([curve], privacy, tmp_path)
        errors.append(noisy.at_risk[0] - 100)
    # one release's error there has a standard deviation of 2 * sqrt(2) * 10 = 28
    assert abs(sum(errors) / len(errors)) < 20


def test_differencing_two_releases_no_longer_reveals_one_patient(tmp_path):
    """The attack: release a count over everyone, then over everyone but the target; the
    difference is the target's value (does she have the diagnosis?). Exact counts (mode
    off) give it away every time (seen failing first: accuracy 1.0). Two releases at ε =
    0.5 each are 1-DP together, so no test can be right more often than e/(1+e) = 0.73."""
    privacy = policy(epsilon_per_release=0.5)
    right, trials = 0, 400
    for trial in range(trials):
        has_it = trial % 2 == 0
        everyone = FrequencyTable("dx", ["yes"], ["n"], [[40 + has_it]])
        others = FrequencyTable("dx", ["yes"], ["n"], [[40]])
        (a,), _ = release([everyone], privacy, tmp_path)
        (b,), _ = release([others], privacy, tmp_path)
        guess = a.counts[0][0] - b.counts[0][0] >= 1
        right += guess == has_it
    assert right / trials < math.e / (1 + math.e) + 0.06
