"""The cohort reference train, run in-process through the same runtime the image uses."""

from pathlib import Path

import pandas as pd
import pytest

from train_builder.pooled import (
    assert_matches_pooled,
    pooled_cohort_stats,
    pooled_crosstab,
    pooled_histogram,
)
from trains.runtime import Context, run_train
from trains.runtime.core import TrainCodeError

TRAIN = Path(__file__).resolve().parents[1] / "trains" / "reference" / "cohort"
SITES = sorted((TRAIN / "sample").glob("*.csv"))


def run_route(
    tmp_path: Path, frames: list[pd.DataFrame], rounds_dir: str = "r", train: Path = TRAIN
) -> dict:
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
        state = run_train(train, previous, data.parent, out, ctx).state
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
    assert run_train(train, inputs, tmp_path, tmp_path / "out", ctx).state == {"seen": [10, 20, 30]}
    (train / "train.py").write_text("def local(data, state, ctx):\n    return {}\n")
    with pytest.raises(TrainCodeError, match="aggregate"):
        run_train(train, inputs, tmp_path, tmp_path / "out", ctx)


# ---------------------------------------------------------------- histograms and cross-tables

AGE_EDGES = [30, 40, 50, 60, 70, 80]
BMI_EDGES = [10, 18.5, 25, 30, 45]


def configured(tmp_path: Path, min_cell: int, histograms: str, crosstabs: str) -> Path:
    """The cohort train with its [parameters] replaced (TOML inline tables as written)."""
    folder = tmp_path / f"cohort-{min_cell}"
    folder.mkdir()
    (folder / "train.py").write_text((TRAIN / "train.py").read_text())
    text = (TRAIN / "train.toml").read_text()
    head = text[: text.index("[parameters]")]
    (folder / "train.toml").write_text(
        f"{head}[parameters]\nmin_cell = {min_cell}\n"
        f"histograms = {histograms}\ncrosstabs = {crosstabs}\n"
    )
    return folder


def with_extras(tmp_path: Path, min_cell: int) -> Path:
    return configured(
        tmp_path,
        min_cell,
        f"{{ age = {AGE_EDGES}, bmi = {BMI_EDGES} }}",
        '[["sex", "diagnosis"], ["smoker", "diagnosis"]]',
    )


def test_histograms_and_crosstabs_equal_pooled_pandas(tmp_path):
    frames = [pd.read_csv(p) for p in SITES]
    result = run_route(tmp_path, frames, train=with_extras(tmp_path, min_cell=0))
    for column, edges in (("age", AGE_EDGES), ("bmi", BMI_EDGES)):
        assert result["histograms"][column] == pooled_histogram(frames, column, edges)
    # bmi has missing values (left out), age reaches past the last edge (counted above)
    assert sum(result["histograms"]["bmi"]["counts"]) < 540
    assert result["histograms"]["age"]["above"] > 0 and result["histograms"]["age"]["below"] > 0
    for a, b in (("sex", "diagnosis"), ("smoker", "diagnosis")):
        assert result["crosstabs"][f"{a} x {b}"] == pooled_crosstab(frames, a, b)
    # the existing output stays as it was
    assert_matches_pooled(result, pooled_cohort_stats(frames, min_cell=0))


def test_small_cells_are_suppressed_and_cannot_be_recovered_from_totals(tmp_path):
    frames = [pd.read_csv(p) for p in SITES]
    result = run_route(tmp_path, frames, train=with_extras(tmp_path, min_cell=5))
    for a, b in (("sex", "diagnosis"), ("smoker", "diagnosis")):
        pooled = pooled_crosstab(frames, a, b)
        got = result["crosstabs"][f"{a} x {b}"]
        assert set(got) == set(pooled)
        for x, row in pooled.items():
            for y, count in row.items():
                if count < 5:
                    assert got[x][y] is None, (x, y)  # every small cell is hidden
                else:
                    assert got[x][y] in (None, count), (x, y)  # shown cells are exact
        # the attack: a row or column total (published as categorical counts) minus the
        # shown cells would give a hidden cell back if it were the only one in its line
        lines = [list(row.values()) for row in got.values()]
        lines += [[got[x][y] for x in got] for y in next(iter(got.values()))]
        for line in lines:
            assert line.count(None) != 1, (a, b, line)
    # sarcoidosis (1 woman, 1 man) is hidden, and so is one more cell in each sex's row
    table = result["crosstabs"]["sex x diagnosis"]
    assert table["F"]["sarcoidosis"] is None and table["M"]["sarcoidosis"] is None
    assert table["F"]["copd"] is None and table["F"]["none"] == 144
    # a histogram is one line: its total is the column's published count
    for column, edges in (("age", AGE_EDGES), ("bmi", BMI_EDGES)):
        pooled = pooled_histogram(frames, column, edges)
        got = result["histograms"][column]
        cells = [got["below"], *got["counts"], got["above"]]
        want = [pooled["below"], *pooled["counts"], pooled["above"]]
        assert all(c is None for c, w in zip(cells, want, strict=True) if w < 5)
        assert all(c in (None, w) for c, w in zip(cells, want, strict=True))
        assert cells.count(None) != 1


def test_histogram_and_crosstab_parameters_are_checked(tmp_path):
    frames = [pd.read_csv(SITES[0])]
    bad = configured(tmp_path, 5, "{ age = [50, 40] }", "[]")
    with pytest.raises(ValueError, match="histogram edges of 'age' must be at least two"):
        run_route(tmp_path, frames, "bad", train=bad)
    (tmp_path / "x").mkdir()
    missing = configured(tmp_path / "x", 5, "{}", '[["sex", "ward"]]')
    with pytest.raises(ValueError, match=r"no column\(s\) \['ward'\]; fix histograms / crosstabs"):
        run_route(tmp_path, frames, "missing", train=missing)
