"""DP through a real station: a station whose policy requires DP noises the counts a train
publishes, charges the researcher's budget, and refuses the next train that would overrun
it, with the numbers reaching ``pht-train status``. Real registry, central, station daemon
and container (localnet); nothing mocked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from station.audit import AUDIT_FILE, verify
from station.cli import main as station_main

TRAIN = Path(__file__).resolve().parent / "dp_train"
STATION = "dp-e2e-hospital"
AGES = {age: 10 + (age - 20) for age in range(20, 40)}  # 10..29 patients per age


def pht_train(*args: str, cli: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "train_builder.cli", *cli, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def submit(train: Path, cli: list[str]) -> str:
    submitted = pht_train("submit", str(train), "--route", STATION, "--yes", cli=cli)
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip().splitlines()[-1].split()[-1]


def test_required_dp_noises_a_release_and_refuses_over_budget(localnet, tmp_path):
    net = localnet
    researcher, keys, token = net.add_researcher("dr-dp-e2e")
    csv = tmp_path / "ages.csv"
    ages = [age for age, n in AGES.items() for _ in range(n)]
    pd.DataFrame({"age": ages, "sex": ["F", "M"] * (len(ages) // 2)}).to_csv(csv, index=False)
    station = net.add_station(STATION, {"cohort": csv}, trusted=[researcher])
    station.config.write_text(
        station.config.read_text()
        + '\n[policy.privacy]\nmode = "required"\nepsilon_per_release = 1.0\nbudget = 1.5\n'
    )
    net.start_station(STATION)
    cli = ["--central", net.central_url, "--token-file", str(token), "--keys", str(keys),
           "--network-root", net.network_root]  # fmt: skip
    train = tmp_path / "train"
    subprocess.run(["cp", "-r", str(TRAIN), str(train)], check=True)
    built = pht_train("build", str(train), "--registry", net.registry, cli=cli)
    assert built.returncode == 0, built.stderr

    # 1. the first release spends 1.0 of 1.5: noised counts, non-negative integers
    first = submit(train, cli)
    waited = pht_train("wait", first, "--timeout", "600", cli=cli)
    assert waited.returncode == 0, waited.stdout + waited.stderr + station.log.read_text()
    out = tmp_path / "result"
    result = pht_train("result", first, "--out", str(out), "--quiet", cli=cli)
    assert result.returncode == 0, result.stderr
    published = json.loads((out / "published.json").read_text())
    (table,) = published["quantities"]
    released = {int(r): row[0] for r, row in zip(table["rows"], table["counts"], strict=True)}
    counts = [n for n in released.values() if n is not None]
    assert counts and all(type(n) is int and n >= 0 for n in counts)
    # 20 cells at ε = 1: all noise zero has probability 0.46^20, about 2e-7
    assert any(released[age] != AGES[age] for age in released if released[age] is not None)
    assert max(abs(released[a] - AGES[a]) for a in released if released[a] is not None) < 40
    notes = [n for n in published["release"]["suppressed"] if n["action"] == "noised"]
    assert [n["quantity"] for n in notes] == ["patients per age"]
    assert published["release"]["privacy"]["epsilon_per_release"] == 1.0

    # 2. the second would spend 1.0 more of the 0.5 left: refused, with the numbers
    second = submit(train, cli)
    waited = pht_train("wait", second, "--timeout", "600", cli=cli)
    assert waited.returncode == 1
    status = pht_train("status", second, cli=cli).stdout
    assert "BudgetExceeded" in status, status
    for number in ("ε = 1.0", "spent 1.0 of 1.5", "0.5 remains", "'cohort'"):
        assert number in status, status

    # 3. the admin sees the ledger; the refusal charged nothing; the audit log is intact
    config = str(station.config)
    assert station_main(["budget", "--config", config]) == 0
    state = station.directory / "state"
    ledger = json.loads((state / "privacy" / "ledger.json").read_text())
    account = ledger["accounts"][researcher.public.signing_fingerprint]["cohort"]
    assert account == {"epsilon": "1.0", "delta": "0.0", "releases": 1}
    events = [json.loads(line)["event"] for line in (state / AUDIT_FILE).read_text().splitlines()]
    assert events.count("privacy_charged") == 1 and events.count("privacy_refused") == 1
    assert verify(state / AUDIT_FILE) == []
