"""A train with more than one output file (``ctx.output_dir``), as docs/researcher.md
("More than one output file") describes it: every declared file must be written at every
hop, intermediate ones included; each hop's files replace the previous hop's, so the
researcher receives the last hop's; a file missing at any hop fails that hop, in
``pht-train test`` as at a station (disclosure check 1)."""

from __future__ import annotations

import pytest

from station.config import CsvSource, DisclosurePolicy, Policy, StationConfig, StationInfo
from station.outcome import control_and_pack
from station.verify import VerifiedHop
from tests.factories import make_manifest
from train_builder.cli import main
from trains.errors import StateInvalid
from trains.keys import Identity

EVERY_HOP = """\
def local(data, state, ctx):
    n = (state or {"n": 0})["n"] + len(data["cohort"])
    (ctx.output_dir / "summary.csv").write_text(f"station,rows_so_far\\n{ctx.station},{n}\\n")
    return {"n": n}
"""
ONLY_AT_THE_END = """\
def local(data, state, ctx):
    return {"n": (state or {"n": 0})["n"] + len(data["cohort"])}


def finalize(state, ctx):
    (ctx.output_dir / "summary.csv").write_text(f"rows\\n{state['n']}\\n")
    return state
"""


@pytest.fixture
def train(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["init", "two-files", "--template", "cohort"]) == 0
    capsys.readouterr()
    folder = tmp_path / "two-files"
    toml = folder / "train.toml"
    text = toml.read_text()
    assert 'outputs = ["state.json"]' in text
    toml.write_text(
        text.replace('outputs = ["state.json"]', 'outputs = ["state.json", "summary.csv"]')
    )
    return folder


def local_test(train, capsys, code: str) -> tuple[int, str]:
    (train / "train.py").write_text(code)
    sample = train / "sample"
    a, b = sample / "hospital-a.csv", sample / "hospital-b.csv"
    rc = main(
        ["test", str(train), "--data", str(a), "--data", str(b), "--out", str(train.parent / "out")]
    )
    return rc, capsys.readouterr().err


def test_every_declared_file_written_at_every_hop_reaches_you_from_the_last(train, capsys):
    rc, err = local_test(train, capsys, EVERY_HOP)
    assert rc == 0, err
    out = train.parent / "out"
    # with the release report the stations' rules add at the last hop (published.json)
    assert sorted(p.name for p in out.iterdir()) == ["published.json", "state.json", "summary.csv"]
    assert (out / "summary.csv").read_text().splitlines()[1].startswith("hospital-b,")


def test_a_declared_file_missing_at_an_intermediate_hop_fails_that_hop(train, capsys):
    rc, err = local_test(train, capsys, ONLY_AT_THE_END)
    assert rc == 1
    assert "at hop 0 (hospital-a, round 0) the train did not write its declared outputs" in err
    assert "['summary.csv']" in err


def test_a_station_refuses_an_intermediate_hop_missing_a_declared_file(tmp_path):
    """What the network does with the same train: the first of two stops checks its output
    like the last one (station/disclosure.py check 1) and fails the hop in fixed words."""
    researcher = Identity.generate("alice")
    stations = [Identity.generate("hospital-a"), Identity.generate("hospital-b")]
    manifest = make_manifest(researcher, stations, outputs=["state.json", "summary.csv"])
    verified = VerifiedHop(manifest, "sha256:" + "0" * 64, manifest.hop(0), [])
    csv = tmp_path / "d.csv"
    csv.write_text("x\n1\n")
    config = StationConfig(
        station=StationInfo(name="hospital-a", central_url="http://127.0.0.1:1"),
        datasets={"cohort": CsvSource(path=csv)},
        policy=Policy(disclosure=DisclosurePolicy()),
        base_dir=tmp_path / "station",
    )
    output = tmp_path / "output"
    output.mkdir()
    (output / "state.json").write_text('{"n": 1}')
    log = tmp_path / "hop.log"
    log.write_text("")
    with pytest.raises(StateInvalid, match="does not match the train's declared outputs"):
        control_and_pack(
            output, tmp_path / "out.tar", verified, 1 << 20, config, log, verified.hop.is_last
        )
    assert "did not write its declared outputs ['summary.csv']" in log.read_text()
    assert not (tmp_path / "out.tar").exists()  # nothing packed, so nothing sealed
