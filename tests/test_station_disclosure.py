"""Disclosure control on a train's output, tried as a train that over-shares would."""

import json

import pytest

from station.config import DisclosurePolicy
from station.disclosure import Disclosure, check_output
from trains.errors import DisclosureRefused, StateInvalid, StateTooLarge

MB = 1024 * 1024


def test_only_declared_files_leave(tmp_path):
    (tmp_path / "state.json").write_text("{}")
    (tmp_path / "patients.csv").write_text("id,age\n1,40\n")  # smuggled raw data
    with pytest.raises(StateInvalid, match=r"undeclared files \['patients.csv'\]"):
        check_output(tmp_path, ["state.json"], MB, DisclosurePolicy())


def test_declared_output_missing(tmp_path):
    with pytest.raises(StateInvalid, match="did not write"):
        check_output(tmp_path, ["state.json"], MB, DisclosurePolicy())


def test_size_cap(tmp_path):
    (tmp_path / "state.json").write_text("x" * 2000)
    with pytest.raises(StateTooLarge, match="above the cap of 1000"):
        check_output(tmp_path, ["state.json"], 1000, DisclosurePolicy())


def test_link_to_data_is_refused(tmp_path):
    secret = tmp_path.parent / "secret.csv"
    secret.write_text("id\n1\n")
    (tmp_path / "state.json").symlink_to(secret)
    with pytest.raises(StateInvalid, match="not a regular file"):
        check_output(tmp_path, ["state.json"], MB, DisclosurePolicy())


def test_small_counts_in_csv_are_suppressed(tmp_path):
    (tmp_path / "ward.counts.csv").write_text("ward,count\ncardio,40\nrare,2\nempty,0\nonco,5\n")
    result = check_output(tmp_path, ["ward.counts.csv"], MB, DisclosurePolicy(min_cell=5))
    assert (tmp_path / "ward.counts.csv").read_text() == (
        "ward,count\ncardio,40\nrare,\nempty,0\nonco,5\n"
    )
    assert result.suppressed_cells == 1
    assert result.files[0].count_file


def test_small_counts_in_json_are_suppressed_at_any_depth(tmp_path):
    doc = {"sex": {"F": 30, "M": 3}, "rows": [12, 1], "ok": True, "mean": 4.5}
    (tmp_path / "stats.counts.json").write_text(json.dumps(doc))
    result = check_output(tmp_path, ["stats.counts.json"], MB, DisclosurePolicy())
    cleaned = json.loads((tmp_path / "stats.counts.json").read_text())
    assert cleaned == {"sex": {"F": 30, "M": None}, "rows": [12, None], "ok": True, "mean": 4.5}
    assert result.suppressed_cells == 2


def test_refuse_policy_fails_the_hop_instead(tmp_path):
    (tmp_path / "ward.counts.csv").write_text("ward,count\nrare,2\n")
    policy = DisclosurePolicy(small_cells="refuse")
    with pytest.raises(DisclosureRefused, match="1 cells below the minimum of 5"):
        check_output(tmp_path, ["ward.counts.csv"], MB, policy)
    assert "rare,2" in (tmp_path / "ward.counts.csv").read_text()  # nothing sealed anyway


def test_files_not_named_as_counts_are_left_alone(tmp_path):
    (tmp_path / "state.json").write_text('{"n": 2}')
    result = check_output(tmp_path, ["state.json"], MB, DisclosurePolicy())
    assert json.loads((tmp_path / "state.json").read_text()) == {"n": 2}
    assert result.suppressed_cells == 0
    # ...unless the station says so
    result = check_output(tmp_path, ["state.json"], MB, DisclosurePolicy(count_files=["*.json"]))
    assert json.loads((tmp_path / "state.json").read_text()) == {"n": None}


def test_summary_shows_shapes_never_values(tmp_path):
    (tmp_path / "ward.counts.csv").write_text("ward,count\nZZMARKER,3\ncardio,41\n")
    (tmp_path / "state.json").write_text('{"ZZSECRET": 123456.789, "b": 1}')
    result = check_output(tmp_path, ["ward.counts.csv", "state.json"], MB, DisclosurePolicy())
    text = json.dumps(result.to_dict())
    for value in ("ZZMARKER", "ZZSECRET", "123456", "cardio", "41"):
        assert value not in text
    shapes = {f.name: f.shape for f in Disclosure.from_dict(result.to_dict()).files}
    assert shapes == {
        "state.json": "JSON object, 2 top-level keys",
        "ward.counts.csv": "2 rows x 2 columns (+ header)",
    }
