"""docs/tutorial.md cannot rot: its marked shell blocks run exactly as written, in a fresh
HOME, against a real local network (registry, central and three station daemons as
processes), and the result they fetch must equal the same analysis on the pooled data.

The tutorial's first step, ``python3 -m train_builder.demo --serve``, is what this test
does itself below: start the network, create the researcher, write the profile."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from train_builder.localnet import LocalNet

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "docs" / "tutorial.md"
SAMPLE = REPO / "trains" / "reference" / "cohort" / "sample"
HOSPITALS = ["hospital-a", "hospital-b", "hospital-c"]
MARKER = "<!-- tutorial: run -->"


def tutorial_commands() -> list[str]:
    """The ```sh blocks right after a ``<!-- tutorial: run -->`` line, in order."""
    pattern = re.compile(re.escape(MARKER) + r"\n```sh\n(.*?)\n```", re.DOTALL)
    return pattern.findall(TUTORIAL.read_text())


def test_the_tutorial_marks_its_steps():
    blocks = tutorial_commands()
    assert len(blocks) >= 7
    text = "\n".join(blocks)
    for step in ("pht-train init", "pht-train test", "pht-train build", "pht-train submit"):
        assert step in text
    assert "pht-train watch" in text and "pht-train result" in text


def test_the_tutorial_runs_as_written(localnet, tmp_path):
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    # what `python3 -m train_builder.demo --serve` does for the newcomer, on the session's
    # registry and a central of its own (station names are the tutorial's)
    with LocalNet(tmp_path / "net", registry_port=localnet.registry_port) as net:
        net.start_central()
        you, keys, token = net.add_researcher("you")
        for name in HOSPITALS:
            net.add_station(name, {"cohort": SAMPLE / f"{name}.csv"}, trusted=[you])
            net.start_station(name)
        profile = home / ".config" / "pht" / "profile.toml"
        profile.parent.mkdir(parents=True)
        profile.write_text(
            f'central_url = "{net.central_url}"\ntoken_file = "{token}"\n'
            f'keys_dir = "{keys}"\nregistry = "{net.registry}"\n'
            f'network_root = "{net.network_root}"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHT_")}
        env["HOME"] = str(home)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        script = "set -euo pipefail\n" + "\n".join(tutorial_commands()) + "\n"
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{_logs(net)}"
    assert "Traceback" not in done.stderr

    # the fetched, verified result released exactly the analysis of the pooled data (no
    # group is below the stations' default k, so nothing is suppressed); the state stays
    assert json.loads((work / "result" / "state.json").read_text()) == {}
    published = json.loads((work / "result" / "published.json").read_text())
    released = {q["name"]: q for q in published["quantities"]}
    assert published["release"]["suppressed"] == []
    pooled = pd.concat([pd.read_csv(SAMPLE / f"{h}.csv") for h in HOSPITALS])
    sizes = pooled.groupby("sex").size()
    assert released["patients"]["rows"] == list(sizes.index)
    assert released["patients"]["counts"] == [[int(n)] for n in sizes]
    for sex, group in pooled.groupby("sex"):
        mean = released[f"age/mean/{sex}"]
        assert mean["n"] == len(group)
        assert mean["value"] == pytest.approx(group["age"].mean(), rel=1e-12)
    assert "released 3 typed quantities" in done.stdout  # pht-train test and result say so
    assert "verified 3 receipts" in done.stdout
    assert "hop 2 round 0 hospital-c" in done.stdout  # watch showed the last stop


def _logs(net: LocalNet) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in net.root.rglob("*.log")
    )
