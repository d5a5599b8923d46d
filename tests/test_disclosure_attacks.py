"""Attacks on the release point's disclosure control (issue 12), each of which must fail.

The attack trains (tests/attack_trains/disclosure_*) run in real containers (runc) from
``pht-base:latest``, write what a train that over-shares would write, and the station's own
check (``station.disclosure.check_output`` at the release point, with its child parser)
decides what leaves. The attack train writes ``published.json`` itself: the runtime's API
is a convenience, not a gate, so the station must hold whatever the bytes say.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from station.config import DisclosurePolicy
from station.disclosure import check_output
from trains.errors import DisclosureRefused
from trains.published import PUBLISHED_FILE

MB = 1024 * 1024
ATTACKS = Path(__file__).parent / "attack_trains"


def published(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((folder / PUBLISHED_FILE).read_text())
    return loaded


def release(folder: Path, declared: list[str], **policy: Any):
    return check_output(folder, declared, MB, DisclosurePolicy(**policy), release=True)


def write_published(folder: Path, *quantities: dict[str, Any]) -> None:
    (folder / PUBLISHED_FILE).write_text(json.dumps({"format": 1, "quantities": list(quantities)}))
    (folder / "state.json").write_text("{}")


def table(name: str, counts: list[Any], rows: list[str] | None = None) -> dict[str, Any]:
    rows = rows or [f"g{i}" for i in range(len(counts))]
    return {
        "type": "frequency_table",
        "name": name,
        "rows": rows,
        "columns": ["n"],
        "counts": [[c] for c in counts],
    }


# --- small cells in disguise: refused, never passed -------------------------------------------


@pytest.mark.parametrize("cell", [2.0, "2", -2, {"n": 2}, [2], True, 1e308, float("nan")], ids=repr)
def test_a_count_that_is_not_a_non_negative_integer_is_refused(tmp_path, cell):
    counts = [50, cell, 40]
    text = json.dumps({"format": 1, "quantities": [table("ward", counts)]})
    (tmp_path / PUBLISHED_FILE).write_text(text)
    (tmp_path / "state.json").write_text("{}")
    with pytest.raises(DisclosureRefused, match="non-negative integer count"):
        release(tmp_path, ["state.json"])


def test_a_small_cell_is_suppressed_with_its_margin_partner(tmp_path):
    write_published(tmp_path, table("ward", [50, 2, 40, 30]))
    disclosure = release(tmp_path, ["state.json"])
    doc = published(tmp_path)
    counts = [row[0] for row in doc["quantities"][0]["counts"]]
    # the small cell and the smallest other one: the total cannot give the first away
    assert counts == [50, None, 40, None]
    rules = {(n["what"], n["rule"].split(":")[0]) for n in doc["release"]["suppressed"]}
    assert rules == {("cell [g1, n]", "threshold"), ("cell [g3, n]", "secondary")}
    assert disclosure.release is not None and disclosure.release.suppressed == 2
    assert not disclosure.held


def test_two_way_table_no_line_keeps_a_single_hidden_cell(tmp_path):
    counts = [[30, 3, 25], [40, 35, 20], [50, 45, 60]]
    quantity = {**table("t", [0, 0, 0]), "columns": ["a", "b", "c"], "counts": counts}
    write_published(tmp_path, quantity)
    release(tmp_path, ["state.json"])
    out = published(tmp_path)["quantities"][0]["counts"]
    hidden = {(i, j) for i in range(3) for j in range(3) if out[i][j] is None}
    assert (0, 1) in hidden
    for line in [
        *([(i, j) for j in range(3)] for i in range(3)),
        *([(i, j) for i in range(3)] for j in range(3)),
    ]:
        assert sum(c in hidden for c in line) != 1


def test_differencing_two_tables_over_almost_the_same_patients(tmp_path):
    everyone = table("all", [120, 80])
    all_but_one = table("all_but_one", [119, 80])
    write_published(tmp_path, everyone, all_but_one)
    release(tmp_path, ["state.json"])
    doc = published(tmp_path)
    assert doc["quantities"][0]["counts"] == [[120], [80]]
    assert doc["quantities"][1]["counts"] == [[None], [None]]
    assert doc["release"]["suppressed"][0]["rule"].startswith("differencing")


def test_a_median_over_a_tiny_group_is_suppressed(tmp_path):
    median = {"type": "statistic", "name": "median_age", "kind": "median", "value": 63.0, "n": 3}
    quantile = {**median, "name": "q90", "kind": "quantile", "value": 80.0}
    write_published(tmp_path, median, quantile)
    release(tmp_path, ["state.json"])
    assert [q["value"] for q in published(tmp_path)["quantities"]] == [None, None]


def test_a_regression_on_one_patient_is_suppressed(tmp_path):
    fit = {
        "type": "regression",
        "name": "ols",
        "terms": ["intercept", "age"],
        "coefficients": [1.0, 0.5],
        "standard_errors": [0.0, 0.0],
        "n": 1,
        "residual_df": 0,
    }
    write_published(tmp_path, fit)
    release(tmp_path, ["state.json"])
    q = published(tmp_path)["quantities"][0]
    assert q["coefficients"] == [None, None] and q["standard_errors"] == [None, None]


def test_model_parameters_of_a_tiny_site_are_withheld(tmp_path):
    weights = {
        "type": "model_parameters",
        "name": "w",
        "weights": [0.1, 2.0],
        "n": 500,
        "site_min_n": 2,
    }
    write_published(tmp_path, weights)
    release(tmp_path, ["state.json"])
    assert published(tmp_path)["quantities"][0]["weights"] == [None, None]


def test_a_train_cannot_bring_its_own_median_or_release_section(tmp_path):
    curve = {
        "type": "survival_curve",
        "name": "km",
        "times": [1.0, 2.0],
        "at_risk": [50, 40],
        "events": [1, 1],
        "median": 654.0,
    }
    write_published(tmp_path, curve)
    release(tmp_path, ["state.json"])
    assert published(tmp_path)["quantities"][0]["median"] is None  # recomputed: not reached
    doc = {"format": 1, "quantities": [], "release": {"suppressed": []}}
    (tmp_path / PUBLISHED_FILE).write_text(json.dumps(doc))
    with pytest.raises(DisclosureRefused, match=r"published\.json"):
        release(tmp_path, ["state.json"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),  # never a RecursionError
        ('{"format": 1, "quantities": [' + ",".join(["{}"] * 1001) + "]}", "more than 1000"),
        ("x" * (17 * MB), "above the"),  # beyond the parse bound: refused unread
    ],
    ids=["deep", "many", "huge"],
)
def test_a_hostile_published_json_is_refused_within_bounds(tmp_path, body, message):
    (tmp_path / PUBLISHED_FILE).write_text(body)
    (tmp_path / "state.json").write_text("{}")
    with pytest.raises(DisclosureRefused, match=message):
        check_output(tmp_path, ["state.json"], 64 * MB, DisclosurePolicy(), release=True)


# --- untyped files go to the policy: held (default) or refused --------------------------------


UNTYPED = {
    "cells.csv": b"ward,n\na,2\nb,40\n",
    "names.csv": b"ward_a_has_2_patients\n1\n",  # a small count as a column name
    "state.json": json.dumps({"median": 654.0, "n_events": 3}).encode(),
    "cells.npz": b"PK\x03\x04 an npz is a zip of arrays",
    "cells.parquet": b"PAR1 parquet bytes PAR1",
}


@pytest.mark.parametrize("name", sorted(UNTYPED))
def test_untyped_files_are_held_by_default_and_refused_on_request(tmp_path, name):
    (tmp_path / name).write_bytes(UNTYPED[name])
    disclosure = release(tmp_path, [name])
    assert disclosure.held
    assert disclosure.release is not None
    assert [u["name"] for u in disclosure.release.untyped] == [name]
    assert published(tmp_path)["release"]["untyped"] == [name]
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    (tmp_path / name).write_bytes(UNTYPED[name])
    with pytest.raises(DisclosureRefused, match="untyped files"):
        release(tmp_path, [name], untyped="refuse")


def test_an_empty_state_beside_published_is_not_untyped(tmp_path):
    write_published(tmp_path, table("ward", [50, 40]))
    disclosure = release(tmp_path, ["state.json"])
    assert not disclosure.held
    assert {f.name for f in disclosure.files} == {"state.json", PUBLISHED_FILE}


def test_a_secure_trains_spent_sums_beside_published_are_not_untyped(tmp_path):
    """secure = true declares secure.json: at the release point it holds no parts (they
    were unmasked and summed at the round's last stop), so it is not held as untyped; one
    that still carries parts is."""
    write_published(tmp_path, table("ward", [50, 40]))
    spent = {"contributions": 0, "format": 1, "masked_by": None, "parts": {}}
    (tmp_path / "secure.json").write_text(json.dumps(spent))
    (tmp_path / "state.json").write_text("{}")
    disclosure = release(tmp_path, ["state.json", "secure.json"])
    assert not disclosure.held
    carrying = spent | {"contributions": 3, "parts": {"n": {"shape": [], "ring": ["0"]}}}
    (tmp_path / "secure.json").write_text(json.dumps(carrying))
    write_published(tmp_path, table("ward", [50, 40]))
    assert release(tmp_path, ["state.json", "secure.json"]).held


def test_intermediate_hops_never_see_the_typed_rules(tmp_path):
    write_published(tmp_path, table("ward", [50, 2]))
    from trains.errors import StateInvalid

    with pytest.raises(StateInvalid, match="undeclared"):
        check_output(tmp_path, ["state.json"], MB, DisclosurePolicy(), release=False)


# --- the same attacks from a real container ---------------------------------------------------


@pytest.fixture(scope="module")
def disclosure_image(docker_required):
    """tests/attack_trains/disclosure built FROM pht-base:latest; removed afterwards."""
    import contextlib
    import io
    import tarfile

    import docker

    client = docker.from_env(timeout=300)
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = b"FROM pht-base:latest\nCOPY --chown=0:0 train/ /opt/train/\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        for path in sorted((ATTACKS / "disclosure").glob("train.*")):
            tar.add(path, arcname=f"train/{path.name}")
    context.seek(0)
    tag = "pht-disclosure-attack/disclosure:test"
    image, _ = client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    yield str(image.id)
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(tag)


def run_attack(image_id: str, tmp_path: Path, attack: str) -> Path:
    from station.runner import DockerRunner, SandboxLimits
    from trains.manifest import Resources

    dirs = [tmp_path / n for n in ("input", "data", "output")]
    for d in dirs:
        d.mkdir()
    (dirs[0] / "state.json").write_text(json.dumps({"attack": attack}))
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    runner = DockerRunner(SandboxLimits(pids=64, tmp_mb=16, shm_mb=8, log_mb=1), runtime="runc")
    env = {
        "PHT_MODE": "local",
        "PHT_STATION": "attacked",
        "PHT_ROUND": "0",
        "PHT_HOP": "0",
        "PHT_LAST_HOP": "1",
    }
    resources = Resources(memory_mb=256, cpus=0.5, timeout_s=60, max_output_mb=8)
    result = runner.run(
        image_id,
        input_dir=dirs[0],
        data_dir=dirs[1],
        output_dir=dirs[2],
        env=env,
        resources=resources,
    )
    assert result.exit_code == 0, result.log[-2000:]
    return dirs[2]


DECLARED = ["state.json", "cells.csv", "cells.npz", "cells.parquet"]


@pytest.mark.docker
@pytest.mark.parametrize("attack", ["float", "string", "negative", "nested"])
def test_a_container_publishing_a_disguised_count_is_refused(disclosure_image, tmp_path, attack):
    output = run_attack(disclosure_image, tmp_path, attack)
    with pytest.raises(DisclosureRefused, match="non-negative integer count"):
        release(output, DECLARED)


@pytest.mark.docker
def test_a_containers_small_cells_are_suppressed_and_its_files_held(disclosure_image, tmp_path):
    output = run_attack(disclosure_image, tmp_path, "plain")
    disclosure = release(output, DECLARED)
    assert published(output)["quantities"][0]["counts"] == [[50], [None], [None]]
    assert disclosure.held  # csv, npz, parquet and a state with a median: for the admin
    assert disclosure.release is not None
    assert sorted(u["name"] for u in disclosure.release.untyped) == sorted(DECLARED)
    shown = json.dumps(disclosure.to_dict())
    assert "654" not in shown and "ward_b_has_2" not in shown  # no value, no column name


@pytest.mark.docker
def test_a_containers_untyped_files_are_refused_on_request(disclosure_image, tmp_path):
    output = run_attack(disclosure_image, tmp_path, "plain")
    with pytest.raises(DisclosureRefused, match="untyped files"):
        release(output, DECLARED, untyped="refuse")


def test_central_hears_fixed_words_not_the_names_a_train_chose(tmp_path):
    from station.outcome import output_refusal
    from trains.manifest import Resources

    quantity = {**table("ZZCHANNEL_2_patients", [50, 40]), "counts": [[50], [2.0]]}
    write_published(tmp_path, quantity)
    with pytest.raises(DisclosureRefused) as caught:
        release(tmp_path, ["state.json"])
    assert "ZZCHANNEL" in str(caught.value)  # for the hop's log at the station
    told = output_refusal(caught.value, Resources())
    assert isinstance(told, DisclosureRefused) and "ZZCHANNEL" not in str(told)
    assert "typed output format" in str(told)
