"""FedAvg ends its route early on real stations (issue 15 item 3): three station daemons
with the FedAvg sample, an aggregator station without data, real containers, central and
registry. Asked for 12 rounds, the route ends at the aggregate hop of the round whose
averaging moved no weight by ``tol``; central marks the rest not_needed, the researcher's
receipt chain verifies (``Researcher.result``) and what is published equals the in-process
route's. Prints the route's hops and wall time. How close the early model is to running
every round is checked in process, with the sample's own tol
(tests/test_fedavg_early_end.py): here a larger tol keeps the route short for CI, and a
tol bounds one round's change, not what the remaining rounds would add."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

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


TOL = 0.1  # ends after 3 training rounds on the sample: 20 hops instead of 48 (CI time)


def with_parameters(folder: Path, stop_early: bool) -> Path:
    """The reference FedAvg with ``tol = TOL`` and ``stop_early`` as given."""
    shutil.copytree(REFERENCE / "fedavg", folder)
    toml = folder / "train.toml"
    text = toml.read_text().replace("tol = 0.05", f"tol = {TOL}")
    toml.write_text(text.replace("stop_early = true", f"stop_early = {str(stop_early).lower()}"))
    parameters = read_train_toml(folder)["parameters"]
    assert parameters["tol"] == TOL and parameters["stop_early"] is stop_early
    return folder


def test_fedavg_asked_for_12_rounds_ends_early_as_it_does_in_process(
    researcher, image_for, tmp_path
):
    early_folder = with_parameters(tmp_path / "early", stop_early=True)
    early, status, early_s = travel(researcher, image_for, early_folder, tmp_path / "e")
    hops = ROUNDS * (len(STATIONS) + 1)
    print(f"\nfedavg {ROUNDS} rounds asked, tol {TOL}: ended after {len(early.hops)} of "
          f"{hops} hops in {early_s:.1f} s")  # fmt: skip
    # ended at an aggregate hop, signed converged; central marked the rest not needed
    assert early.hops[-1].converged and early.hops[-1].station == AGGREGATOR
    assert len(early.hops) < hops and len(early.hops) % (len(STATIONS) + 1) == 0
    states = [h["status"] for h in status["hops"]]
    assert states.count("not_needed") == hops - len(early.hops)
    # the scores say whose they are: the model one averaging before the published one
    trained = early.quantity("training_rounds")["value"]
    assert early.quantity("scored_model_training_rounds")["value"] == trained - 1
    assert len(early.hops) == (trained + 1) * (len(STATIONS) + 1)
    # containers, sealing and routing change nothing: the in-process route ends alike
    frames = [pd.read_csv(REFERENCE / "fedavg" / "sample" / f"{s}.csv") for s in SITES]
    stops = stops_from_frames(frames, "cohort", tmp_path / "here")
    here = run_local(early_folder, stops, ROUNDS, parallel=True)
    assert len(here.hops) == len(early.hops)
    assert_same(early.published, here.published)
