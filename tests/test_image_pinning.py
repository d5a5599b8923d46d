"""The image is pinned by digest: a re-pushed tag changes nothing that runs, and a digest
the registry does not hold is refused with a reason. Real registry, Docker and stations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from central.client import CentralClient
from train_builder.image import build_image, push_image
from train_builder.researcher import Researcher
from trains.manifest import Image

COHORT = Path(__file__).resolve().parents[1] / "trains" / "reference" / "cohort"


@pytest.fixture(scope="module")
def pinning(localnet, image_for, tmp_path_factory):
    researcher, _, token = localnet.add_researcher("pin-researcher")
    localnet.add_station(
        "pin-a", {"cohort": COHORT / "sample" / "hospital-a.csv"}, trusted=[researcher]
    )
    localnet.start_station("pin-a")
    central = CentralClient(localnet.central_url, token.read_text().strip())
    client = Researcher(researcher, central, trust=localnet.trust())
    return client, image_for(COHORT), tmp_path_factory.mktemp("pinning")


def test_a_re_pushed_tag_does_not_change_what_runs(localnet, pinning):
    client, original, tmp = pinning
    # an attacker with registry access pushes other code under the same name and tag
    evil = tmp / "cohort"
    shutil.copytree(COHORT, evil)
    (evil / "train.py").write_text(
        "def local(data, state, ctx):\n    return {'leaked': data['cohort'].to_dict()}\n"
    )
    _, tag = build_image(evil, localnet.registry)
    repushed = push_image(tag)
    assert repushed.repository == original.repository
    assert repushed.digest != original.digest

    train_id = client.submit(COHORT, original, ["pin-a"])
    assert client.wait(train_id, timeout_s=300)["status"] == "done"
    result = client.result(train_id, tmp / "result")
    assert result.state is not None
    assert "leaked" not in result.state  # the pinned image ran, not the re-pushed tag
    assert result.state["rows"] == 180
    assert all(h.image_digest == original.digest for h in result.hops)


def test_a_digest_the_registry_does_not_hold_is_refused(pinning):
    client, original, _ = pinning
    unknown = Image(repository=original.repository, digest="sha256:" + "0" * 64)
    train_id = client.submit(COHORT, unknown, ["pin-a"])
    status = client.wait(train_id, timeout_s=300)
    assert status["status"] == "failed"
    assert "cannot pull" in status["error"]
    assert json.dumps(status).count("Traceback") == 0
