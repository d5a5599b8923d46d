"""station.toml: bad configs name the file, the key and the fix; data sources materialise
from real files, a real SQLite database and a real PostgreSQL server."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from station.config import load_config
from station.datasources import check_readable, materialise
from train_builder.localnet import free_port
from trains.errors import ConfigError

FP = "sha256:" + "ab" * 32
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text('[station]\nname = "h"\ncentral_url = "http://127.0.0.1:1"\n' + body)
    return path


def test_init_template_loads_and_is_complete(tmp_path):
    from station.cli import main

    assert main(["init", str(tmp_path / "s"), "--name", "h", "--central", "http://x:1"]) == 0
    config = load_config(tmp_path / "s" / "station.toml")
    assert config.policy.approval == "auto" and config.policy.disclosure.min_cell == 5
    assert config.station.runtime == "runc"
    for key in ("signing.key", "sealing.key"):
        assert (tmp_path / "s" / "keys" / key).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("poll_interval_s = -1\n", "key 'station.poll_interval_s'"),
        ("runtime = 'kata'\n", "key 'station.runtime'.*'runc' or 'runsc'"),
        ("[datasets.c]\ntype = 'excel'\npath = 'x'\n", "key 'datasets.c'"),
        ("[datasets.c]\npath = 'missing.csv'\n", "key 'datasets.c.path'.*does not exist"),
        ("[datasets.c]\ntype = 'sql'\nurl = 'sqlite://'\n", "key 'datasets.c.sql.query'"),
        ("[policy]\ntrusted_signers = ['alice']\n", "trusted_signers.*sha256:<64 hex>"),
        ("[policy]\napproval = 'sometimes'\n", "key 'policy.approval'"),
        (f'[policy.signers."{FP}"]\ndatasets = ["nope"]\n', "no dataset named \\['nope'\\]"),
        ("[policy.signers.alice]\n", "must be named by a fingerprint"),
        ("[policy.disclosure]\nsmall_cells = 'ignore'\n", "policy.disclosure.small_cells"),
        ("[policy]\ncolour = 'red'\n", "key 'policy.colour': Extra inputs"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_csv_and_parquet_are_copied(tmp_path):
    frame = pd.DataFrame({"age": [40, 50], "sex": ["F", "M"]})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "b.parquet")
    config = load_config(
        write(
            tmp_path,
            "[datasets.a]\npath = 'a.csv'\n[datasets.b]\ntype = 'parquet'\npath = 'b.parquet'\n",
        )
    )
    out_a = materialise(config, "a", tmp_path / "run" / "a")
    out_b = materialise(config, "b", tmp_path / "run" / "b")
    assert out_a.name == "data.csv" and pd.read_csv(out_a).equals(frame)
    assert out_b.name == "data.parquet" and pd.read_parquet(out_b).equals(frame)


def test_sql_source_on_sqlite(tmp_path):
    db = tmp_path / "hospital.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE patients (age INT, sex TEXT, consent INT)")
        connection.executemany(
            "INSERT INTO patients VALUES (?, ?, ?)", [(40, "F", 1), (50, "M", 0), (60, "F", 1)]
        )
    config = load_config(
        write(
            tmp_path,
            f"[datasets.cohort]\ntype = 'sql'\nurl = 'sqlite:///{db}'\n"
            "query = 'SELECT age, sex FROM patients WHERE consent = 1'\nformat = 'parquet'\n",
        )
    )
    out = materialise(config, "cohort", tmp_path / "run" / "cohort")
    assert out.name == "data.parquet"
    assert pd.read_parquet(out).to_dict("list") == {"age": [40, 60], "sex": ["F", "F"]}
    assert check_readable(config, "cohort") == "sql query returns 2 rows"


def test_sql_source_failure_says_what_to_fix(tmp_path):
    config = load_config(
        write(
            tmp_path,
            f"[datasets.cohort]\ntype = 'sql'\nurl = 'sqlite:///{tmp_path}/x.db'\n"
            "query = 'SELECT * FROM nowhere'\n",
        )
    )
    with pytest.raises(ConfigError, match=r"query failed.*no such table.*datasets.cohort"):
        materialise(config, "cohort", tmp_path / "run")


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on a free 127.0.0.1 port, run as user postgres."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL 15 binaries not installed")
    root = Path(tempfile.mkdtemp(prefix="pht-pg-"))
    shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()

    def as_postgres(*args: str) -> None:
        # output to a file: the server inherits it, and a pipe would never close
        with (root / "pg.log").open("ab") as log:
            subprocess.run(
                ["runuser", "-u", "postgres", "--", *args], check=True, stdout=log, stderr=log
            )

    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_sql_source_on_postgresql(tmp_path, postgres):
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE labs (age INT, hba1c REAL, ok BOOL)"))
        connection.execute(
            sqlalchemy.text("INSERT INTO labs VALUES (40, 5.5, true), (70, 7.25, false)")
        )
    engine.dispose()
    config = load_config(
        write(
            tmp_path,
            f"[datasets.labs]\ntype = 'sql'\nurl = '{postgres}'\n"
            "query = 'SELECT age, hba1c FROM labs WHERE ok'\n",
        )
    )
    out = materialise(config, "labs", tmp_path / "run" / "labs")
    assert pd.read_csv(out).to_dict("list") == {"age": [40], "hba1c": [5.5]}


def test_the_station_runs_its_trains_under_the_configured_runtime(tmp_path, docker_required):
    from station.cli import main
    from station.daemon import Station

    assert main(["init", str(tmp_path / "s"), "--name", "h", "--central", "http://x:1"]) == 0
    path = tmp_path / "s" / "station.toml"
    path.write_text(path.read_text().replace('runtime = "runc"', 'runtime = "runsc"', 1))
    # what the hop's containers are then made with: tests/test_sandbox_attacks.py
    assert Station.open(load_config(path)).runner().runtime == "runsc"


def test_runtime_runsc_is_reported_by_doctor(tmp_path, docker_required):
    from station.doctor import run_checks

    config = load_config(write(tmp_path, 'runtime = "runsc"\n'))
    assert config.station.runtime == "runsc"
    found = {f.check: f for f in run_checks(config)}
    assert found["runtime"].ok, found["runtime"].detail
    assert "trains run under runsc (gVisor)" in found["runtime"].detail
    assert "--network=none" in found["runtime"].detail  # as scripts/register-runsc.sh set it


def test_a_runtime_dockerd_does_not_know_defers_hops_and_fails_doctor(docker_required):
    from station.doctor import _runtime
    from station.hop import _docker
    from station.runner import DockerRunner, DockerUnavailable
    from trains.errors import HopDeferred

    # a station's setting, not the train's fault: the hop waits instead of failing
    with pytest.raises(HopDeferred, match=r"no runtime 'no-such-runtime'.*register-runsc"):
        _docker(lambda: DockerRunner(runtime="no-such-runtime"))
    with pytest.raises(DockerUnavailable, match=r"change station\.toml's runtime"):
        _runtime("no-such-runtime")
