"""``pht-train`` from a researcher's chair, without Docker: init, local test, profile, and
every likely mistake ending in a clear message (never a traceback).

The network part talks to a real central (uvicorn, a separate process on 127.0.0.1);
no station runs there, so trains stay queued until the test cancels them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tests.released import assert_cohort_released_matches_pooled, by_name, read_published
from train_builder.cli import main
from train_builder.image import IMAGE_FILE
from train_builder.localnet import LocalNet, free_port
from train_builder.templates import templates

REPO = Path(__file__).resolve().parents[1]


def pht_train(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    """The real console script, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "train_builder.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd,
        env=env,
    )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """A researcher with an empty home: no profile, no PHT_* variables."""
    for var in ("PHT_CENTRAL_URL", "PHT_TOKEN", "PHT_TOKEN_FILE", "PHT_KEYS_DIR", "PHT_REGISTRY",
                "PHT_NETWORK_ROOT"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PHT_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def cohort(tmp_path, capsys) -> Path:
    code, _, _ = run(capsys, "init", "mytrain", "--template", "cohort")
    assert code == 0
    return tmp_path / "mytrain"


# -- init -----------------------------------------------------------------------------


def test_init_scaffolds_a_train_folder_from_a_template(tmp_path):
    done = pht_train("init", "mytrain", "--template", "cohort", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "mytrain"
    assert 'name = "mytrain"' in (folder / "train.toml").read_text()
    assert (folder / "train.py").read_text() == (
        REPO / "trains/reference/cohort/train.py"
    ).read_text()
    samples = sorted(p.name for p in (folder / "sample").glob("*.csv"))
    assert 2 <= len(samples) <= 3
    readme = (folder / "README.md").read_text()
    for contract in ("local(data, state, ctx)", "finalize(state, ctx)", "/pht/output/"):
        assert contract in readme
    assert "mytrain" in done.stdout


def test_init_refuses_an_existing_folder_and_keeps_it(tmp_path, capsys):
    (tmp_path / "mytrain").mkdir()
    (tmp_path / "mytrain" / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "init", "mytrain", "--template", "cohort")
    assert code == 1
    assert "mytrain already exists" in err
    assert (tmp_path / "mytrain" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "mytrain" / "train.py").exists()


def test_init_with_an_unknown_template_lists_the_available_ones(capsys):
    code, _, err = run(capsys, "init", "mytrain", "--template", "nope")
    assert code == 1
    assert "unknown template 'nope'" in err
    for name in templates():
        assert name in err
    assert "cohort" in err


def test_init_refuses_a_name_a_train_cannot_have(capsys):
    code, _, err = run(capsys, "init", "My Train", "--template", "cohort")
    assert code == 1
    assert "cannot name a train" in err


def test_templates_are_discovered_from_the_reference_folder(tmp_path, monkeypatch, capsys):
    import train_builder.templates as tpl

    reference = tmp_path / "reference"
    for name in ("alpha", "beta"):
        (reference / name).mkdir(parents=True)
        (reference / name / "train.toml").write_text(
            f'datasets = ["d"]\n[train]\nname = "{name}"\ndescription = "the {name} train"\n'
        )
        (reference / name / "train.py").write_text("def local(data, state, ctx):\n    return {}\n")
    (reference / "half-written").mkdir()  # no train.py: not offered
    (reference / "half-written" / "train.toml").write_text('[train]\nname = "x"\n')
    monkeypatch.setattr(tpl, "REFERENCE", reference)
    code, out, _ = run(capsys, "templates")
    assert code == 0
    assert "alpha" in out and "the beta train" in out and "half-written" not in out


# -- test (in-process) -------------------------------------------------------------------


def test_local_test_runs_the_route_and_equals_the_pooled_statistics(cohort, tmp_path):
    a, b = cohort / "sample" / "hospital-a.csv", cohort / "sample" / "hospital-b.csv"
    out = tmp_path / "local-result"
    done = pht_train(
        "test", str(cohort), "--data", str(a), "--data", str(b), "--out", str(out), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "hop 0 round 0 hospital-a" in done.stdout
    assert "hop 1 round 0 hospital-b" in done.stdout
    assert "released 10 typed quantities (published.json)" in done.stdout
    assert "suppressed by the release rules" in done.stdout
    published = read_published(out)  # the stations' default rules, applied locally
    assert_cohort_released_matches_pooled(published, [pd.read_csv(a), pd.read_csv(b)])


def test_local_test_hands_the_state_on_over_rounds_and_named_datasets(cohort, capsys):
    a, b = cohort / "sample" / "hospital-a.csv", cohort / "sample" / "hospital-b.csv"
    code, out, err = run(
        capsys, "test", str(cohort), "--data", f"cohort={a}", "--data", f"cohort={b}",
        "--rounds", "2", "--out", "final",
    )  # fmt: skip
    assert code == 0, err
    assert "hop 3 round 1 hospital-b" in out
    published = read_published(Path("final"))
    # each hop added its rows to the state of the one before: both files, twice
    rows = 2 * (len(pd.read_csv(a)) + len(pd.read_csv(b)))
    assert by_name(published)["rows"]["counts"] == [[rows]]


def test_local_test_truncates_a_long_state(cohort, capsys):
    (cohort / "train.py").write_text(
        "def local(data, state, ctx):\n    return {f'k{i}': i for i in range(500)}\n"
    )
    code, out, _ = run(capsys, "test", str(cohort), "--data", "mytrain/sample/hospital-a.csv")
    assert code == 0
    assert "more lines; --out DIR keeps the whole state" in out
    assert len(out.splitlines()) < 60


def test_a_train_that_raises_shows_the_hop_and_its_own_traceback_only(cohort, tmp_path):
    (cohort / "train.py").write_text(
        "def ratio(frame):\n"
        "    return frame['age'].sum() / 0 if frame.empty else 1 / 0\n"
        "\n"
        "def local(data, state, ctx):\n"
        "    if ctx.hop == 1:\n"
        "        return {'r': ratio(data['cohort'])}\n"
        "    return {'r': 0}\n"
    )
    a, b = cohort / "sample" / "hospital-a.csv", cohort / "sample" / "hospital-b.csv"
    done = pht_train("test", str(cohort), "--data", str(a), "--data", str(b), cwd=tmp_path)
    assert done.returncode == 1
    err = done.stderr
    assert "hop 1 at hospital-b (round 0): the train raised" in err
    assert 'File "train.py", line 6, in local' in err
    assert 'File "train.py", line 2, in ratio' in err
    assert "ZeroDivisionError: division by zero" in err
    assert "trains/runtime" not in err and "site-packages" not in err
    assert "Traceback (most recent call last)" not in err  # not Python's own dump


def test_a_train_writing_undeclared_files_is_refused_like_a_station_would(cohort, capsys):
    (cohort / "train.py").write_text(
        "def local(data, state, ctx):\n"
        "    (ctx.output_dir / 'rows.csv').write_text(data['cohort'].to_csv())\n"
        "    return {'n': 1}\n"
    )
    code, _, err = run(capsys, "test", str(cohort), "--data", str(cohort / "sample/hospital-a.csv"))
    assert code == 1
    assert "undeclared files ['rows.csv']" in err and "train.toml outputs" in err


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("missing.csv", "data file missing.csv not found"),
        ("labs=mytrain/sample/hospital-a.csv", "requests no dataset 'labs'"),
        ("mytrain/train.toml", "must be a .csv or .parquet file"),
    ],
)
def test_local_test_data_mistakes_are_explained(cohort, capsys, data, message):
    code, _, err = run(capsys, "test", str(cohort), "--data", data)
    assert code == 1
    assert message in err


# -- train folder mistakes -----------------------------------------------------------


def test_a_wrong_path_is_named(capsys):
    code, _, err = run(capsys, "test", "no-such-train", "--data", "x.csv")
    assert code == 1
    assert "no-such-train does not exist" in err


def test_a_file_is_not_a_train_folder(cohort, capsys):
    code, _, err = run(capsys, "build", str(cohort / "train.py"))
    assert code == 1
    assert "is a file; give the train's folder" in err


def test_a_folder_without_train_toml_is_not_a_train_folder(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    code, _, err = run(capsys, "submit", "notes", "--route", "a", "--yes")
    assert code == 1
    assert "train.toml not found; is notes a train folder?" in err


def test_a_bad_train_toml_key_names_the_file_and_the_key(cohort, capsys):
    toml = cohort / "train.toml"
    toml.write_text(toml.read_text().replace("memory_mb = 512", "memory_mib = 512"))
    done = pht_train("test", str(cohort), "--data", "x.csv")
    assert done.returncode == 1
    assert str(toml.relative_to(Path.cwd())) in done.stderr or str(toml) in done.stderr
    assert "key 'resources.memory_mib': Extra inputs are not permitted" in done.stderr
    assert "Traceback" not in done.stderr


# -- profile ---------------------------------------------------------------------------


def test_profile_set_and_show_and_the_order_flags_env_profile(tmp_path, capsys, monkeypatch):
    assert run(capsys, "profile", "set", "central_url", "http://127.0.0.1:1")[0] == 0
    assert run(capsys, "profile", "set", "registry", "127.0.0.1:5999")[0] == 0
    profile = tmp_path / "home" / ".config" / "pht" / "profile.toml"
    assert 'central_url = "http://127.0.0.1:1"' in profile.read_text()
    code, out, _ = run(capsys, "profile", "show")
    assert code == 0
    assert "http://127.0.0.1:1" in out and f"profile {profile}" in out
    monkeypatch.setenv("PHT_CENTRAL_URL", "http://127.0.0.1:2")
    _, out, _ = run(capsys, "profile", "show")
    assert "http://127.0.0.1:2" in out and "env PHT_CENTRAL_URL" in out
    _, out, _ = run(capsys, "--central", "http://127.0.0.1:3", "profile", "show")
    assert "http://127.0.0.1:3" in out and "flag --central" in out
    monkeypatch.setenv("PHT_PROFILE", str(tmp_path / "other.toml"))
    _, out, _ = run(capsys, "profile", "show")
    assert "other.toml (not created yet)" in out


def test_profile_set_refuses_an_unknown_key(capsys):
    code, _, err = run(capsys, "profile", "set", "centra_url", "x")
    assert code == 1
    assert "unknown profile key 'centra_url'" in err and "central_url" in err


def test_a_wrong_key_in_the_profile_file_names_file_and_key(tmp_path, capsys, monkeypatch):
    profile = tmp_path / "p.toml"
    profile.write_text('central = "http://x"\n')
    monkeypatch.setenv("PHT_PROFILE", str(profile))
    code, _, err = run(capsys, "list")
    assert code == 1
    assert f"{profile}: key 'central'" in err and "central_url" in err


def test_missing_settings_say_what_to_set_and_where(tmp_path, capsys, monkeypatch):
    code, _, err = run(capsys, "list")
    assert code == 1
    assert "no central_url" in err
    assert "pht-train profile set central_url" in err and "PHT_CENTRAL_URL" in err
    monkeypatch.setenv("PHT_CENTRAL_URL", "http://127.0.0.1:9")
    code, _, err = run(capsys, "list")
    assert "no token_file" in err and "PHT_TOKEN" in err
    monkeypatch.setenv("PHT_TOKEN_FILE", str(tmp_path / "nope"))
    code, _, err = run(capsys, "list")
    assert f"token file {tmp_path / 'nope'}" in err and "not found" in err
    (tmp_path / "token").write_text("t\n")
    monkeypatch.setenv("PHT_TOKEN_FILE", str(tmp_path / "token"))
    code, _, err = run(capsys, "list")
    assert "no researcher keys in" in err and "pht-train keys new" in err


# -- against a real central -------------------------------------------------------------


@pytest.fixture(scope="module")
def central(tmp_path_factory):
    """A real central (separate process) with two registered stations that never run."""
    with LocalNet(tmp_path_factory.mktemp("central")) as net:
        net.start_central()
        net.add_station("ward-1", {}, trusted=[])
        net.add_station("ward-2", {}, trusted=[])
        yield net


@pytest.fixture
def alice(central, tmp_path, monkeypatch):
    """A registered researcher whose profile is set through the CLI itself."""
    name = f"alice-{uuid.uuid4().hex[:8]}"
    _, keys, token = central.add_researcher(name)
    for key, value in (("central_url", central.central_url), ("token_file", str(token)),
                       ("keys_dir", str(keys)),
                       ("network_root", central.network_root)):  # fmt: skip
        assert main(["profile", "set", key, value]) == 0
    return keys, token


def fake_pushed(folder: Path) -> None:
    """Central never reads the image; no station runs here, so no image is needed."""
    (folder / IMAGE_FILE).write_text(
        json.dumps({"repository": "127.0.0.1:1/pht/mytrain", "digest": "sha256:" + "0" * 64})
    )


def test_unreachable_central_names_the_url(capsys, alice, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("PHT_CENTRAL_URL", url)
    code, _, err = run(capsys, "list")
    assert code == 1
    assert f"cannot reach central at {url}" in err


def test_an_unknown_token_is_explained(capsys, alice, tmp_path, monkeypatch):
    bad = tmp_path / "revoked-token"
    bad.write_text("pht_res_not-a-token\n")
    monkeypatch.setenv("PHT_TOKEN_FILE", str(bad))
    code, _, err = run(capsys, "list")
    assert code == 1
    assert "central refused (401)" in err
    assert "ask central's operator for a new one" in err and str(bad) in err


def test_a_wrong_station_name_lists_the_known_stations(capsys, alice, cohort):
    fake_pushed(cohort)
    code, _, err = run(capsys, "submit", str(cohort), "--route", "ward-1,ward-9", "--yes")
    assert code == 1
    assert "ward-9" in err and "known stations" in err and "'ward-2'" in err


def test_a_train_never_built_is_explained(capsys, alice, cohort):
    code, _, err = run(capsys, "submit", str(cohort), "--route", "ward-1", "--yes")
    assert code == 1
    assert "has no pushed image yet; run 'pht-train build" in err


def test_submit_list_status_cancel_watch_through_the_cli(alice, cohort, tmp_path):
    fake_pushed(cohort)
    submitted = pht_train("submit", str(cohort), "--route", "ward-1,ward-2", "--yes", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    assert "ward-1" in submitted.stdout and "signing key sha256:" in submitted.stdout
    train_id = submitted.stdout.strip().splitlines()[-1].split()[-1]

    listed = pht_train("list")
    assert train_id in listed.stdout and "running" in listed.stdout

    status = pht_train("status", "last")
    assert status.returncode == 0
    assert f"train {train_id} (mytrain): running" in status.stdout
    assert "hop 0 round 0 ward-1" in status.stdout and "queued" in status.stdout
    assert "hop 1 round 0 ward-2" in status.stdout and "waiting" in status.stdout

    cancelled = pht_train("cancel", train_id)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    again = pht_train("cancel", train_id)
    assert again.returncode == 1 and "already cancelled" in again.stderr

    watched = pht_train("watch", train_id)  # not a terminal: plain lines, ends at once
    assert watched.returncode == 1
    assert f"train {train_id} (mytrain): cancelled" in watched.stdout
    assert "cancelled by the researcher" in watched.stdout

    result = pht_train("result", train_id, "--out", str(tmp_path / "r"))
    assert result.returncode == 1 and "is cancelled" in result.stderr
    assert "Traceback" not in result.stderr + watched.stderr + status.stderr


def test_the_python_api_mirrors_the_cli(alice, cohort, tmp_path):
    from train_builder.image import read_image_file
    from train_builder.researcher import Researcher

    fake_pushed(cohort)
    with Researcher.from_profile() as r:
        train_id = r.submit(cohort, read_image_file(cohort), route=["ward-2"], rounds=2)
        assert [t["train_id"] for t in r.list()][-1] == train_id
        assert r.resolve("last") == train_id
        seen: list[str] = []
        assert r.cancel(train_id) == "cancelled"
        final = r.watch(train_id, on_change=lambda s: seen.append(s["status"]))
        assert final["status"] == "cancelled" and seen == ["cancelled"]
        assert [h["round"] for h in final["hops"]] == [0, 1]


def test_requirements_without_a_wheelhouse_say_how_to_build_offline(cohort, capsys):
    (cohort / "requirements.txt").write_text("tabulate==0.9.0\n")
    code, _, err = run(capsys, "build", str(cohort), "--registry", "127.0.0.1:1")
    assert code == 1
    assert "requirements.txt lists packages" in err and "--wheelhouse DIR" in err


def test_a_closed_pipe_ends_quietly():
    """Issue 13 item 11: `pht-train ... | head -1` printed 'error: Broken pipe'."""
    process = subprocess.Popen(
        [sys.executable, "-m", "train_builder.cli", "templates"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before anything is written
    errors = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0
    assert errors == ""


def test_an_error_after_output_starts_on_a_line_of_its_own(tmp_path):
    """Issue 13 item 12: '... over 1 local station(s)error: hop 0 ...' on one line."""
    assert pht_train("init", "broken", "--template", "cohort", cwd=tmp_path).returncode == 0
    (tmp_path / "broken" / "train.py").write_text(
        "def local(data, state, ctx):\n    raise ValueError('nothing here')\n"
    )
    data = tmp_path / "site.csv"
    data.write_text("age\n1\n")
    # buffered output, as in a pipe to a file or another program
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [sys.executable, "-m", "train_builder.cli", "test", "broken", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "station(s)\n" in result.stdout and "\nerror: " in result.stdout, result.stdout


def test_a_unique_start_of_a_train_id_names_the_train(tmp_path):
    """Issue 13 item 10: `pht-train watch b2086455` answered 404 (a real central, in
    process; the ids are random, so the test finds a prefix that is unique and one that
    is not)."""
    from fastapi.testclient import TestClient

    from central.api import create_app
    from central.client import CentralClient
    from central.settings import CentralSettings
    from central.testing_pg import database_url_for
    from tests.test_central_protocol import auth, submit
    from train_builder.researcher import Researcher
    from trains.errors import PhtError
    from trains.keys import Identity

    url = database_url_for("sqlite", tmp_path)
    app = create_app(CentralSettings(data_dir=tmp_path / "central", database_url=url))
    alice, station = Identity.generate("alice"), Identity.generate("hospital-a")
    token = app.state.service.register("researcher", alice.public)
    app.state.service.register("station", station.public)
    client = TestClient(app)
    ids = [submit(client, alice, [station], token)[0].train_id for _ in range(20)]
    central = CentralClient("http://testserver", token)
    central._http = TestClient(app, headers=auth(token))
    researcher = Researcher(alice, central)
    for train_id in ids:
        unique = next(
            train_id[:n]
            for n in range(1, 37)
            if sum(other.startswith(train_id[:n]) for other in ids) == 1
        )
        assert researcher.resolve(unique) == train_id
        assert researcher.resolve(unique.upper()) == train_id
    assert researcher.resolve("last") == ids[-1]
    assert researcher.resolve(ids[3]) == ids[3]
    shared = next(
        c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1
    )  # 20 ids over 16 first characters: one is shared
    with pytest.raises(PhtError, match="give more of the id"):
        researcher.resolve(shared)
    missing = next(c for c in "0123456789abcdefgh" if not any(i.startswith(c) for i in ids))
    with pytest.raises(PhtError, match="no train of yours"):
        researcher.resolve(missing)
