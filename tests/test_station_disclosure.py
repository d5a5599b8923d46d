"""Disclosure control on a train's output, tried as a train that over-shares would."""

import json

import pytest

from station import output_parse
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


def test_release_summary_shows_types_and_shapes_never_values_or_labels(tmp_path):
    """At the release point (issue 12): the admin's summary of typed quantities and
    untyped files, as ``pht-station show`` prints it."""
    from station.queue import HopRecord
    from station.show import describe_disclosure

    table = {
        "type": "frequency_table",
        "name": "ward",
        "rows": ["ZZROWLABEL", "other"],
        "columns": ["n"],
        "counts": [[654321], [40]],
    }
    (tmp_path / "published.json").write_text(json.dumps({"format": 1, "quantities": [table]}))
    (tmp_path / "state.json").write_text('{"ZZSECRET": 123456.789}')
    result = check_output(tmp_path, ["state.json"], MB, DisclosurePolicy(), release=True)
    record = HopRecord.model_construct(disclosure=result.to_dict(), output_digest="sha256:x")
    text = describe_disclosure(record)
    for value in ("ZZROWLABEL", "654321", "ZZSECRET", "123456"):
        assert value not in text
    assert "ward" in text and "frequency_table" in text and "2 x 1 cells" in text
    assert "state.json" in text and "untyped" in text and "HELD" in text


# -- reproductions 3 and 6 of issue 10: untrusted output bytes must end the hop with a
#    PhtError (never another exception) and never grow the daemon's memory --


@pytest.mark.parametrize("name", ["state.json", "nested.counts.json"])
def test_deeply_nested_json_is_refused_or_summarised_never_a_recursion_error(tmp_path, name):
    (tmp_path / name).write_text("[" * 200_000)
    try:
        result = check_output(tmp_path, [name], 10 * MB, DisclosurePolicy())
    except StateInvalid as exc:
        assert "count file" in str(exc) and name.endswith(".counts.json")
    else:
        assert not name.endswith(".counts.json")  # a count file must be parsed to pass
        assert "not summarised" in result.files[0].shape


@pytest.mark.parametrize("name", ["table.csv", "ward.counts.csv"])
def test_an_oversized_csv_field_is_refused_or_summarised(tmp_path, name):
    (tmp_path / name).write_text("a,b\n" + "x" * 200_000 + ",1\n")  # _csv.Error once
    result = check_output(tmp_path, [name], 10 * MB, DisclosurePolicy())
    assert result.files[0].shape == "1 rows x 2 columns (+ header)"
    (tmp_path / name).write_text("a,b\n" + "x" * (output_parse.CSV_FIELD_BYTES + 1) + ",1\n")
    try:
        result = check_output(tmp_path, [name], 10 * MB, DisclosurePolicy())
    except StateInvalid as exc:
        assert "field" in str(exc) and name.endswith(".counts.csv")
    else:
        assert not name.endswith(".counts.csv")
        assert "not summarised" in result.files[0].shape


@pytest.mark.parametrize("name", ["ward.counts.csv", "stats.counts.json"])
def test_a_count_file_that_is_not_utf8_is_refused(tmp_path, name):
    (tmp_path / name).write_bytes(b"ward,count\n\xff\xfe,3\n")
    with pytest.raises(StateInvalid, match="UTF-8"):
        check_output(tmp_path, [name], MB, DisclosurePolicy())


def test_a_json_bomb_is_parsed_outside_the_daemon(tmp_path):
    """39 MB of ``[[],[],...]`` took the daemon from 66 MB to 639 MB RSS: the parse now
    happens in a child process under a memory limit, so the caller's memory stays flat."""
    import resource

    count = 13 * 1024 * 1024  # 39 MB of "[],"
    with (tmp_path / "state.json").open("w") as handle:
        handle.write("[" + "[]," * (count - 1) + "[]]")
    (tmp_path / "big.counts.json").write_bytes((tmp_path / "state.json").read_bytes())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the peak so far
    with pytest.raises(StateInvalid, match=r"count file big\.counts\.json"):
        check_output(tmp_path, ["state.json", "big.counts.json"], 100 * MB, DisclosurePolicy())
    (tmp_path / "big.counts.json").unlink()
    result = check_output(tmp_path, ["state.json"], 100 * MB, DisclosurePolicy())
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert "not summarised" in result.files[0].shape
    assert after - before < 64 * 1024  # the peak grew by less than 64 MiB


def test_a_json_bomb_within_the_parse_size_is_held_by_the_childs_memory_limit(tmp_path):
    """Just under the JSON size bound, ``[[],...]`` needs more memory to parse than the
    child may take: the count file is refused, another file just not summarised."""
    count = output_parse.JSON_BYTES // 3 - 1
    bomb = "[" + "[]," * (count - 1) + "[]]"
    (tmp_path / "bomb.counts.json").write_text(bomb)
    with pytest.raises(StateInvalid, match=r"count file bomb\.counts\.json cannot be checked"):
        check_output(tmp_path, ["bomb.counts.json"], 100 * MB, DisclosurePolicy())
    (tmp_path / "bomb.counts.json").rename(tmp_path / "bomb.json")
    result = check_output(tmp_path, ["bomb.json"], 100 * MB, DisclosurePolicy())
    assert result.files[0].shape.startswith(("JSON array", "JSON file, not summarised"))
