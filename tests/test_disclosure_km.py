"""The km example of issue 12, reproduced with synthetic data shaped like MASS ``Aids2``.

Four stations, one curve per transmission category; the group ``mother`` has 7 patients over
all stations, whose untrimmed curve reaches 0.5 only at t=654, when 2 are at risk: that
"median" is one patient's death day. The reference km train runs its whole route through
``pht-train test``'s runner (the same runtime a station's container runs) and the release
rules a station applies; what is released must not carry that median, nor the group's small
counts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from station.config import DisclosurePolicy
from station.disclosure_rules import Rules, apply_rules
from train_builder.local_run import LocalStop, run_local
from trains.published import SurvivalCurve
from trains.published_read import from_document

KM = Path(__file__).parents[1] / "trains" / "reference" / "km"
# the mother group: (time, event); at risk 7, 6, 5 at t=30, 120, 198 and 4 from t=250 on
MOTHER = [(30, 1), (120, 0), (198, 1), (250, 0), (400, 0), (654, 1), (900, 0)]


def aids2_like(tmp_path: Path) -> list[LocalStop]:
    rng = np.random.default_rng(12)
    stops = []
    for s in range(4):
        n = 60
        frame = pd.DataFrame(
            {
                "time": rng.integers(1, 2000, n),
                "event": rng.integers(0, 2, n),
                "T.categ": rng.choice(["hs", "hsid", "id"], n),
            }
        )
        mine = pd.DataFrame(
            [(t, e, "mother") for i, (t, e) in enumerate(MOTHER) if i % 4 == s],
            columns=["time", "event", "T.categ"],
        )
        frame = pd.concat([frame, mine], ignore_index=True)
        path = tmp_path / f"station{s}.csv"
        frame.to_csv(path, index=False)
        stops.append(LocalStop(f"station{s}", {"survival": path}))
    return stops


def km_train(tmp_path: Path) -> Path:
    folder = tmp_path / "km"
    shutil.copytree(KM, folder)
    toml = (folder / "train.toml").read_text().replace('group = "treatment"', 'group = "T.categ"')
    (folder / "train.toml").write_text(toml)
    return folder


def test_the_untrimmed_median_is_one_patients_death_day():
    """The premise: without the rules, the mother group's median is t=654."""
    times = [t for t, _ in MOTHER]
    curve = SurvivalCurve(
        "m", [float(t) for t in times], [7, 6, 5, 4, 3, 2, 1], [e for _, e in MOTHER]
    )
    _, notes = apply_rules([curve], Rules(k=1))
    assert not notes
    released, _ = apply_rules([curve], Rules(k=1))
    assert isinstance(released[0], SurvivalCurve) and released[0].median == 654.0


@pytest.mark.parametrize("k", [5, DisclosurePolicy().k])
def test_km_on_aids2_like_data_releases_no_single_patient(tmp_path, k):
    policy = DisclosurePolicy(k=k)
    result = run_local(km_train(tmp_path), aids2_like(tmp_path), disclosure=policy)
    assert result.state == {}  # only the typed quantities leave
    assert result.published is not None
    quantities = {
        q.name: q
        for q in from_document({"format": 1, "quantities": result.published["quantities"]})
    }
    mother = quantities["km/mother"]
    assert isinstance(mother, SurvivalCurve)
    assert mother.median is None  # never 654.0
    assert all(n >= k for n in mother.at_risk)
    if k == 5:
        assert mother.times == [30.0, 120.0, 198.0]  # the curve stops at t=198, as in the issue
    sizes = quantities["km/sizes"]
    row = sizes.rows.index("mother")  # type: ignore[union-attr]
    assert sizes.counts[row] == [None, None]  # type: ignore[union-attr]  # n=7, n_events=3
    rules = {
        (n["quantity"], n["rule"].split(":")[0]) for n in result.published["release"]["suppressed"]
    }
    assert ("km/mother", "threshold") in rules and ("km/sizes", "threshold") in rules
    # the report names no time of a step it cut: each is one patient's day
    report = json.dumps(result.published["release"])
    cut = [float(t) for t, _ in MOTHER if t > max(mother.times, default=0.0)]
    assert cut and not any(f"{t:g}" in report for t in cut), report
    # the other groups are released whole, with their medians from their released curves
    for g in ("hs", "hsid", "id"):
        curve = quantities[f"km/{g}"]
        assert isinstance(curve, SurvivalCurve) and len(curve.times) > 10
