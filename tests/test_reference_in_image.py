"""The reference trains inside the real base image, whose libraries are older than the
host's (pandas 1.5, numpy 1.24, scipy 1.10, scikit-learn 1.2): every sample route (and
FedAvg's and FedProx's parallel rounds) gives the same result in the container as
in-process here, ending early where a converged train ends its route. One locked-down
container, ~10 s."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.test_reference_fedavg import run_parallel
from tests.test_reference_trains import REFERENCE, run_route, sites

pytestmark = pytest.mark.docker

ROUTES = {"linreg": 1, "logreg": 8, "km": 1, "cox": 10, "sgd": 7}
PARALLEL = {"fedavg": 5, "fedprox": 5}  # parallel rounds: stops, then the aggregator

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
            last = hop == hops - 1
            ctx = Context(station=f"site-{stop}", round=hop // len(frames), hop=hop,
                          is_last=last, stop=stop, stops=len(frames), rounds=rounds,
                          may_end=stop == len(frames) - 1 and not last)
            ran = run_train(ref / name, previous, base / f"d{stop}", out, ctx)
            state, previous = ran.state, out
            if ran.converged:  # the route ends here, as a station's would (issue 15)
                break
    results[name] = state
for name, rounds in json.loads(sys.argv[2]).items():
    frames = [pd.read_csv(p) for p in sorted((ref / name / "sample").glob("*.csv"))]
    n = len(frames)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for i, frame in enumerate(frames):
            (base / f"d{i}" / "cohort").mkdir(parents=True)
            frame.to_csv(base / f"d{i}" / "cohort" / "data.csv", index=False)
        previous = base / "in"
        previous.mkdir()
        for r in range(rounds):
            for s in range(n):
                (base / f"p{r}" / str(s)).mkdir(parents=True)
                ctx = Context(station=f"site-{s}", round=r, hop=r * (n + 1) + s, is_last=False,
                              mode="local", stop=s, stops=n, rounds=rounds)
                run_train(ref / name, previous, base / f"d{s}", base / f"p{r}" / str(s), ctx)
            (base / f"g{r}").mkdir()
            ctx = Context(station="aggregator", round=r, hop=r * (n + 1) + n,
                          is_last=r == rounds - 1, mode="aggregate", stop=n, stops=n, rounds=rounds)
            state = run_train(ref / name, base / f"p{r}", base / "d0", base / f"g{r}", ctx).state
            previous = base / f"g{r}"
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
        entrypoint=["python3", "-c", IN_IMAGE, json.dumps(ROUTES), json.dumps(PARALLEL)],
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
    for name, rounds in PARALLEL.items():
        here = run_parallel(REFERENCE / name, sites(name), tmp_path / name, rounds=rounds)
        assert_same(in_image[name], here, name)
