"""``python3 -m train_builder.demo --serve`` as real processes: both stop signals end every
process it started (also when started in the background, where SIGINT begins ignored); a
restart keeps central's port and what was added by hand, with the commands the demo itself
prints; ``--fresh`` starts a new network."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from central.client import CentralClient

pytestmark = pytest.mark.docker

READY = "press Ctrl-C to stop the network"


class Demo:
    """One ``--serve`` run: its process, its output, and every process below it."""

    def __init__(self, work: Path, *extra: str, sigint_ignored: bool = False) -> None:
        self.work = work
        self.out = work / f"demo-{time.monotonic_ns()}.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHT_")}
        env |= {"HOME": str(work / "home"), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        self.env = env
        with self.out.open("wb") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "train_builder.demo", "--serve",
                 "--workdir", str(work / "demo"), *extra],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                # what a shell does to a job it starts with '&': SIGINT ignored
                preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
                if sigint_ignored
                else None,
            )  # fmt: skip
        deadline = time.monotonic() + 300
        while READY not in self.text:
            assert self.process.poll() is None, f"the demo ended early:\n{self.text}"
            assert time.monotonic() < deadline, f"the demo did not come up:\n{self.text}"
            time.sleep(0.5)
        self.children = descendants(self.process.pid)

    @property
    def text(self) -> str:
        return self.out.read_text(errors="replace")

    @property
    def run_dir(self) -> Path:
        return self.work / "demo" / "serve"

    @property
    def central_url(self) -> str:
        match = re.search(r"^central\s+(http://127\.0\.0\.1:\d+)\s+data folder (\S+)$",
                          self.text, re.MULTILINE)  # fmt: skip
        assert match, self.text
        return match.group(1)

    def consoles(self) -> dict[str, tuple[str, str, str]]:
        """Each station's console as printed: ``{station: (url, user, password)}``."""
        found = re.findall(r"^console\s+(\S+)\s+(http://127\.0\.0\.1:\d+/)\s+user (\S+)\s+"
                           r"password (\S+)$", self.text, re.MULTILINE)  # fmt: skip
        return {station: (url, user, password) for station, url, user, password in found}

    def stop(self, sig: int) -> None:
        self.process.send_signal(sig)
        assert self.process.wait(timeout=60) == 0, self.text
        assert "every process the demo started has ended" in self.text
        alive = [p for p, cmd in self.children.items() if cmdline(p) == cmd]
        assert not alive, f"left running: {[self.children[p] for p in alive]}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid, cmd in descendants(self.process.pid).items() | self.children.items():
            if cmdline(pid) == cmd:
                os.kill(pid, signal.SIGKILL)


def cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:  # gone
        return None


def descendants(root: int) -> dict[int, str]:
    """Every live process below ``root`` (children, theirs, ...), read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                cmd = cmdline(pid)
                if cmd is not None:
                    found[pid] = cmd
                    frontier.append(pid)
    return found


@pytest.fixture
def demos(tmp_path):
    """Start demos in ``tmp_path``; kill whatever a failed test left."""
    started: list[Demo] = []

    def start(*extra: str, sigint_ignored: bool = False) -> Demo:
        demo = Demo(tmp_path, *extra, sigint_ignored=sigint_ignored)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        demo.kill()


def add_station_by_hand(demo: Demo) -> None:
    """Run the commands the demo printed for adding a station, exactly as printed."""
    lines = demo.text.split("add a station to this network", 1)[1].splitlines()
    commands = [line.strip() for line in lines[1:4]]
    assert [c.split()[0] for c in commands] == ["pht-station", "pht-network", "pht-central"]
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(commands)],
        env=demo.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def station_names(demo: Demo) -> set[str]:
    profile = tomllib.loads((demo.work / "home" / ".config" / "pht" / "profile.toml").read_text())
    token = Path(profile["token_file"]).read_text().strip()
    assert profile["central_url"] == demo.central_url
    with CentralClient(demo.central_url, token) as client:
        return {s.name for s in client.stations()}


def log_in_to_console(url: str, user: str, password: str) -> str:
    """Log in as a browser would (the login form's CSRF token, the session cookie); return
    the page the login leads to."""
    with httpx.Client(base_url=url, timeout=30, follow_redirects=True) as browser:
        form = browser.get("/")  # not logged in: the login page
        assert form.status_code == 200 and "<h1>Log in</h1>" in form.text, form.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, form.text
        done = browser.post("/login", data={"csrf": csrf.group(1), "user": user,
                                            "password": password})  # fmt: skip
        assert done.status_code == 200, done.text
        return done.text


def log_in_to_dashboard(demo: Demo, token: str) -> str:
    """Log in at the dashboard URL the demo printed with ``token``; the page it lands on."""
    match = re.search(r"^dashboard\s+(http://127\.0\.0\.1:\d+/dashboard/)\s", demo.text,
                      re.MULTILINE)  # fmt: skip
    assert match, demo.text
    assert match.group(1).startswith(demo.central_url + "/")
    with httpx.Client(base_url=match.group(1), timeout=30, follow_redirects=True) as browser:
        first = browser.get("")
        assert first.status_code == 200 and str(first.url).endswith("/dashboard/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', first.text)
        assert csrf, first.text[:500]
        done = browser.post("login", data={"csrf": csrf.group(1), "token": token})
        assert done.status_code == 200, done.text[:500]
        return done.text


def test_sigint_stops_every_child_of_a_demo_started_in_the_background(docker_required, demos):
    demo = demos(sigint_ignored=True)
    names = {cmd.split("\0")[2] for cmd in demo.children.values() if "\0-m\0" in cmd}
    assert {"central.cli", "station.cli"} <= names  # the processes to be stopped were seen
    assert len(demo.children) >= 5  # registry, central, three stations
    demo.stop(signal.SIGINT)


def test_restart_keeps_port_and_stations_unless_fresh_and_sigterm_stops_all(docker_required, demos):
    first = demos()
    # each station's datasets as its station.toml configures them
    assert re.search(r"^station\s+hospital-a\s+offers cohort \(.*\), survival \(.*\), risk \(",
                     first.text, re.MULTILINE)  # fmt: skip
    add_station_by_hand(first)
    assert "my-station" in station_names(first)
    # every station's console, with a login that works (the pending page after logging in)
    consoles = first.consoles()
    assert set(consoles) == {"hospital-a", "hospital-b", "hospital-c"}, first.text
    for url, user, password in consoles.values():
        assert "Hops waiting here" in log_in_to_console(url, user, password)
    assert "Hops waiting here" not in log_in_to_console(*consoles["hospital-a"][:2], "wrong" * 4)
    logins = first.run_dir / "logins.json"
    admin = first.run_dir / "admin-token"
    assert logins.stat().st_mode & 0o777 == 0o600 and admin.stat().st_mode & 0o777 == 0o600
    assert re.search(rf"^  operator\s+\(admin\)\s+{re.escape(admin.read_text().strip())}\s",
                     first.text, re.MULTILINE)  # fmt: skip
    first.stop(signal.SIGTERM)

    again = demos()
    assert "resumed" in again.text
    assert again.central_url == first.central_url
    assert {"hospital-a", "hospital-b", "hospital-c", "my-station"} <= station_names(again)
    assert again.consoles() == consoles  # same ports, same logins
    url, user, password = again.consoles()["hospital-b"]
    assert "Hops waiting here" in log_in_to_console(url, user, password)
    # central's dashboard: the printed operator token logs in and sees the network's trains
    operator = log_in_to_dashboard(again, admin.read_text().strip())
    assert "demo-operator (admin)" in operator, operator[:800]
    assert "Trains on this network" in operator, operator[:800]
    assert "demo-operator" not in log_in_to_dashboard(again, "not-a-token")
    again.stop(signal.SIGTERM)

    fresh = demos("--fresh")
    assert "resumed" not in fresh.text
    assert "my-station" not in station_names(fresh)
    assert {"hospital-a", "hospital-b", "hospital-c"} <= station_names(fresh)
    assert set(fresh.consoles()) == set(consoles)
    assert [login[2] for login in fresh.consoles().values()] != [
        login[2] for login in consoles.values()
    ]  # a new network, new passwords
    fresh.stop(signal.SIGTERM)


def test_a_damaged_network_file_is_named_with_what_to_do(tmp_path):
    from train_builder.demo_serve import serve
    from trains.errors import PhtError

    kept = tmp_path / "serve" / "network.json"
    kept.parent.mkdir()
    kept.write_text('{"central_port": "not a port"}')
    with pytest.raises(PhtError, match="is damaged; start a new network with --fresh"):
        serve(tmp_path)
