"""Upgrades: central's database and a station's state folder carry a schema version. A
newer version migrates an older one; an older version refuses a newer one with a message
that says which versions and what to do, never a traceback (``central/migrate.py``,
``station/state_version.py``)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from central.cli import main as central_main
from central.db import make_engine, make_sessions
from central.migrate import current, head, upgrade
from central.service import Service
from central.testing_pg import database_url_for
from station.cli import main as station_main
from trains.errors import ConfigError

FUTURE = "0099_from_a_newer_central"


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request, tmp_path):
    return database_url_for(request.param, tmp_path)


def test_a_newer_central_migrates_an_older_database(database_url, tmp_path, capsys):
    engine = make_engine(database_url, migrate=False)
    upgrade(engine, "0003")  # as the release before enrolments left it
    with engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO parties (role, name, signing_key, sealing_key, token_hash, "
                "created_at) VALUES ('admin', 'old-admin', NULL, NULL, :h, CURRENT_TIMESTAMP)"
            ),
            {"h": "ab" * 32},
        )
    engine.dispose()
    args = ["--data-dir", str(tmp_path / "data"), "--database-url", database_url]
    assert central_main(["db", "upgrade", *args]) == 0
    assert f"database at revision {head()} (was 0003" in capsys.readouterr().out
    engine = make_engine(database_url, migrate=False)
    assert current(engine) == head()
    with engine.connect() as db:  # the rows made by the older release are still there
        assert db.execute(text("SELECT name FROM parties")).scalars().all() == ["old-admin"]
    engine.dispose()


def test_an_older_central_refuses_a_newer_database(database_url, tmp_path, capsys):
    """A newer central's migration left a revision this code does not have (the test
    writes that revision id: no newer release exists yet to make it)."""
    engine = make_engine(database_url)  # at this code's head
    Service(make_sessions(engine)).identities.register("admin", "first-admin")
    with engine.begin() as db:
        db.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE})
    engine.dispose()
    args = ["--data-dir", str(tmp_path / "data"), "--database-url", database_url]
    for command in (["serve", *args, "--port", "9"], ["db", "upgrade", *args]):
        assert central_main(command) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
        assert FUTURE in err and head() in err  # what the DB has, what this code knows
        assert "newer pht-central" in err and "backup" in err  # what to do
    engine = make_engine(database_url, migrate=False)
    assert current(engine) == FUTURE  # untouched
    engine.dispose()


def station_folder(tmp_path, capsys):
    folder = tmp_path / "hospital-x"
    assert station_main(["init", str(folder), "--name", "hospital-x", "--central", "http://x"]) == 0
    capsys.readouterr()
    return folder, str(folder / "station.toml")


def test_an_older_station_refuses_a_newer_state_folder(tmp_path, capsys):
    folder, config = station_folder(tmp_path, capsys)
    state = folder / "state"
    state.mkdir(exist_ok=True)
    from station.state_version import CURRENT

    (state / "SCHEMA").write_text(f"{CURRENT + 1}\n")  # as a newer pht-station would leave it
    assert station_main(["pending", "--config", config]) == 1
    err = capsys.readouterr().err
    assert f"layout version {CURRENT + 1}" in err and f"versions up to {CURRENT}" in err
    assert "backup" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in state.iterdir() if not p.name.startswith(".")) == ["SCHEMA"]

    from station.config import load_config
    from station.daemon import Station
    from station.state_version import StateTooNew

    with pytest.raises(StateTooNew):  # the daemon refuses before it reads a record
        Station.open(load_config(folder / "station.toml"))


def test_a_state_folder_from_before_versioning_is_adopted_as_version_1(tmp_path, capsys):
    """The layout the release before versioning made: records, outbox, audit log. It is
    version 1, then migrated to the current version (test_station_queue checks the step)."""
    from station.audit import AUDIT_FILE, AuditLog
    from station.queue import HopQueue
    from station.state_version import CURRENT, read_version

    folder, config = station_folder(tmp_path, capsys)
    state = folder / "state"
    HopQueue(state)
    AuditLog(state / AUDIT_FILE).append("started")
    assert read_version(state) is None
    assert station_main(["pending", "--config", config]) == 0
    assert read_version(state) == CURRENT
    assert (state / "SCHEMA").read_text() == f"{CURRENT}\n"
    assert station_main(["audit", "verify", "--config", config]) == 0  # untouched


def test_a_new_state_folder_starts_at_the_current_version(tmp_path):
    from station.state_version import CURRENT, open_state, read_version

    assert read_version(open_state(tmp_path / "state")) == CURRENT


def test_a_newer_station_migrates_an_older_folder_step_by_step(tmp_path, monkeypatch):
    """The test adds a version after the current one (a step that renames the audit log)
    to check the machinery every real step uses."""
    from station import state_version

    state = tmp_path / "state"
    state_version.open_state(state)
    (state / "audit.jsonl").write_text("{}\n")
    steps: list[int] = []

    def to_v2(folder):
        steps.append(1)
        (folder / "audit.jsonl").rename(folder / "audit-v2.jsonl")

    now = state_version.CURRENT
    monkeypatch.setattr(state_version, "CURRENT", now + 1)
    monkeypatch.setattr(state_version, "MIGRATIONS", {**state_version.MIGRATIONS, now: to_v2})
    state_version.open_state(state)
    state_version.open_state(state)  # at the new version now: nothing runs again
    assert steps == [1]
    assert state_version.read_version(state) == now + 1
    assert (state / "audit-v2.jsonl").read_text() == "{}\n"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda s: (s / "hops").write_text("x"), "hops is not a folder"),
        (lambda s: (s / "thesis.pdf").write_text("x"), "holds other files and no station"),
        (lambda s: (s / "SCHEMA").write_bytes(b"1" * 5000), "should hold"),
        (lambda s: (s / "SCHEMA").write_text("two\n"), "should hold"),
    ],
)
def test_a_folder_that_is_not_a_state_folder_is_refused(tmp_path, make, says):
    from station.state_version import open_state

    state = tmp_path / "state"
    state.mkdir()
    make(state)
    with pytest.raises(ConfigError, match=says):
        open_state(state)


def test_a_console_user_added_before_the_first_start_is_part_of_the_state(tmp_path):
    """`pht-station console-user add` may run before the daemon ever started: the folder
    then holds only the console's users, which is this layout's, not a foreign folder."""
    from station.console.users import USERS_FILE
    from station.state_version import CURRENT, open_state, read_version

    state = tmp_path / "state"
    state.mkdir()
    (state / USERS_FILE).write_text("{}")
    assert read_version(open_state(state)) == CURRENT
