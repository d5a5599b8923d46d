"""Reference trains over real stations: three station daemons (separate processes, each with
its own keys and its own site CSVs), real containers, the session's real registry and
central. The researcher's verified result must equal the pooled fit to 1e-6 relative;
FedAvg, on parallel rounds joined at a fourth station that holds no data, must give
exactly the model of the in-process run of the same rounds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test

from tests.conftest import SITE_AGGREGATOR, SITE_SAMPLES, SITE_STATIONS
from tests.test_reference_in_image import assert_same
from train_builder.local_run import run_local, stops_from_frames
from train_builder.localnet import LocalNet
from train_builder.researcher import Researcher, Result
from train_builder.timeline import STEPS, timeline_lines
from trains.runtime.core import read_train_toml

pytestmark = pytest.mark.docker

REFERENCE = Path(__file__).resolve().parents[1] / "trains" / "reference"
STATIONS = SITE_STATIONS
AGGREGATOR = SITE_AGGREGATOR  # joins FedAvg's parallel rounds; holds no patient data
SITES = SITE_SAMPLES  # station i holds the sample of site i
REL = 1e-6


def sample(train: str) -> list[pd.DataFrame]:
    return [pd.read_csv(REFERENCE / train / "sample" / f"{site}.csv") for site in SITES]


@pytest.fixture(scope="module")
def researcher(sites: Researcher) -> Researcher:
    """The session's three stations (conftest ``sites``: the logreg sample as 'cohort', the
    km sample as 'survival'), its aggregator station without data, and a researcher they
    all trust."""
    return sites


def travel(
    researcher: Researcher,
    net: LocalNet,
    image_for: Any,
    train: str,
    rounds: int,
    out: Path,
    aggregator: str | None = None,
) -> Result:
    folder = REFERENCE / train
    if aggregator is None:
        train_id = researcher.submit(folder, image_for(folder), STATIONS, rounds=rounds)
        route = STATIONS * rounds
    else:
        train_id = researcher.submit(
            folder, image_for(folder), STATIONS, rounds, mode="parallel", aggregator=aggregator
        )
        route = [*STATIONS, aggregator] * rounds
    # a stalled route fails within minutes (and shows the station logs), not CI's hour
    status = researcher.wait(train_id, timeout_s=300, poll_s=0.2)
    assert status["status"] == "done", f"{status}\n{logs(net)}"
    result = researcher.result(train_id, out)  # verifies every receipt before opening
    # the whole route, or (a converged train) every hop up to the one that ended it
    assert [h.station for h in result.hops] == route[: len(result.hops)]
    assert len(result.hops) == len(route) or result.hops[-1].converged
    ended = [h["status"] for h in status["hops"]].count("not_needed")
    assert ended == len(route) - len(result.hops)
    # every hop's timeline: each station signed all its steps (issue 15 item 1)
    now, signed = researcher.timeline(train_id)
    for hop in result.hops:
        assert [p.step for p in signed[hop.hop].timeline] == list(STEPS)
        assert signed[hop.hop].timeline[STEPS.index("container")].seconds > 0
    summary = "\n".join(timeline_lines(now, signed))
    assert "where the time went" in summary and "claim_and_delivery" in summary
    # at the release point only the typed quantities left; the state stayed there
    assert result.state == {} and result.published is not None
    return result


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)


def test_logreg_over_three_stations_equals_pooled_logit(researcher, localnet, image_for, tmp_path):
    # 10 rounds asked; Newton converges sooner, and the route ends there (issue 15 item 3)
    result = travel(researcher, localnet, image_for, "logreg", 10, tmp_path / "result")
    assert result.hops[-1].converged and len(result.hops) < 10 * len(STATIONS)
    params = read_train_toml(REFERENCE / "logreg")["parameters"]
    pooled = pd.concat(sample("logreg"), ignore_index=True)
    columns = {"intercept": np.ones(len(pooled))}
    for item in params["covariates"]:
        name, _, level = item.partition("=")
        columns[item] = (pooled[name].astype(str) == level).astype(float) if level else pooled[name]
    logit = sm.Logit(pooled[params["outcome"]].astype(float), pd.DataFrame(columns)).fit(
        disp=0, tol=1e-12
    )
    # released: the regression with its residual df, nothing suppressed (df >> 10)
    got = result.quantity("logreg")
    assert result.published is not None and result.published["release"]["suppressed"] == []
    assert got["n"] == len(pooled) and got["residual_df"] == len(pooled) - len(got["terms"])
    assert got["terms"] == list(logit.params.index)
    for name, estimate, se in zip(
        got["terms"], got["coefficients"], got["standard_errors"], strict=True
    ):
        assert close(estimate, logit.params[name]), name
        assert close(se, logit.bse[name]), name


def test_km_over_three_stations_equals_pooled_lifelines(researcher, localnet, image_for, tmp_path):
    result = travel(researcher, localnet, image_for, "km", 1, tmp_path / "result")
    pooled = pd.concat(sample("km"), ignore_index=True)
    labels = sorted(set(pooled["treatment"]))
    assert result.published is not None
    released = {q["name"] for q in result.published["quantities"]}
    assert released == {*(f"km/{g}" for g in labels), "km/sizes", "km/logrank_chi2"}
    sizes = result.quantity("km/sizes")
    for note in result.published["release"]["suppressed"]:  # only the curves' tails
        assert note["quantity"] in {f"km/{g}" for g in labels}, note
        assert note["rule"] == "threshold: fewer than 10 at risk", note
    for label, (n, n_events) in zip(sizes["rows"], sizes["counts"], strict=True):
        part = pooled[pooled["treatment"] == label]
        assert (n, n_events) == (len(part), int(part["event"].sum()))
        kmf = KaplanMeierFitter().fit(part["time"], part["event"])
        got = result.quantity(f"km/{label}")
        # released up to where fewer than k are at risk; every released step equals pooled
        times = np.asarray(got["times"])
        assert len(times) > 0 and min(got["at_risk"]) >= 10
        np.testing.assert_allclose(
            got["survival"], kmf.survival_function_.loc[times].iloc[:, 0], rtol=REL
        )
        assert got["median"] is not None and close(got["median"], kmf.median_survival_time_)
    test = multivariate_logrank_test(pooled["time"], pooled["treatment"], pooled["event"])
    chi2 = result.quantity("km/logrank_chi2")
    assert chi2["n"] == len(pooled) and close(chi2["value"], test.test_statistic)


def test_fedavg_over_parallel_rounds_gives_the_model_of_the_same_rounds_in_process(
    researcher, localnet, image_for, tmp_path
):
    rounds = 5
    result = travel(
        researcher, localnet, image_for, "fedavg", rounds, tmp_path / "result", AGGREGATOR
    )
    # the same rounds in-process, released under the same default rules
    # (tests/test_reference_fedavg.py checks those against pooled training): containers,
    # sealing and routing change nothing in the model nor in what is released
    stops = stops_from_frames(sample("fedavg"), "cohort", tmp_path / "here")
    here = run_local(REFERENCE / "fedavg", stops, rounds, parallel=True)
    assert here.published is not None
    assert_same(result.published, here.published)
    n_test = sum(round(0.25 * len(f)) for f in sample("fedavg"))
    assert result.quantity("accuracy")["n"] == n_test
    assert result.quantity("model/weights")["n"] == sum(len(f) for f in sample("fedavg")) - n_test


def logs(net: LocalNet) -> str:
    parts = []
    for name in [*STATIONS, AGGREGATOR]:
        station = net.stations[name]
        if station.log.exists():
            parts.append(f"--- {name}\n{station.log.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)
