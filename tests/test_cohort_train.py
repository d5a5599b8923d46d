"""The cohort reference train, run in-process through the same runtime the image uses."""

from pathlib import Path

import pandas as pd
import pytest

from train_builder.pooled import assert_matches_pooled, pooled_cohort_stats
from trains.runtime import Context, run_train
from trains.runtime.core import TrainCodeError

TRAIN = Path(__file__).resolve().parents[1] / "trains" / "reference" / "cohort"
SITES = sorted((TRAIN / "sample").glob("*.csv"))


def run_route(tmp_path: Path, frames: list[pd.DataFrame], rounds_dir: str = "r") -> dict:
    previous = tmp_path / f"{rounds_dir}-in"
    previous.mkdir()
    state = None
    for hop, frame in enumerate(frames):
        data = tmp_path / f"{rounds_dir}-data{hop}" / "cohort"
        data.mkdir(parents=True)
        frame.to_csv(data / "data.csv", index=False)
        out = tmp_path / f"{rounds_dir}-out{hop}"
        out.mkdir()
        ctx = Context(station=f"s{hop}", hop=hop, is_last=hop == len(frames) - 1)
        state = run_train(TRAIN, previous, data.parent, out, ctx)
        previous = out
    assert state is not None
    return state


def test_three_sites_equal_pooled(tmp_path):
    frames = [pd.read_csv(p) for p in SITES]
    result = run_route(tmp_path, frames)
    assert result["stations"] == 3
    assert_matches_pooled(result, pooled_cohort_stats(frames))
    # the rare diagnosis (2 patients) is suppressed, the common ones are not
    assert result["categorical"]["diagnosis"]["sarcoidosis"] is None
    assert result["categorical"]["diagnosis"]["none"] > 5


def test_order_of_stops_does_not_matter(tmp_path):
    frames = [pd.read_csv(p) for p in SITES]
    forward = run_route(tmp_path, frames, "f")
    backward = run_route(tmp_path, frames[::-1], "b")
    assert_matches_pooled(backward, pooled_cohort_stats(frames))
    assert forward["categorical"] == backward["categorical"]


def test_small_column_is_suppressed_entirely(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0, None, None, None, None], "g": ["a"] * 6})
    result = run_route(tmp_path, [frame])
    assert result["numeric"]["x"] == {
        "count": None,
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
    }
    assert result["categorical"]["g"] == {"a": 6}


def test_train_without_local_function_is_explained(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.toml").write_text('[train]\nname = "bad"\n')
    (bad / "train.py").write_text("def aggregate(states, ctx):\n    return {}\n")
    (tmp_path / "out").mkdir()
    with pytest.raises(TrainCodeError, match="local"):
        run_train(bad, tmp_path, tmp_path, tmp_path / "out", Context())


def test_aggregate_mode_hands_every_partial_state_in_route_order(tmp_path):
    train = tmp_path / "avg"
    train.mkdir()
    (train / "train.toml").write_text('datasets = []\n[train]\nname = "avg"\n')
    (train / "train.py").write_text(
        "def local(data, state, ctx):\n    return {'x': ctx.stop}\n"
        "def aggregate(states, ctx):\n    return {'seen': [s['x'] for s in states]}\n"
    )
    inputs = tmp_path / "in"
    for i, x in enumerate([10, 20, 30]):
        (inputs / str(i)).mkdir(parents=True)
        (inputs / str(i) / "state.json").write_text(f'{{"x": {x}}}')
    (tmp_path / "out").mkdir()
    ctx = Context(mode="aggregate", is_last=False)
    assert run_train(train, inputs, tmp_path, tmp_path / "out", ctx) == {"seen": [10, 20, 30]}
    (train / "train.py").write_text("def local(data, state, ctx):\n    return {}\n")
    with pytest.raises(TrainCodeError, match="aggregate"):
        run_train(train, inputs, tmp_path, tmp_path / "out", ctx)
