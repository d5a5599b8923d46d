"""Central swaps a station's keys (issue 10, reproduction 1), and its relatives, against
real processes: central (uvicorn) on SQLite edited by hand as the attacker did, the real
``pht-train``, ``pht-central`` and ``pht-network`` commands, and a station daemon.

Who lies here: central (or whoever controls its database or sits in front of it) serves
keys, enrolment statements and revocation lists; the researcher must believe none of it
without the pinned network root or its own confirmed fingerprints."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from train_builder.templates import scaffold
from trains.enrolment import ENROLMENT_TYPE, EnrolmentStatement, NetworkRoot, enrol
from trains.keys import Identity
from trains.signing import sign


def run(module: str, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="module")
def world(localnet, tmp_path_factory):
    net = localnet
    tag = uuid.uuid4().hex[:6]
    root = tmp_path_factory.mktemp("station-keys")
    researcher, keys, token = net.add_researcher(f"kx-{tag}")
    train = root / "train"
    scaffold(train, "cohort")
    (train / ".pht-image.json").write_text(  # refused before any pull: no image needed
        json.dumps({"repository": f"{net.registry}/pht/x", "digest": "sha256:" + "1" * 64})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHT_")}
    env.update(
        PHT_CENTRAL_URL=net.central_url,
        PHT_TOKEN_FILE=str(token),
        PHT_KEYS_DIR=str(keys),
        PHT_PROFILE=str(root / "profile.toml"),  # known_stations.json lives beside it
    )
    return net, tag, researcher, train, env


def pinned(env: dict[str, str], net) -> dict[str, str]:
    return {**env, "PHT_NETWORK_ROOT": net.network_root}


def submit(train: Path, route: str, env: dict[str, str]):
    return run("train_builder.cli", "submit", str(train), "--route", route, "--yes", env=env)


def trains_of(net, researcher: str) -> int:
    with sqlite3.connect(net.central_dir / "central.db") as db:
        (count,) = db.execute(
            "SELECT count(*) FROM trains JOIN parties ON parties.id = trains.researcher_id "
            "WHERE parties.name = ?",
            (researcher,),
        ).fetchone()
    return int(count)


def swap_keys(net, station: str, keys) -> None:
    """What the attacker did: replace the station's keys in central's database."""
    with sqlite3.connect(net.central_dir / "central.db") as db:
        db.execute(
            "UPDATE parties SET signing_key = ?, sealing_key = ? "
            "WHERE role = 'station' AND name = ?",
            (keys.signing_key, keys.sealing_key, station),
        )


def store_enrolment(net, envelope, tmp_path: Path):
    path = tmp_path / "statement.json"
    path.write_text(envelope.model_dump_json())
    stored = run(
        "central.cli", "admin", "set-enrolment", "--data-dir", str(net.central_dir), str(path)
    )
    assert stored.returncode == 0, stored.stderr


def test_keys_swapped_in_centrals_database_are_refused(world):
    net, tag, researcher, train, env = world
    station = net.add_station(f"kx-swap-{tag}", {}, trusted=[])
    attacker = Identity.generate(station.name).public
    swap_keys(net, station.name, attacker)
    refused = submit(train, station.name, pinned(env, net))
    assert refused.returncode == 1
    assert station.identity.public.signing_fingerprint in refused.stderr  # what the root endorsed
    assert attacker.signing_fingerprint in refused.stderr  # what central served
    assert "nothing was submitted" in refused.stderr
    assert trains_of(net, researcher.name) == 0


def test_keys_swapped_after_confirming_them_are_refused_without_a_root(world):
    net, tag, researcher, train, env = world
    station = net.add_station(f"kx-known-{tag}", {}, trusted=[], enrolled=False)
    public = station.identity.public
    trusted = run(
        "train_builder.cli", "stations", "trust", station.name,
        "--fingerprint", public.signing_fingerprint,
        "--fingerprint", public.sealing_fingerprint, env=env,
    )  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    attacker = Identity.generate(station.name).public
    swap_keys(net, station.name, attacker)
    refused = submit(train, station.name, env)
    assert refused.returncode == 1
    assert public.signing_fingerprint in refused.stderr
    assert attacker.signing_fingerprint in refused.stderr
    assert f"pht-train stations forget {station.name}" in refused.stderr
    assert trains_of(net, researcher.name) == 0


def test_an_unendorsed_station_is_refused(world):
    net, tag, researcher, train, env = world
    station = net.add_station(f"kx-bare-{tag}", {}, trusted=[], enrolled=False)
    refused = submit(train, station.name, pinned(env, net))
    assert refused.returncode == 1
    assert f"station {station.name} is not enrolled in the network" in refused.stderr
    assert trains_of(net, researcher.name) == 0


def test_an_expired_enrolment_is_refused(world, tmp_path):
    net, tag, researcher, train, env = world
    station = net.add_station(f"kx-old-{tag}", {}, trusted=[])
    root, now = net.network(), datetime.now(UTC).replace(microsecond=0)
    old = EnrolmentStatement(
        root=root.public,
        station=station.identity.public,
        issued_at=now - timedelta(days=60),
        expires_at=now - timedelta(days=30),
    )
    store_enrolment(net, sign(old, ENROLMENT_TYPE, root.signing), tmp_path)
    refused = submit(train, station.name, pinned(env, net))
    assert refused.returncode == 1
    assert f"the enrolment of station {station.name} expired" in refused.stderr
    assert trains_of(net, researcher.name) == 0


def test_a_revoked_station_is_refused(world):
    net, tag, researcher, train, env = world
    station = net.add_station(f"kx-gone-{tag}", {}, trusted=[])
    revoked = run(
        "trains.network_cli", "revoke", station.name, "--dir", str(net.root_dir),
        "--reason", "its keys were stolen",
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    served = run(
        "central.cli", "admin", "set-revocations", "--data-dir", str(net.central_dir),
        str(net.root_dir / "revocations.json"),
    )  # fmt: skip
    assert served.returncode == 0, served.stderr
    refused = submit(train, station.name, pinned(env, net))
    assert refused.returncode == 1
    assert f"station {station.name} was revoked" in refused.stderr
    assert "its keys were stolen" in refused.stderr
    assert trains_of(net, researcher.name) == 0


def test_an_enrolment_signed_by_another_root_is_refused(world, tmp_path):
    net, tag, researcher, train, env = world
    station = net.add_station(f"kx-alien-{tag}", {}, trusted=[])
    other = NetworkRoot.generate("other-network")
    store_enrolment(net, enrol(other, station.identity.public, 30), tmp_path)
    refused = submit(train, station.name, pinned(env, net))
    assert refused.returncode == 1
    assert "not by the network root you pinned" in refused.stderr
    assert other.public.signing_fingerprint in refused.stderr
    assert trains_of(net, researcher.name) == 0


def test_an_enrolment_for_another_name_is_refused(world):
    """Central serves station q with p's keys and p's genuine statement."""
    net, tag, researcher, train, env = world
    p = net.add_station(f"kx-p-{tag}", {}, trusted=[])
    q = net.add_station(f"kx-q-{tag}", {}, trusted=[])
    with sqlite3.connect(net.central_dir / "central.db") as db:
        (statement,) = db.execute(
            "SELECT enrolment FROM parties WHERE role = 'station' AND name = ?", (p.name,)
        ).fetchone()
        db.execute(
            "UPDATE parties SET enrolment = ? WHERE role = 'station' AND name = ?",
            (statement, q.name),
        )
    swap_keys(net, q.name, p.identity.public)
    refused = submit(train, q.name, pinned(env, net))
    assert refused.returncode == 1
    assert f"a statement for station {p.name}, not for {q.name}" in refused.stderr
    assert trains_of(net, researcher.name) == 0


def test_first_contact_is_refused_even_with_yes_until_confirmed(world):
    net, tag, researcher, train, env = world
    station = net.add_station(f"kx-new-{tag}", {}, trusted=[], enrolled=False)
    public = station.identity.public
    refused = submit(train, station.name, env)
    assert refused.returncode == 1
    assert "first contact" in refused.stderr and "--yes does not confirm" in refused.stderr
    assert public.signing_fingerprint in refused.stderr
    assert public.sealing_fingerprint in refused.stderr
    assert trains_of(net, researcher.name) == 0
    wrong = run(
        "train_builder.cli", "stations", "trust", station.name,
        "--fingerprint", public.signing_fingerprint,
        "--fingerprint", "sha256:" + "0" * 64, env=env,
    )  # fmt: skip
    assert wrong.returncode == 1 and "do not trust this station" in wrong.stderr
    trusted = run(
        "train_builder.cli", "stations", "trust", station.name,
        "--fingerprint", public.signing_fingerprint,
        "--fingerprint", public.sealing_fingerprint, env=env,
    )  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    submitted = submit(train, station.name, env)
    assert submitted.returncode == 0, submitted.stderr
    train_id = submitted.stdout.strip().splitlines()[-1].split()[-1]
    assert run("train_builder.cli", "cancel", train_id, env=env).returncode == 0


def test_a_station_pinning_the_root_refuses_an_unendorsed_next_stop(world):
    """A researcher without the root confirmed a station the root never enrolled (central
    could have shown them anything); the first station, which pins the root, refuses to
    seal its output to it."""
    net, tag, researcher, train, env = world
    gate = net.add_station(f"kx-gate-{tag}", {"cohort": _sample()}, trusted=[researcher])
    rogue = net.add_station(f"kx-rogue-{tag}", {}, trusted=[], enrolled=False)
    net.start_station(gate.name)
    for station in (gate, rogue):
        public = station.identity.public
        trusted = run(
            "train_builder.cli", "stations", "trust", station.name,
            "--fingerprint", public.signing_fingerprint,
            "--fingerprint", public.sealing_fingerprint, env=env,
        )  # fmt: skip
        assert trusted.returncode == 0, trusted.stderr
    submitted = submit(train, f"{gate.name},{rogue.name}", env)
    assert submitted.returncode == 0, submitted.stderr
    train_id = submitted.stdout.strip().splitlines()[-1].split()[-1]
    waited = run("train_builder.cli", "wait", train_id, "--timeout", "120", env=env)
    assert waited.returncode == 1, waited.stdout
    assert f"pins network root {net.network_root} and refuses the route" in waited.stdout
    assert f"station {rogue.name} is not enrolled" in waited.stdout


def _sample() -> Path:
    return Path(__file__).resolve().parents[1] / "trains/reference/cohort/sample/hospital-a.csv"
