"""Under DP "required", a null the train itself supplied is refused (security review,
MEDIUM 4): nulls passed un-noised, so a train could say which cells are null, 1 bit each.
Only the station's own disclosure rules, which run before DP in the same release and note
every cell they blank in ``release.suppressed``, may null a cell.

The published.json is made as the release point makes it: the train's quantities through
the real disclosure rules, their notes in the ``release`` section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from station.audit import AUDIT_FILE, AuditLog
from station.config import PrivacyPolicy
from station.disclosure_rules import Rules, apply_rules
from station.privacy import NotCovered
from station.privacy_ledger import BudgetLedger
from station.privacy_release import privatize_published
from station.release_check import note_dict
from trains.published import FrequencyTable, Quantity, Statistic, to_document

ALICE = "sha256:" + "a" * 64
SECRET = 0b10110010  # 8 bits the train read from the data


def released(folder: Path, quantities: list[Quantity]) -> bytes:
    out, notes = apply_rules(quantities, Rules(k=5))
    document = to_document(out)
    document["release"] = {"suppressed": [note_dict(n) for n in notes], "untyped": []}
    (folder / "published.json").write_text(json.dumps(document))
    return (folder / "published.json").read_bytes()


def run(folder: Path) -> object:
    ledger = BudgetLedger(folder / "state", AuditLog(folder / "state" / AUDIT_FILE))
    return privatize_published(
        folder,
        PrivacyPolicy(mode="required", epsilon_per_release=0.5),
        ledger,
        signer=ALICE,
        datasets=["cohort"],
        train_id="t",
        hop=0,
    )


def test_eight_secret_bits_in_nulls_are_refused(tmp_path: Path) -> None:
    bits = [(SECRET >> i) & 1 for i in range(8)]
    counts: list[list[int | None]] = [[None if bit else 100] for bit in bits]
    table = FrequencyTable("t", [f"r{i}" for i in range(8)], ["n"], counts)
    before = released(tmp_path, [table])
    with pytest.raises(NotCovered, match="null"):
        run(tmp_path)
    assert (tmp_path / "published.json").read_bytes() == before  # nothing released


def test_a_null_statistic_from_the_train_is_refused(tmp_path: Path) -> None:
    released(tmp_path, [Statistic("s", "mean", None, 100, (0.0, 10.0))])
    with pytest.raises(NotCovered, match="null"):
        run(tmp_path)


def test_nulls_of_the_stations_own_suppression_are_released(tmp_path: Path) -> None:
    rows = [f"r{i}" for i in range(6)]
    counts: list[list[int | None]] = [[2], [100], [100], [100], [100], [100]]
    released(
        tmp_path,
        [FrequencyTable("t", rows, ["n"], counts), Statistic("s", "mean", 1.0, 3, (0.0, 10.0))],
    )
    run(tmp_path)
    document = json.loads((tmp_path / "published.json").read_text())
    assert document["quantities"][0]["counts"][0] == [None]  # suppressed by the rules
    assert document["quantities"][1]["value"] is None
