"""FedAvg ends its route early on real stations (issue 15 item 3): three station daemons
with the FedAvg sample, an aggregator station without data, real containers, central and
registry. Asked for 12 rounds, the route ends at the aggregate hop of the round whose
averaging moved no weight by ``tol``; central marks the rest not_needed, the researcher's
receipt chain verifies (``Researcher.result``), and the model equals the one of running
every round to within ``tol``. Prints both routes' hops and wall times."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from central.client import CentralClient
from tests.test_reference_in_image import assert_same
from train_builder.local_run import run_local, stops_from_frames
from train_builder.localnet import LocalNet
from train_builder.researcher import Researcher, Result
from trains.runtime.core import read_train_toml

pytestmark = pytest.mark.docker

REFERENCE = Path(__file__).resolve().parents[1] / "trains" / "reference"
SITES = ["hospital-a", "hospital-b", "hospital-c"]
STATIONS = ["fe-a", "fe-b", "fe-c"]
AGGREGATOR = "fe-agg"
ROUNDS = 12


@pytest.fixture(scope="module")
def researcher(localnet: LocalNet):
    identity, _, token = localnet.add_researcher("dr-early-end")
    for name, site in zip(STATIONS, SITES, strict=True):
        data = {"cohort": REFERENCE / "fedavg" / "sample" / f"{site}.csv"}
        localnet.add_station(name, data, trusted=[identity])
        localnet.start_station(name)
    localnet.add_station(AGGREGATOR, {}, trusted=[identity])
    localnet.start_station(AGGREGATOR)
    client = CentralClient(localnet.central_url, token.read_text().strip())
    with Researcher(identity, client, trust=localnet.trust()) as r:
        yield r


def travel(
    researcher: Researcher, image_for: Any, folder: Path, out: Path
) -> tuple[Result, dict[str, Any], float]:
    image = image_for(folder)  # built and pushed before the clock starts
    started = time.monotonic()
    train_id = researcher.submit(
        folder, image, STATIONS, ROUNDS, mode="parallel", aggregator=AGGREGATOR
    )
    status = researcher.wait(train_id, timeout_s=900, poll_s=0.2)
    wall = time.monotonic() - started
    assert status["status"] == "done", status
    return researcher.result(train_id, out), status, wall  # verifies every receipt


def test_fedavg_asked_for_12_rounds_ends_early_with_the_model_of_every_round(
    researcher, image_for, tmp_path
):
    every = tmp_path / "every-round"
    shutil.copytree(REFERENCE / "fedavg", every)
    toml = every / "train.toml"
    toml.write_text(toml.read_text().replace("stop_early = true", "stop_early = false"))
    assert read_train_toml(every)["parameters"]["stop_early"] is False
    tol = read_train_toml(REFERENCE / "fedavg")["parameters"]["tol"]

    early, status, early_s = travel(researcher, image_for, REFERENCE / "fedavg", tmp_path / "e")
    full, _, full_s = travel(researcher, image_for, every, tmp_path / "f")
    hops = ROUNDS * (len(STATIONS) + 1)
    print(
        f"\nfedavg {ROUNDS} rounds asked: every round {len(full.hops)} hops {full_s:.1f} s; "
        f"ends when converged {len(early.hops)} hops {early_s:.1f} s"
    )
    assert len(full.hops) == hops and not full.hops[-1].converged
    # ended at an aggregate hop, signed converged; central marked the rest not needed
    assert early.hops[-1].converged and early.hops[-1].station == AGGREGATOR
    assert len(early.hops) < hops and len(early.hops) % (len(STATIONS) + 1) == 0
    states = [h["status"] for h in status["hops"]]
    assert states.count("not_needed") == hops - len(early.hops)
    # the same model as every round, to within tol
    w_early = np.array(early.quantity("model/weights")["weights"])
    w_full = np.array(full.quantity("model/weights")["weights"])
    assert np.abs(w_early - w_full).max() < tol
    # the scores say whose they are: the model one averaging before the published one
    trained = early.quantity("training_rounds")["value"]
    assert early.quantity("scored_model_training_rounds")["value"] == trained - 1
    assert len(early.hops) == (trained + 1) * (len(STATIONS) + 1)
    # containers, sealing and routing change nothing: the in-process route ends alike
    frames = [pd.read_csv(REFERENCE / "fedavg" / "sample" / f"{s}.csv") for s in SITES]
    stops = stops_from_frames(frames, "cohort", tmp_path / "here")
    here = run_local(REFERENCE / "fedavg", stops, ROUNDS, parallel=True)
    assert len(here.hops) == len(early.hops)
    assert_same(early.published, here.published)
