"""``published.json`` at the release point under DP: rewritten with noisy values and the
notes beside the disclosure rules' ones; untouched when the release is refused; a file a
train could have tampered with is validated again, not trusted."""

from __future__ import annotations

import json

import pytest

from station.audit import AUDIT_FILE, AuditLog
from station.config import PrivacyPolicy
from station.privacy import NotCovered
from station.privacy_ledger import BudgetLedger
from station.privacy_release import privatize_published
from trains.errors import BudgetExceeded, StateInvalid
from trains.published import FrequencyTable, Regression, SurvivalCurve, to_document

ALICE = "sha256:" + "a" * 64
RULE_NOTE = {"quantity": "t", "what": "cell a", "rule": "threshold k=5", "action": "suppressed"}


def write(folder, quantities, release=True):
    document = to_document(quantities)
    if release:
        document["release"] = {"rules": {"k": 5}, "suppressed": [RULE_NOTE], "untyped": []}
    (folder / "published.json").write_text(json.dumps(document))


def run(folder, privacy):
    ledger = BudgetLedger(folder / "state", AuditLog(folder / "state" / AUDIT_FILE))
    return privatize_published(
        folder, privacy, ledger, signer=ALICE, datasets=["cohort"], train_id="t", hop=0
    )


def table():
    rows = [f"r{i}" for i in range(30)]
    return FrequencyTable("t", rows, ["n"], [[None]] + [[50] for _ in rows[1:]])


def test_noised_values_and_notes_are_written_back(tmp_path):
    write(tmp_path, [table()])
    run(tmp_path, PrivacyPolicy(mode="required", epsilon_per_release=0.5))
    document = json.loads((tmp_path / "published.json").read_text())
    counts = [row[0] for row in document["quantities"][0]["counts"]]
    assert counts[0] is None and all(type(c) is int and c >= 0 for c in counts[1:])
    assert counts[1:] != [50] * 29
    suppressed = document["release"]["suppressed"]
    assert suppressed[0] == RULE_NOTE  # the rules' notes stay, the DP notes follow
    assert suppressed[1]["action"] == "noised" and "ε = 0.5" in suppressed[1]["rule"]
    assert document["release"]["privacy"]["epsilon_per_release"] == 0.5
    assert document["release"]["rules"] == {"k": 5}


def test_a_refused_release_leaves_the_file_as_it_was(tmp_path):
    privacy = PrivacyPolicy(mode="required", epsilon_per_release=1.0, budget=1.0)
    write(tmp_path, [table()])
    run(tmp_path, privacy)
    write(tmp_path, [table()])
    before = (tmp_path / "published.json").read_bytes()
    with pytest.raises(BudgetExceeded):
        run(tmp_path, privacy)
    fit = Regression("fit", ["a"], [1.0], [0.1], 50, 49)
    write(tmp_path, [table(), fit])
    uncovered = (tmp_path / "published.json").read_bytes()
    with pytest.raises(NotCovered):
        run(tmp_path, PrivacyPolicy(mode="required"))
    assert (tmp_path / "published.json").read_bytes() == uncovered != before


@pytest.mark.parametrize(
    "text",
    [
        '{"format": 1, "quantities": [{"type": "frequency_table", "name": "t", "rows": ["a"],'
        ' "columns": ["n"], "counts": [[2.0]]}]}',  # a count as a float: refused, not noised
        "[" * 100_000 + "]" * 100_000,
        "not json",
    ],
)
def test_a_tampered_file_is_refused(tmp_path, text):
    (tmp_path / "published.json").write_text(text)
    with pytest.raises(StateInvalid):
        run(tmp_path, PrivacyPolicy(mode="required"))


def test_off_or_no_typed_outputs_is_nothing_to_do(tmp_path):
    assert run(tmp_path, PrivacyPolicy(mode="required")) == []
    write(tmp_path, [table()])
    before = (tmp_path / "published.json").read_bytes()
    assert run(tmp_path, PrivacyPolicy()) == []
    assert (tmp_path / "published.json").read_bytes() == before


def test_a_curve_keeps_its_quantile_levels_recomputed_from_the_noisy_curve(tmp_path):
    curve = SurvivalCurve("km", [1.0, 2.0, 3.0, 4.0], [100, 80, 60, 40], [20, 20, 20, 20])
    document = to_document([curve])
    # a quantile q is when a fraction q had the event (survival <= 1 - q)
    exact = {"survival": [0.8, 0.6, 0.4, 0.2], "median": 3.0, "quantiles": {"0.25": 2.0}}
    document["quantities"][0].update(exact)  # as the release rules fill them in
    (tmp_path / "published.json").write_text(json.dumps(document))
    run(tmp_path, PrivacyPolicy(mode="required", epsilon_per_release=50, budget=50))
    (released,) = json.loads((tmp_path / "published.json").read_text())["quantities"]
    assert set(released["quantiles"]) == {"0.25"}
    assert released["median"] == 3.0 and released["quantiles"]["0.25"] == 2.0
