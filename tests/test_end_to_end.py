"""One train travels: real registry, real central (uvicorn), three station daemons as
separate processes with different data, real containers. Nothing mocked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.released import assert_cohort_released_matches_pooled, by_name, one_way, read_published
from train_builder.localnet import LocalNet
from trains.errors import CentralError

TRAIN = Path(__file__).resolve().parents[1] / "trains" / "reference" / "cohort"
MARKER = "ZZMARKER-4f1c9e"  # a category that exists only in patient data
MARKER_NUMBER = 123456.789  # a numeric value that exists only in patient data


def hospital_frame(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(20, 90, n),
            "weight": rng.normal(75, 12, n).round(2),
            "sex": rng.choice(["F", "M"], n),
            "ward": rng.choice(["cardio", "onco", "neuro"], n),
        }
    )
    frame.loc[0, "ward"] = MARKER
    frame.loc[1, "weight"] = MARKER_NUMBER
    return frame


def pht_train(*args: str, env_args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "train_builder.cli", *env_args, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


@pytest.fixture(scope="module")
def network(localnet, tmp_path_factory):
    """Three hospitals, each a station daemon with its own keys and data."""
    net = localnet
    root = tmp_path_factory.mktemp("hospitals")
    researcher, keys, token = net.add_researcher("dr-alice")
    frames = {}
    for i, name in enumerate(["hospital-a", "hospital-b", "hospital-c"]):
        frames[name] = hospital_frame(seed=i, n=60 + 25 * i)
        csv = root / f"{name}.csv"
        frames[name].to_csv(csv, index=False)
        net.add_station(name, {"cohort": csv}, trusted=[researcher])
        net.start_station(name)
    # a fourth hospital that trusts nobody yet: it refuses every train
    wary = root / "hospital-d.csv"
    hospital_frame(seed=9, n=50).to_csv(wary, index=False)
    net.add_station("hospital-d", {"cohort": wary}, trusted=[])
    net.start_station("hospital-d")
    cli = ["--central", net.central_url, "--token-file", str(token), "--keys", str(keys),
           "--network-root", net.network_root]  # fmt: skip
    return net, cli, frames


def test_cohort_train_travels_three_stations(network, tmp_path):
    net, cli, frames = network
    train = tmp_path / "cohort"
    subprocess.run(["cp", "-r", str(TRAIN), str(train)], check=True)

    built = pht_train("build", str(train), "--registry", net.registry, env_args=cli)
    assert built.returncode == 0, built.stderr
    submitted = pht_train(
        "submit",
        str(train),
        "--route",
        "hospital-a,hospital-b,hospital-c",
        "--yes",
        env_args=cli,
    )
    assert submitted.returncode == 0, submitted.stderr
    for name in ("hospital-a", "hospital-b", "hospital-c"):
        assert name in submitted.stdout  # each stop shown with its fingerprint
    train_id = submitted.stdout.strip().splitlines()[-1].split()[-1]

    waited = pht_train("wait", train_id, "--timeout", "600", env_args=cli)
    assert waited.returncode == 0, waited.stdout + waited.stderr + _logs(net)

    out = tmp_path / "result"
    result = pht_train("result", train_id, "--out", str(out), "--quiet", env_args=cli)
    assert result.returncode == 0, result.stderr
    assert "verified 3 receipts" in result.stdout
    published = read_published(out)

    # every number released equals the statistics of the pooled data
    assert_cohort_released_matches_pooled(published, list(frames.values()))
    assert one_way(by_name(published)["ward"])[MARKER] is None  # 3 patients < k: suppressed
    assert "released" in result.stdout and "suppressed by the release rules" in result.stdout

    # central holds no plaintext of any state, neither in its DB nor its blobs
    for path in net.central_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert MARKER.encode() not in content, path
            assert b"123456.789" not in content, path
            assert b'"numeric"' not in content, path
            assert b'"quantities"' not in content, path

    print(result.stdout)  # receipts with container seconds, for the issue note


def test_result_refused_when_receipt_is_tampered(network, tmp_path):
    """A receipt changed at central fails the researcher's chain check, naming the hop."""
    import sqlite3

    net, cli, _ = network
    train = tmp_path / "cohort"
    subprocess.run(["cp", "-r", str(TRAIN), str(train)], check=True)
    assert pht_train("build", str(train), "--registry", net.registry, env_args=cli).returncode == 0
    submitted = pht_train(
        "submit", str(train), "--route", "hospital-b,hospital-a", "--yes", env_args=cli
    )
    train_id = submitted.stdout.strip().splitlines()[-1].split()[-1]
    assert pht_train("wait", train_id, env_args=cli).returncode == 0, _logs(net)

    db = sqlite3.connect(net.central_dir / "central.db")
    (receipt,) = db.execute(
        'SELECT receipt FROM hops WHERE train_id = ? AND "index" = 1', (train_id,)
    ).fetchone()
    envelope = json.loads(receipt)
    sig = envelope["signatures"][0]["sig"]
    envelope["signatures"][0]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    db.execute(
        'UPDATE hops SET receipt = ? WHERE train_id = ? AND "index" = 1',
        (json.dumps(envelope), train_id),
    )
    db.commit()
    db.close()

    result = pht_train("result", train_id, "--out", str(tmp_path / "r"), env_args=cli)
    assert result.returncode == 1
    assert "receipt of hop 1 (hospital-a)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "state.json").exists()


def test_untrusted_researcher_is_refused_by_the_station(network, tmp_path):
    net, _, _ = network
    _, keys, token = net.add_researcher("mallory")
    cli = ["--central", net.central_url, "--token-file", str(token), "--keys", str(keys),
           "--network-root", net.network_root]  # fmt: skip
    train = tmp_path / "cohort"
    subprocess.run(["cp", "-r", str(TRAIN), str(train)], check=True)
    assert pht_train("build", str(train), "--registry", net.registry, env_args=cli).returncode == 0
    submitted = pht_train("submit", str(train), "--route", "hospital-c", "--yes", env_args=cli)
    train_id = submitted.stdout.strip().splitlines()[-1].split()[-1]
    waited = pht_train("wait", train_id, env_args=cli)
    assert waited.returncode == 1
    assert "does not trust signer mallory" in waited.stdout
    from central.client import CentralClient

    with (
        CentralClient(net.central_url, token.read_text().strip()) as client,
        pytest.raises(CentralError, match="failed"),
    ):
        client.result(train_id)


def test_a_refusing_stop_is_skipped_where_the_route_allows_it(network, tmp_path):
    """hospital-d does not trust dr-alice. With --skip-refusing it passes the state it was
    handed on, unchanged, with a signed ``skipped`` receipt; the train finishes on a and c,
    and the researcher's chain check accepts the gap (and says whose data is missing)."""
    net, cli, frames = network
    train = tmp_path / "cohort"
    subprocess.run(["cp", "-r", str(TRAIN), str(train)], check=True)
    assert pht_train("build", str(train), "--registry", net.registry, env_args=cli).returncode == 0
    route = "hospital-a,hospital-d,hospital-c"
    submitted = pht_train(
        "submit", str(train), "--route", route, "--skip-refusing", "--yes", env_args=cli
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "a refusing stop but the last is skipped" in submitted.stdout
    train_id = submitted.stdout.strip().splitlines()[-1].split()[-1]
    waited = pht_train("wait", train_id, "--timeout", "600", env_args=cli)
    assert waited.returncode == 0, waited.stdout + waited.stderr + _logs(net)

    status = pht_train("status", train_id, env_args=cli).stdout
    assert "hospital-d" in status and "skipped: PolicyRejected" in status
    assert "does not trust signer dr-alice" in status

    out = tmp_path / "result"
    result = pht_train("result", train_id, "--out", str(out), "--quiet", env_args=cli)
    assert result.returncode == 0, result.stderr
    assert "verified 3 receipts" in result.stdout
    assert "the result leaves out hospital-d" in result.stdout
    published = read_published(out)
    # hospital-d's data never entered it
    assert_cohort_released_matches_pooled(published, [frames["hospital-a"], frames["hospital-c"]])

    # hospital-d ran nothing for this train: no container, and it said why it passed it on
    audit = (net.stations["hospital-d"].directory / "state" / "audit.jsonl").read_text()
    events = [json.loads(line) for line in audit.splitlines()]
    mine = [e["event"] for e in events if e.get("train_id") == train_id]
    assert "passed_on" in mine and "run_started" not in mine, mine


def test_without_skipping_a_refusal_still_fails_the_train(network, tmp_path):
    net, cli, _ = network
    train = tmp_path / "cohort"
    subprocess.run(["cp", "-r", str(TRAIN), str(train)], check=True)
    assert pht_train("build", str(train), "--registry", net.registry, env_args=cli).returncode == 0
    submitted = pht_train(
        "submit", str(train), "--route", "hospital-a,hospital-d", "--yes", env_args=cli
    )
    train_id = submitted.stdout.strip().splitlines()[-1].split()[-1]
    waited = pht_train("wait", train_id, env_args=cli)
    assert waited.returncode == 1
    assert "hop 1 at hospital-d" in waited.stdout and "does not trust signer" in waited.stdout


def _logs(net: LocalNet) -> str:
    parts = []
    for path in sorted(net.root.rglob("*.log")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)
