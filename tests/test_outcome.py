"""What a hop tells the outside about its run is a category, never something the train
chose: the whole class, over every exit code and every way an output can break a rule.
Real files and the station's real disclosure checks; the container runs are in
tests/test_covert_channels.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from station.config import CsvSource, DisclosurePolicy, Policy, StationConfig, StationInfo
from station.outcome import check_result, control_and_pack
from station.runner import RunResult
from station.verify import VerifiedHop
from tests.factories import make_manifest
from trains.errors import (
    DisclosureRefused,
    StateInvalid,
    StateTooLarge,
    TrainFailed,
    TrainRefused,
)
from trains.keys import Identity
from trains.manifest import Resources
from trains.runtime.refusal import (
    CONTRACT_BROKEN,
    CONTRACT_EXIT,
    CONVERGED_EXIT,
    EXIT_BASE,
    EXIT_CODES,
    REFUSALS,
    Refusal,
    refusal_of,
)

RESOURCES = Resources(memory_mb=256, cpus=1.0, timeout_s=60, max_output_mb=1)
SECRET = "age-61-ZZSECRET"


def run_result(exit_code: int, **flags: bool) -> RunResult:
    return RunResult(exit_code=exit_code, seconds=1.0, timed_out=False, log="x", **flags)


def test_every_exit_code_maps_to_one_of_a_few_fixed_sentences():
    """The train chooses its exit code (``os._exit(age)``): 255 codes give only the
    refusal sentences, the broken contract's and one for any other failure, none naming
    the code. 80 is success (the train converged, trains/early_end.py: whether the hop may
    end the route is checked by ``ends_route``)."""
    sentences = {}
    for code in [c for c in range(1, 256) if c != CONVERGED_EXIT]:
        sentence = run_result(code).failure(RESOURCES)
        assert sentence is not None and str(code) not in sentence, (code, sentence)
        sentences[code] = sentence
    assert len(set(sentences.values())) == len(REFUSALS) + 2  # and contract, and failed
    assert sentences[CONTRACT_EXIT] == CONTRACT_BROKEN
    assert run_result(0).failure(RESOURCES) is None
    assert run_result(CONVERGED_EXIT).failure(RESOURCES) is None


def test_the_categories_name_only_limits_the_researcher_set():
    cases = {
        "timed_out": "timeout of 60s",
        "oom_killed": "memory of 256 MB",
        "output_too_large": "max_output_mb of 1 MB",
    }
    for flag, words in cases.items():
        result = replace(run_result(137), **{flag: True})
        failure = result.failure(RESOURCES)
        assert failure is not None and words in failure and "137" not in failure
        assert result.refusal is None  # a killed train did not refuse


def test_a_refusal_is_a_code_of_the_vocabulary_in_the_reserved_range():
    codes = list(EXIT_CODES.values())
    assert len(set(codes)) == len(REFUSALS) and all(EXIT_BASE < c < EXIT_BASE + 10 for c in codes)
    for code, exit_code in EXIT_CODES.items():
        assert refusal_of(exit_code) == code and Refusal(code).exit_code == exit_code
        with pytest.raises(TrainRefused, match=f"refused \\({code}\\)"):
            check_result(run_result(exit_code), RESOURCES, "hospital-a")
    assert refusal_of(EXIT_BASE) is None and refusal_of(2) is None
    assert refusal_of(CONTRACT_EXIT) is None  # a bug, not a refusal: never skipped
    with pytest.raises(ValueError, match="unknown refusal code"):
        Refusal("age_is_61")
    assert isinstance(Refusal("too_few_rows", "3 rows"), ValueError)  # as reference trains


def test_a_failed_run_names_the_station_that_keeps_its_log():
    with pytest.raises(TrainFailed, match="its log stays at station hospital-a") as caught:
        check_result(run_result(61), RESOURCES, "hospital-a")
    assert not isinstance(caught.value, TrainRefused) and "61" not in str(caught.value)


def hop_parts(tmp_path: Path):
    """A verified one-stop hop of alice's at hospital-a, a station config that refuses small
    cells, and an output folder holding state.json and a count table."""
    researcher, station = Identity.generate("alice"), Identity.generate("hospital-a")
    manifest = make_manifest(
        researcher,
        [station],
        outputs=["state.json", "table.counts.csv"],
        resources=RESOURCES,
    )
    verified = VerifiedHop(manifest, "sha256:" + "0" * 64, manifest.hop(0), [])
    csv = tmp_path / "d.csv"
    csv.write_text("x\n1\n")
    config = StationConfig(
        station=StationInfo(name="hospital-a", central_url="http://127.0.0.1:1"),
        datasets={"cohort": CsvSource(path=csv)},
        policy=Policy(disclosure=DisclosurePolicy(small_cells="refuse")),
        base_dir=tmp_path / "station",
    )
    output = tmp_path / "output"
    output.mkdir()
    (output / "state.json").write_text("{}")
    (output / "table.counts.csv").write_text("n\n100\n")
    return researcher, verified, config, output


@pytest.fixture
def hop(tmp_path):
    _, verified, config, output = hop_parts(tmp_path)
    return verified, config, output, tmp_path / "output.tar", tmp_path / "hop.log"


def attempt(hop) -> Exception:
    verified, config, output, archive, log = hop
    log.write_text("container log\n")
    with pytest.raises((StateInvalid, DisclosureRefused)) as caught:
        control_and_pack(output, archive, verified, 1 << 20, config, log, verified.hop.is_last)
    message = str(caught.value)
    assert SECRET not in message and "61" not in message, message
    return caught.value


def test_an_undeclared_file_is_refused_without_its_name(hop):
    (hop[2] / f"{SECRET}.json").write_text("{}")
    error = attempt(hop)
    assert type(error) is StateInvalid and "does not match the train's declared" in str(error)
    assert SECRET in hop[4].read_text()  # the station's own log says which file


def test_a_link_named_after_data_is_refused_without_its_name(hop):
    (hop[2] / f"{SECRET}.json").symlink_to("/etc/hostname")
    assert type(attempt(hop)) is StateInvalid


def test_how_many_cells_were_small_is_not_said(hop):
    rows = "\n".join("1" for _ in range(61))
    (hop[2] / "table.counts.csv").write_text(f"n\n{rows}\n")
    error = attempt(hop)
    assert type(error) is DisclosureRefused and "below the station's minimum" in str(error)
    assert "61 cells" in hop[4].read_text()


def test_an_unreadable_count_file_is_invalid_without_its_bytes(hop):
    (hop[2] / "table.counts.csv").write_bytes(b"n\n61\n\xff\xfe" + SECRET.encode())
    assert type(attempt(hop)) is StateInvalid


def test_a_huge_csv_field_is_invalid_without_its_content(hop):
    """A count file's field past the parser's bound (station/output_parse.py) is refused,
    and the refusal quotes none of it."""
    from station.output_parse import CSV_FIELD_BYTES

    verified, config, output, archive, log = hop
    field = SECRET * (CSV_FIELD_BYTES // len(SECRET) + 2)
    (output / "table.counts.csv").write_text("n\n" + field + "\n")
    with pytest.raises((StateInvalid, DisclosureRefused)) as caught:
        control_and_pack(output, archive, verified, 4 << 20, config, log, verified.hop.is_last)
    assert type(caught.value) is StateInvalid
    assert SECRET not in str(caught.value) and "61" not in str(caught.value)


def test_an_output_over_the_cap_does_not_say_its_size(hop):
    verified, config, output, archive, log = hop
    (output / "state.json").write_bytes(b" " * 1_234_567)
    with pytest.raises(StateTooLarge) as caught:
        control_and_pack(output, archive, verified, 1 << 20, config, log, verified.hop.is_last)
    assert "1234567" not in str(caught.value) and "max_output_mb of 1 MB" in str(caught.value)


def test_a_clean_output_is_packed(hop):
    verified, config, output, archive, log = hop
    disclosure = control_and_pack(
        output, archive, verified, 1 << 20, config, log, verified.hop.is_last
    )
    # a one-hop route: this is the release point, which adds its report (published.json)
    names = ["published.json", "state.json", "table.counts.csv"]
    assert [f.name for f in disclosure.files] == names
    assert disclosure.held  # the untyped files wait for the admin (policy.disclosure.untyped)
    assert archive.stat().st_size > 0
    assert Path(log).exists() is False  # nothing to say
