"""Datasets placed for a hop without a copy where that is safe: a reflink, or a hard link
to a source that is readable by all and writable by none; else a copy. Neither the
station's preparation of the work folder nor the train can change the source."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from station.config import load_config
from station.datasources import materialise, place_file
from station.hop import _open_for_container
from tests.test_sandbox_attacks import (  # noqa: F401  (fixtures used by name)
    REFUSED_FIRST,
    HopDirs,
    attack_image,
    run,
    runner,
    runtime,
    state_of,
)
from tests.test_station_config import write

CSV = "id,age\n1,50\n2,61\n3,47\n"


def source(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "cohort.csv"
    path.write_text(CSV)
    path.chmod(mode)
    return path


def test_a_read_only_source_is_linked_not_copied(tmp_path):
    src = source(tmp_path, 0o444)
    how = place_file(src, tmp_path / "placed.csv")
    assert how in ("reflink", "link")  # ext4 has no reflinks: a link
    if how == "link":
        assert (tmp_path / "placed.csv").stat().st_ino == src.stat().st_ino
    assert (tmp_path / "placed.csv").read_text() == CSV


@pytest.mark.parametrize("mode", [0o644, 0o664, 0o400, 0o440])
def test_a_writable_or_not_world_readable_source_is_copied(tmp_path, mode):
    """Writable: a link would not be a snapshot. Not readable by all: the container's user
    could not read it with its own mode (a copy gets the station's)."""
    src = source(tmp_path, mode)
    how = place_file(src, tmp_path / "placed.csv")
    assert how in ("reflink", "copy")
    assert (tmp_path / "placed.csv").stat().st_ino != src.stat().st_ino
    (tmp_path / "placed.csv").write_text("changed")
    assert src.read_text() == CSV


def test_materialise_places_a_read_only_csv(tmp_path):
    source(tmp_path, 0o444)
    config = load_config(write(tmp_path, "[datasets.cohort]\npath = 'cohort.csv'\n"))
    out = materialise(config, "cohort", tmp_path / "run" / "cohort")
    assert out.name == "data.csv" and out.read_text() == CSV


def test_preparing_the_work_folder_leaves_a_linked_source_as_it_is(tmp_path):
    """Attack on ourselves: the hop makes its work folder readable for the container
    (chmod 0644 of every file). Through a hard link that would make the admin's read-only
    source writable. Files with more than one link are left alone."""
    src = source(tmp_path, 0o444)
    work = tmp_path / "work"
    (work / "data" / "cohort").mkdir(parents=True)
    (work / "output").mkdir()
    place_file(src, work / "data" / "cohort" / "data.csv")
    _open_for_container(work)
    assert stat.S_IMODE(src.stat().st_mode) == 0o444


def test_a_train_cannot_change_a_linked_source(runtime, runner, attack_image, tmp_path):  # noqa: F811
    """The readonly_mounts attack train against a dataset placed by a hard link: the
    container sees a read-only copy in a volume, the source keeps its bytes and mode."""
    src = source(tmp_path, 0o444)
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    hop = HopDirs(tmp_path / "input", tmp_path / "data", tmp_path / "output")
    for folder in (hop.input, hop.data / "cohort", hop.output):
        folder.mkdir(parents=True)
    (hop.input / "state.json").write_text('{"count": 41}')
    assert place_file(src, hop.data / "cohort" / "data.csv") in ("reflink", "link")
    for path in [hop.input, hop.data, hop.data / "cohort", hop.output, hop.input / "state.json"]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    os.chmod(tmp_path, 0o755)

    result = run(runner, attack_image("readonly_mounts"), hop)

    assert result.ok, result.log
    seen = state_of(hop)
    assert seen["rows_seen"] == 3  # it could read the data
    # the file is read-only by its mode too: gVisor may say so (EACCES) before EROFS
    for attempt in ("overwrite_data", "delete_data", "rename_data", "chmod_data"):
        assert seen[attempt] in REFUSED_FIRST[runtime], (attempt, seen[attempt])
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    assert stat.S_IMODE(src.stat().st_mode) == 0o444
