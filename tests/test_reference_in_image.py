"""The reference trains inside the real base image, whose libraries are older than the
host's (pandas 1.5, numpy 1.24, scipy 1.10, scikit-learn 1.2): every sample route gives
the same result in the container as in-process here. One locked-down container, ~10 s."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.test_reference_trains import REFERENCE, run_route, sites

pytestmark = pytest.mark.docker

ROUTES = {"linreg": 1, "logreg": 8, "km": 1, "cox": 10, "sgd": 7}

# Runs in the container: the same in-process route as the tests, over the sample CSVs.
IN_IMAGE = """
import json, sys, tempfile
from pathlib import Path
import pandas as pd
from trains.runtime import Context, run_train
from trains.runtime.core import read_train_toml
ref = Path("/src/trains/reference")
results = {}
for name, rounds in json.loads(sys.argv[1]).items():
    frames = [pd.read_csv(p) for p in sorted((ref / name / "sample").glob("*.csv"))]
    dataset = read_train_toml(ref / name)["datasets"][0]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for i, frame in enumerate(frames):
            (base / f"d{i}" / dataset).mkdir(parents=True)
            frame.to_csv(base / f"d{i}" / dataset / "data.csv", index=False)
        previous = base / "in"
        previous.mkdir()
        hops = rounds * len(frames)
        for hop in range(hops):
            out = base / f"o{hop}"
            out.mkdir()
            stop = hop % len(frames)
            ctx = Context(station=f"site-{stop}", round=hop // len(frames), hop=hop,
                          is_last=hop == hops - 1, stop=stop, stops=len(frames), rounds=rounds)
            state = run_train(ref / name, previous, base / f"d{stop}", out, ctx)
            previous = out
    results[name] = state
print(json.dumps(results))
"""


def assert_same(got: Any, want: Any, path: str = "") -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), path
        for key in want:
            assert_same(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), path
    else:
        assert got == want, path


def test_reference_trains_give_the_same_result_in_the_base_image(docker_required, tmp_path):
    import docker

    client = docker.from_env()
    output = client.containers.run(
        "pht-base:latest",
        entrypoint=["python3", "-c", IN_IMAGE, json.dumps(ROUTES)],
        environment={"PYTHONPATH": "/src"},
        volumes={str(REFERENCE.parents[1]): {"bind": "/src", "mode": "ro"}},
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": "size=64m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit="1g",
        remove=True,
        stderr=True,
    )
    in_image = json.loads(output.decode().strip().splitlines()[-1])
    for name, rounds in ROUTES.items():
        here = run_route(REFERENCE / name, sites(name), tmp_path / name, rounds=rounds)
        assert_same(in_image[name], here, name)
