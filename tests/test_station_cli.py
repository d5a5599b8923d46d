"""``pht-station init`` and ``doctor``: every failure printed with its fix, exit code 1."""

from __future__ import annotations

import json

from station.cli import main
from trains.keys import Identity


def init_station(tmp_path, capsys, name="hospital-x", central="http://127.0.0.1:9"):
    folder = tmp_path / name
    assert main(["init", str(folder), "--name", name, "--central", central]) == 0
    return folder, capsys.readouterr().out


def test_init_prints_the_public_key_block(tmp_path, capsys):
    folder, out = init_station(tmp_path, capsys)
    identity = Identity.load(folder / "keys")
    block = out[out.index("{") : out.index("}") + 1]
    assert json.loads(block) == identity.public.model_dump()
    assert "doctor --config" in out
    assert main(["init", str(folder), "--name", "x", "--central", "http://y"]) == 1
    assert "exists" in capsys.readouterr().err


def test_doctor_names_each_failure_and_its_fix(tmp_path, capsys):
    folder, _ = init_station(tmp_path, capsys)
    config = folder / "station.toml"
    (folder / "token").write_text("pht_sta_whatever\n")
    db = folder / "hospital.db"  # the database exists, the table does not
    config.write_text(
        config.read_text().replace(
            "# [datasets.cohort]",
            f"[datasets.cohort]\ntype = 'sql'\nurl = 'sqlite:///{db}'\n"
            "query = 'SELECT * FROM patients'\n# [x]",
            1,
        )
    )
    (folder / "keys" / "signing.key").chmod(0o644)
    code = main(["doctor", "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 1
    lines = {line.split()[1]: line for line in out.splitlines() if line[:4] in ("ok  ", "FAIL")}
    assert lines["keys"].startswith("FAIL") and "chmod 600" in lines["keys"]
    assert lines["central"].startswith("FAIL") and "check station.central_url" in lines["central"]
    assert lines["dataset"].startswith("FAIL") and "[datasets.cohort]" in lines["dataset"]
    assert lines["state"].startswith("ok")
    assert "Traceback" not in out


def test_doctor_on_missing_config_is_one_line(tmp_path, capsys):
    assert main(["doctor", "--config", str(tmp_path / "nope.toml")]) == 1
    err = capsys.readouterr().err
    assert "not found; create one with 'pht-station init'" in err


def test_admin_commands_on_an_unknown_hop(tmp_path, capsys):
    folder, _ = init_station(tmp_path, capsys)
    config = str(folder / "station.toml")
    assert main(["pending", "--config", config]) == 0
    assert "no hops waiting" in capsys.readouterr().out
    assert main(["approve", "abc", "--config", config]) == 1
    assert "'pht-station pending' lists them" in capsys.readouterr().err
