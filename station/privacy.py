"""Differential privacy at the release point: noise on the counts and sums of typed outputs.

``apply_dp`` is called by ``station.release`` after the disclosure rules, when the station's
``[policy.privacy]`` says ``mode = "required"``. What it protects, exactly (also in
docs/station-admin.md, "Differential privacy"):

* Neighbouring datasets differ by adding or removing one record (one patient's row).
* One release (everything a train publishes at its release point) is ε-DP (Laplace) or
  (ε, δ)-DP (Gaussian, via zCDP) with the policy's ``epsilon_per_release``: the budget is
  split evenly over the noised components (sequential composition).
* Releases compose sequentially: the ledger (``station.privacy_ledger``) adds up ε per
  researcher key and dataset, and refuses a release that would pass the policy's budget.
* Covered: the cells of a frequency table; a magnitude table's sums (each record clamped
  to the declared bounds, so its sensitivity is max(|lo|, |hi|)) and counts, and means as
  noisy sum / noisy count; a statistic's n, and its value when it is a sum, mean or
  proportion with declared bounds; a survival curve's events and at-risk numbers (noise on
  the events and on the exits per step; at-risk is their sum from the end, so it still
  never grows).
* Not covered: a curve's event times and table labels (released as the disclosure rules
  leave them); regressions, model weights, medians and other statistics without bounds
  (the policy's ``uncovered`` decides: refuse the release, or release them exact and say
  so); which cells the disclosure rules suppressed (decided on exact counts). The station
  trusts a train's declared structure (a record counts in one cell of a table) as it trusts
  the code it approved: DP does not protect against a train that lies about it.

Everything after the noise is post-processing and costs no budget: counts are rounded to
non-negative integers, a curve's events never exceed the number leaving.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from station.config import Policy, PrivacyPolicy
from station.privacy_ledger import BudgetLedger
from station.privacy_noise import Share, noisy_counts, noisy_sums, split
from station.privacy_survival import noisy_curve
from trains.errors import DisclosureRefused
from trains.published import (
    FrequencyTable,
    MagnitudeTable,
    Quantity,
    Statistic,
    SurvivalCurve,
)

BOUNDED_KINDS = ("sum", "mean", "proportion")


class NotCovered(DisclosureRefused):
    """The station requires DP and the release holds a quantity DP does not cover."""


@dataclass(frozen=True)
class NoiseNote:
    """What DP did to one quantity, for the researcher's release report (the same keys as
    the disclosure rules' notes in ``published.json``'s ``release.suppressed``)."""

    quantity: str
    what: str
    action: Literal["noised", "not covered"]
    rule: str

    def to_dict(self) -> dict[str, str]:
        return {
            "quantity": self.quantity,
            "what": self.what,
            "rule": self.rule,
            "action": self.action,
        }


def apply_dp(
    quantities: list[Quantity],
    policy: PrivacyPolicy | Policy,
    ledger: BudgetLedger,
    signer: str,
    datasets: list[str],
    *,
    train_id: str = "",
    hop: int = -1,
) -> tuple[list[Quantity], list[NoiseNote]]:
    """The released quantities with DP noise, and a note per quantity.

    Nothing is charged, and BudgetExceeded (with the numbers) or DisclosureRefused (a
    quantity DP does not cover, under ``uncovered = "refuse"``) is raised, when the release
    may not happen; otherwise the ledger is charged before the noisy values are returned.
    """
    privacy = policy.privacy if isinstance(policy, Policy) else policy
    if privacy.mode == "off":
        return quantities, []
    uncovered = sorted({q.type.replace("_", " ") for q in quantities if components(q) is None})
    if uncovered and privacy.uncovered == "refuse":
        # types only, from the fixed vocabulary: a name is the train's choice, after data
        raise NotCovered(
            "this station releases only differentially private results, and DP does not "
            f"cover the {', '.join(uncovered)} of this release (docs/researcher.md, "
            "'Differential privacy'); publish counts, bounded sums or means, or survival "
            "curves instead; nothing was released or charged"
        )
    parts = sum(components(q) or 0 for q in quantities)
    if parts == 0:
        return quantities, [_uncovered(q) for q in quantities]
    share = split(privacy.mechanism, privacy.epsilon_per_release, privacy.delta, parts)
    released: list[Quantity] = []
    notes: list[NoiseNote] = []
    for quantity in quantities:
        if components(quantity) is None:
            released.append(quantity)
            notes.append(_uncovered(quantity))
            continue
        released.append(noise(quantity, share))
        notes.append(_noised(quantity, privacy, parts))
    # noise first, charge second: a refused charge leaves nothing drawn behind to leak
    ledger.charge(
        signer=signer,
        datasets=datasets,
        epsilon=privacy.epsilon_per_release,
        delta=privacy.delta,
        budget=privacy.budget,
        train_id=train_id,
        hop=hop,
    )
    return released, notes


def refuse_train_nulls(quantities: list[Quantity], suppressed: object) -> None:
    """Raise NotCovered when a quantity holds more nulls than the disclosure rules noted.

    Nulls pass un-noised, so a null the train chose would tell the researcher one exact
    bit per cell. Only the station's own rules, which run before DP in the same release
    and note each part they blank in ``release.suppressed`` (a cell, a value, or a whole
    table), may null one."""
    noted: dict[str, int] = {}
    whole: set[str] = set()
    for note in suppressed if isinstance(suppressed, list) else []:
        if isinstance(note, dict) and note.get("action") == "suppressed":
            name = str(note.get("quantity"))
            noted[name] = noted.get(name, 0) + 1
            if str(note.get("what", "")).startswith("whole"):
                whole.add(name)
    for quantity in quantities:
        if quantity.name not in whole and _nulls(quantity) > noted.get(quantity.name, 0):
            raise NotCovered(
                "this station releases only differentially private results, and the train "
                f"itself supplied a null in the {quantity.type.replace('_', ' ')} of this "
                "release: which cells are null would pass without noise; publish every "
                "count and value (the station's rules blank small cells themselves); "
                "nothing was released or charged"
            )


def _nulls(quantity: Quantity) -> int:
    """How many cells or values of a quantity DP covers are null."""
    if isinstance(quantity, FrequencyTable):
        return sum(v is None for row in quantity.counts for v in row)
    if isinstance(quantity, MagnitudeTable):
        pairs = zip(quantity.values, quantity.counts, strict=True)
        return sum(v is None or n is None for vs, ns in pairs for v, n in zip(vs, ns, strict=True))
    if isinstance(quantity, Statistic):
        return int(quantity.value is None)
    return 0


def components(quantity: Quantity) -> int | None:
    """How many noised vectors a quantity takes (its share of the budget), or None when DP
    does not cover it."""
    if isinstance(quantity, FrequencyTable):
        return 1
    if isinstance(quantity, MagnitudeTable | SurvivalCurve):
        return 2  # sums and counts; exits and events
    if isinstance(quantity, Statistic):
        if quantity.value is None:
            return 1
        return 2 if _statistic_bounds(quantity) is not None else None
    return None


def noise(quantity: Quantity, share: Share) -> Quantity:
    """One quantity with noise on what DP covers (see the module docstring)."""
    if isinstance(quantity, FrequencyTable):
        return replace(quantity, counts=_noisy_grid(quantity.counts, share))
    if isinstance(quantity, MagnitudeTable):
        return _noisy_magnitude(quantity, share)
    if isinstance(quantity, Statistic):
        return _noisy_statistic(quantity, share)
    if isinstance(quantity, SurvivalCurve):
        return noisy_curve(quantity, share)
    raise TypeError(f"{type(quantity).__name__} is not covered by DP")


def nonnegative(values: list[int]) -> list[int]:
    """Post-processing of noisy counts: a negative count becomes 0."""
    return [max(0, int(v)) for v in values]


def _noisy_grid(grid: list[list[int | None]], share: Share) -> list[list[int | None]]:
    """Noise on every released cell of a grid of counts (suppressed cells stay None)."""
    cells = [v for row in grid for v in row if v is not None]
    noisy = iter(nonnegative(noisy_counts(cells, share)))
    return [[None if v is None else next(noisy) for v in row] for row in grid]


def _noisy_magnitude(table: MagnitudeTable, share: Share) -> MagnitudeTable:
    lo, hi = table.bounds
    sensitivity = max(abs(lo), abs(hi))
    shape = [(i, j) for i, row in enumerate(table.values) for j in range(len(row))]
    cells = [
        (i, j)
        for i, j in shape
        if table.values[i][j] is not None and table.counts[i][j] is not None
    ]
    exact_sums = []
    for i, j in cells:
        value, count = table.values[i][j], table.counts[i][j]
        assert value is not None and count is not None
        total = value * count if table.statistic == "mean" else value
        # a record's contribution is declared within [lo, hi]: so is the sum, n times over
        exact_sums.append(min(max(total, count * lo), count * hi))
    sums = noisy_sums(exact_sums, sensitivity, share) if cells else []
    counts = nonnegative(noisy_counts([table.counts[i][j] or 0 for i, j in cells], share))
    values: list[list[float | None]] = [[None] * len(row) for row in table.values]
    new_counts: list[list[int | None]] = [[None] * len(row) for row in table.counts]
    for (i, j), total, count in zip(cells, sums, counts, strict=True):
        new_counts[i][j] = count
        if table.statistic == "sum":
            values[i][j] = total
        else:  # a mean from a noisy sum over a noisy count; none from a count of 0
            values[i][j] = min(max(total / count, lo), hi) if count > 0 else None
    # the largest contributions are single records' values: never released under DP
    top: list[list[list[float]]] = [[[] for _ in row] for row in table.top]
    return replace(table, values=values, counts=new_counts, top=top)


def _statistic_bounds(statistic: Statistic) -> tuple[float, float] | None:
    if statistic.kind not in BOUNDED_KINDS:
        return None
    if statistic.bounds is None:
        return (0.0, 1.0) if statistic.kind == "proportion" else None
    return statistic.bounds


def _noisy_statistic(statistic: Statistic, share: Share) -> Statistic:
    (n,) = nonnegative(noisy_counts([statistic.n], share))
    bounds = _statistic_bounds(statistic)
    if statistic.value is None or bounds is None:
        return replace(statistic, n=n)
    lo, hi = bounds
    exact = statistic.value * statistic.n if statistic.kind != "sum" else statistic.value
    exact = min(max(exact, statistic.n * lo), statistic.n * hi)
    (total,) = noisy_sums([exact], max(abs(lo), abs(hi)), share)
    if statistic.kind == "sum":
        return replace(statistic, n=n, value=total)
    return replace(statistic, n=n, value=min(max(total / n, lo), hi) if n > 0 else None)


NOISED = {
    "frequency_table": "cells",
    "magnitude_table": "values and counts",
    "statistic": "n (and value)",
    "survival_curve": "at risk and events",
}


def _noised(quantity: Quantity, privacy: PrivacyPolicy, parts: int) -> NoiseNote:
    budget = f"ε = {privacy.epsilon_per_release}"
    if privacy.mechanism == "gaussian":
        budget += f", δ = {privacy.delta}"
    rule = f"differential privacy ({privacy.mechanism}, {budget} per release, {parts} parts)"
    return NoiseNote(quantity.name, NOISED[quantity.type], "noised", rule)


def _uncovered(quantity: Quantity) -> NoiseNote:
    rule = "differential privacy does not cover this type: released exact"
    return NoiseNote(quantity.name, "all", "not covered", rule)
