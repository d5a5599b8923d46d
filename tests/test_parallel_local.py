"""``pht-train test --parallel``: a parallel route run locally, in-process, through the same
runtime a station's container runs; the result equals the pooled statistics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from train_builder.local_run import parse_data, run_local
from trains.train_spec import load_train_spec

TRAIN = Path(__file__).resolve().parent / "parallel_train"


@pytest.fixture
def sites(tmp_path):
    frames, files = [], []
    for i in range(3):
        rng = np.random.default_rng(7 + i)
        frame = pd.DataFrame({"weight": rng.normal(60 + 10 * i, 8, 30 + 10 * i)})
        path = tmp_path / f"site-{i}.csv"
        frame.to_csv(path, index=False)
        frames.append(frame)
        files.append(str(path))
    return frames, files


def test_parallel_rounds_fan_out_and_join_to_the_pooled_result(sites):
    frames, files = sites
    stops = parse_data(files, load_train_spec(TRAIN))
    result = run_local(TRAIN, stops, rounds=2, parallel=True)
    assert [(h.hop, h.round, h.kind) for h in result.hops] == [
        (0, 0, "local"),
        (1, 0, "local"),
        (2, 0, "local"),
        (3, 0, "aggregate"),
        (4, 1, "local"),
        (5, 1, "local"),
        (6, 1, "local"),
        (7, 1, "aggregate"),
    ]
    pooled = pd.concat(frames)["weight"]
    state = result.finalized  # the whole result; only the published statistics leave
    assert state is not None and result.published is not None
    assert state["stations"] == 3 and state["n"] == len(pooled)
    assert state["mean"] == pytest.approx(pooled.mean(), rel=1e-12)
    assert state["variance"] == pytest.approx(pooled.var(ddof=1), rel=1e-12)
    released = {q["name"]: q for q in result.published["quantities"]}
    assert released["weight/mean"]["value"] == state["mean"]
    assert released["weight/variance"]["value"] == state["variance"]
    assert released["weight/variance"]["n"] == len(pooled)


def test_the_cli_runs_a_parallel_route_and_shows_hop_kinds(sites, tmp_path):
    _, files = sites
    args = [sys.executable, "-m", "train_builder.cli", "test", str(TRAIN), "--parallel"]
    for path in files:
        args += ["--data", path]
    done = subprocess.run(
        [*args, "--rounds", "2", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "parallel round(s) joined at an aggregator" in done.stdout
    assert "hop 3 round 0 aggregator" in done.stdout and "aggregate" in done.stdout
    assert json.loads((tmp_path / "out" / "state.json").read_text()) == {}
    published = json.loads((tmp_path / "out" / "published.json").read_text())
    names = [q["name"] for q in published["quantities"]]
    assert names == ["weight/mean", "weight/variance"]


def test_a_train_without_aggregate_is_explained_without_a_traceback(tmp_path, sites):
    _, files = sites
    train = tmp_path / "no-aggregate"
    train.mkdir()
    (train / "train.toml").write_text((TRAIN / "train.toml").read_text())
    (train / "train.py").write_text(
        "def local(data, state, ctx):\n    return {'n': int(len(data['cohort']))}\n"
    )
    args = [sys.executable, "-m", "train_builder.cli", "test", str(train), "--parallel"]
    done = subprocess.run(
        [*args, "--data", files[0]], capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 1
    assert "defines no aggregate(states, ctx)" in done.stderr
    assert "Traceback" not in done.stderr
