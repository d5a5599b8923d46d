"""Every template reads its dataset by whatever name train.toml gives it (issue 13 item 6):
renaming the dataset in train.toml needs no code edit, and the result is the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from train_builder.local_run import run_local, stops_from_frames
from trains.runtime.core import read_train_toml

REFERENCE = Path(__file__).resolve().parents[1] / "trains" / "reference"
SEQUENTIAL = ["cohort", "cox", "km", "linreg", "logreg", "sgd"]


def run(train_dir: Path, tmp_path: Path, rounds: int) -> object:
    dataset = read_train_toml(train_dir)["datasets"][0]
    frames = [pd.read_csv(p) for p in sorted((train_dir / "sample").glob("*.csv"))]
    stops = stops_from_frames(frames, dataset, tmp_path / dataset)
    return run_local(train_dir, stops, rounds).state


@pytest.mark.parametrize("template", SEQUENTIAL)
def test_a_renamed_dataset_needs_no_code_edit(template, tmp_path):
    renamed = tmp_path / "renamed"
    shutil.copytree(REFERENCE / template, renamed)
    toml = renamed / "train.toml"
    (old,) = read_train_toml(renamed)["datasets"]
    toml.write_text(toml.read_text().replace(f'datasets = ["{old}"]', 'datasets = ["site_rows"]'))
    assert read_train_toml(renamed)["datasets"] == ["site_rows"]
    rounds = 3
    assert run(renamed, tmp_path, rounds) == run(REFERENCE / template, tmp_path, rounds)

