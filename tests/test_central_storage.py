"""Blobs and schema: per-train quota, checked sha256, retention of finished trains' states,
and Alembic migrations (a pre-migration database is adopted; serve and `db upgrade` bring
any database to the newest revision)."""

from __future__ import annotations

import os
import sqlite3

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect

from central.api import create_app
from central.cli import main as central_cli
from central.db import Base, make_engine
from central.migrate import current, head
from central.retention import collect_garbage
from central.settings import CentralSettings
from central.testing_pg import postgres_or_skip
from tests import test_central_protocol as protocol
from tests.factories import make_manifest
from tests.test_central_protocol import auth, result_body, run_hop, submit
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE
from trains.signing import sign

database_url = protocol.database_url


def make_world(tmp_path, database_url, **overrides):
    app = create_app(
        CentralSettings(data_dir=tmp_path, database_url=database_url, **overrides),
        background=False,
    )
    service = app.state.service
    researcher = Identity.generate("alice")
    stations = [Identity.generate(n) for n in ("hospital-a", "hospital-b")]
    tokens = {"alice": service.register("researcher", researcher.public)}
    for s in stations:
        tokens[s.name] = service.register("station", s.public)
    return TestClient(app), researcher, stations, tokens


def test_a_train_over_its_quota_is_refused_with_413_and_nothing_is_kept(tmp_path, database_url):
    client, researcher, stations, tokens = make_world(tmp_path, database_url, max_train_mb=1)
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    first = run_hop(client, stations[0], tokens["hospital-a"], os.urandom(600_000))
    client.post("/api/v1/hops/next", headers=auth(tokens["hospital-b"]))
    url = f"/api/v1/trains/{manifest.train_id}/hops/1/result"
    body = result_body(first["receipt"], os.urandom(600_000))
    big = client.post(url, content=body, headers=auth(tokens["hospital-b"]))
    assert big.status_code == 413 and big.json()["code"] == "too_large"
    assert "quota" in big.json()["message"]
    folder = tmp_path / "blobs" / manifest.train_id
    assert sorted(p.name for p in folder.iterdir()) == ["output-00000.sealed"]


def test_an_upload_that_does_not_match_its_digest_header_is_refused(tmp_path, database_url):
    client, researcher, stations, tokens = make_world(tmp_path, database_url)
    manifest = make_manifest(researcher, stations, initial_state_digest="sha256:" + "0" * 64)
    envelope = sign(manifest, MANIFEST_TYPE, researcher.signing)
    a = auth(tokens["alice"])
    body = {"manifest": envelope.model_dump(mode="json"), "has_initial_state": True}
    assert client.post("/api/v1/trains", json=body, headers=a).status_code == 201
    wrong = client.put(
        f"/api/v1/trains/{manifest.train_id}/initial-state",
        content=b"abc",
        headers={**a, "X-Content-Sha256": "sha256:" + "0" * 64},
    )
    assert wrong.status_code == 422 and wrong.json()["code"] == "digest_mismatch"


def test_retention_prunes_intermediate_states_of_finished_trains_only(tmp_path, database_url):
    client, researcher, stations, tokens = make_world(tmp_path, database_url)
    service = client.app.state.service
    done, _ = submit(client, researcher, stations, tokens["alice"])
    run_hop(client, stations[0], tokens["hospital-a"], b"s0")
    run_hop(client, stations[1], tokens["hospital-b"], b"s1")
    running, _ = submit(client, researcher, stations, tokens["alice"])
    run_hop(client, stations[0], tokens["hospital-a"], b"r0")
    blobs = client.app.state.ctx.blobs
    # within retention nothing goes
    assert collect_garbage(service, blobs, retention_h=1).trains == 0
    pruned = collect_garbage(service, blobs, retention_h=0)
    assert pruned.trains == 1 and pruned.bytes > 0
    assert sorted(p.name for p in (tmp_path / "blobs" / done.train_id).iterdir()) == [
        "output-00001.sealed"
    ]
    assert (tmp_path / "blobs" / running.train_id / "output-00000.sealed").exists()
    # the researcher still gets the final state; a second run has nothing to do
    result = client.get(f"/api/v1/trains/{done.train_id}/result", headers=auth(tokens["alice"]))
    assert result.status_code == 200
    assert collect_garbage(service, blobs, retention_h=0).trains == 0


def test_gc_command(tmp_path, capsys):
    client, researcher, stations, tokens = make_world(tmp_path, "")
    manifest, _ = submit(client, researcher, stations, tokens["alice"])
    client.post(f"/api/v1/trains/{manifest.train_id}/cancel", headers=auth(tokens["alice"]))
    assert central_cli(["gc", "--data-dir", str(tmp_path), "--retention-h", "0"]) == 0
    assert "pruned 1 finished trains" in capsys.readouterr().out


def test_a_database_from_before_migrations_is_adopted_and_upgraded(tmp_path, capsys):
    """The first release made its tables with create_all and had no alembic_version."""
    path = tmp_path / "central.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE parties (id INTEGER PRIMARY KEY, role VARCHAR(16) NOT NULL,
          name VARCHAR(64) NOT NULL, signing_key VARCHAR(64) NOT NULL,
          sealing_key VARCHAR(64) NOT NULL, token_hash VARCHAR(64) NOT NULL UNIQUE,
          created_at DATETIME NOT NULL, UNIQUE (role, name));
        CREATE TABLE trains (id VARCHAR(64) PRIMARY KEY, researcher_id INTEGER NOT NULL
          REFERENCES parties(id), name VARCHAR(64) NOT NULL, manifest TEXT NOT NULL,
          manifest_digest VARCHAR(80) NOT NULL, status VARCHAR(16) NOT NULL, error TEXT,
          initial_state_digest VARCHAR(80), final_state_digest VARCHAR(80),
          created_at DATETIME NOT NULL, finished_at DATETIME);
        CREATE TABLE hops (id INTEGER PRIMARY KEY, train_id VARCHAR(64) NOT NULL
          REFERENCES trains(id), "index" INTEGER NOT NULL, round INTEGER NOT NULL,
          station VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL, input_digest VARCHAR(80),
          output_digest VARCHAR(80), receipt TEXT, error TEXT, claimed_at DATETIME,
          finished_at DATETIME, UNIQUE (train_id, "index"));
        INSERT INTO parties VALUES (1, 'researcher', 'alice', 'k1', 'k2', 'h', '2025-01-01');
        """
    )
    old.commit()
    old.close()
    assert central_cli(["db", "current", "--data-dir", str(tmp_path)]) == 0
    assert "revision None" in capsys.readouterr().out
    assert central_cli(["db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    assert f"at revision {head()}" in capsys.readouterr().out
    engine = make_engine(f"sqlite:///{path}", migrate=False)
    assert current(engine) == head()
    columns = {c["name"] for c in inspect(engine).get_columns("parties")}
    assert {"expires_at", "revoked_at"} <= columns
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT name FROM parties").scalar() == "alice"


def test_migrations_build_exactly_the_models_schema_on_postgresql(tmp_path):
    """Upgrading an empty PostgreSQL to head yields the tables and columns db.py declares,
    so the models and the migrations cannot drift apart unnoticed."""
    url = postgres_or_skip()
    engine = make_engine(url)
    assert current(engine) == head()
    found = inspect(engine)
    for table in Base.metadata.sorted_tables:
        columns = {c["name"]: c for c in found.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, (table.name, column.name)
    # an admin has no keys, and a train status as long as "waiting_for_state" fits
    with create_engine(url).begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO parties (role, name, token_hash, created_at) "
            "VALUES ('admin', 'root', 'h', now())"
        )
        connection.exec_driver_sql(
            "INSERT INTO trains (id, researcher_id, name, manifest, manifest_digest, status, "
            "created_at) VALUES ('t', 1, 'n', '{}', 'd', 'waiting_for_state', now())"
        )
