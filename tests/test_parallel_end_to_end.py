"""Parallel rounds for real: a registry, central (uvicorn), three station daemons and an
aggregator station as separate processes, real containers. Each round fans out to par-a,
par-b and par-c at once and joins at par-agg, which holds no patient data at all."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from train_builder.image import write_image_file

TRAIN = Path(__file__).resolve().parent / "parallel_train"
MARKER = "ZZPARALLEL-7d2e51"  # a category that exists only in patient data
STOPS = ("par-a", "par-b", "par-c")


def pht_train(*args: str, cli: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "train_builder.cli", *cli, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


@pytest.fixture(scope="module")
def parallel_net(localnet, image_for, tmp_path_factory):
    net = localnet
    root = tmp_path_factory.mktemp("parallel")
    me, keys, token = net.add_researcher("dr-parallel")
    frames = {}
    for i, name in enumerate(STOPS):
        rng = np.random.default_rng(100 + i)
        frame = pd.DataFrame(
            {"weight": rng.normal(70 + 5 * i, 10, 40 + 15 * i).round(3), "ward": "cardio"}
        )
        frame.loc[0, "ward"] = MARKER
        frames[name] = frame
        csv = root / f"{name}.csv"
        frame.to_csv(csv, index=False)
        net.add_station(name, {"cohort": csv}, trusted=[me])
        net.start_station(name)
    net.add_station("par-agg", {}, trusted=[me])  # the aggregator holds no data
    net.start_station("par-agg")
    train = root / "train"
    shutil.copytree(TRAIN, train)
    write_image_file(train, image_for(TRAIN))
    cli = ["--central", net.central_url, "--token-file", str(token), "--keys", str(keys),
           "--network-root", net.network_root]  # fmt: skip
    return net, cli, frames, train


def test_two_parallel_rounds_equal_the_pooled_mean_and_variance(parallel_net, tmp_path):
    net, cli, frames, train = parallel_net
    submitted = pht_train(
        "submit",
        str(train),
        "--route",
        ",".join(STOPS),
        "--aggregator",
        "par-agg",
        "--rounds",
        "2",
        "--yes",
        cli=cli,
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "aggregator par-agg" in submitted.stdout and "signing key sha256:" in submitted.stdout
    train_id = submitted.stdout.strip().splitlines()[-1].split()[-1]

    waited = pht_train("wait", train_id, "--timeout", "600", cli=cli)
    assert waited.returncode == 0, waited.stdout + waited.stderr + _logs(net)
    status = pht_train("status", train_id, cli=cli)
    assert "aggregate" in status.stdout and status.stdout.count("local") == 6

    out = tmp_path / "result"
    result = pht_train("result", train_id, "--out", str(out), "--quiet", cli=cli)
    assert result.returncode == 0, result.stderr
    assert "verified 8 receipts" in result.stdout  # 2 x (3 local + 1 aggregate)
    # the aggregator, the release point, released the two statistics and kept the state
    assert json.loads((out / "state.json").read_text()) == {}
    published = json.loads((out / "published.json").read_text())
    released = {q["name"]: q for q in published["quantities"]}
    assert set(released) == {"weight/mean", "weight/variance"}
    assert published["release"]["suppressed"] == []

    pooled = pd.concat(frames.values())["weight"]
    assert released["weight/mean"]["n"] == released["weight/variance"]["n"] == len(pooled)
    assert released["weight/mean"]["value"] == pytest.approx(pooled.mean(), rel=1e-12)
    assert released["weight/variance"]["value"] == pytest.approx(pooled.var(ddof=1), rel=1e-12)

    # central holds no plaintext: no patient data, no partial or aggregate state
    for path in net.central_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert MARKER.encode() not in content, path
            assert b'"variance"' not in content and b'"sum"' not in content, path
            assert b"weight/variance" not in content, path


def _logs(net) -> str:
    parts = []
    for path in sorted(net.root.rglob("*.log")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)
