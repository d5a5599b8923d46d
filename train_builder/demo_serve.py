"""The demo network kept running for the tutorial (``python3 -m train_builder.demo --serve``),
and the lifecycle both demo modes share: where the work folder is, a network whose
processes all end with the demo, and signals that stop it cleanly.

The network's state (central's database and port, the registry's port, the stations' keys
and ``station.toml``, the network root) stays in ``WORKDIR/serve`` across restarts, so a
station or researcher added by hand is still there and its ``central_url`` still works;
``--fresh`` starts a new network instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import tomllib
from pathlib import Path
from types import FrameType
from typing import Any

from train_builder.demo_compare import HOSPITALS, hospital_datasets, say
from train_builder.demo_logins import ConsoleLogin, admin_token, busy_console_ports, ensure_consoles
from train_builder.localnet import LocalNet, Station, wait_http
from trains.errors import PhtError
from trains.keys import Identity, load_public

NETWORK_FILE = "network.json"  # ports, researcher and stations of a network that came up
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1
HAND_STATION = "my-station"  # the name the printed commands use for a station added by hand
HAND_RESEARCHER = "bob"


def default_workdir() -> Path:
    """Outside the clone, so two people serving from one clone do not share a network."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "pht-demo"


class Stopped(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived: unwind, stopping every process the demo started."""


def stop_on_signals() -> None:
    """Turn each stop signal into :class:`Stopped`. Installed explicitly because a job a
    shell starts in the background begins with SIGINT ignored, and Python then installs
    no KeyboardInterrupt handler of its own."""

    def handler(signum: int, frame: FrameType | None) -> None:
        _ignore_signals()  # a second signal must not cut the cleanup short
        raise Stopped(signal.Signals(signum).name)

    for sig in SIGNALS:
        signal.signal(sig, handler)


def _ignore_signals() -> None:
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux sends the child SIGTERM if the demo dies without cleaning up (SIGKILL)."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: no imports in the child


class DemoNet(LocalNet):
    """A :class:`LocalNet` whose processes each lead their own process group (a terminal's
    Ctrl-C reaches only the demo, which stops them stations first) and die with the demo."""

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as handle:
            process = subprocess.Popen(
                args,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        _ignore_signals()  # stopping runs to the end whatever arrives meanwhile
        for process in reversed(self.processes):
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        self.processes.clear()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)  # the whole group: anything the child started, too


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # as the servers do: a closed connection lingering in TIME_WAIT does not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _saved(run_dir: Path) -> dict[str, Any] | None:
    """The network kept in ``run_dir``, or None (none, or a start that never came up)."""
    path = run_dir / NETWORK_FILE
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        saved = None
    kinds = {"registry_port": int, "central_port": int, "researcher": str, "keys_dir": str}
    if not (
        isinstance(saved, dict)
        and all(isinstance(saved.get(key), kind) for key, kind in kinds.items())
        and isinstance(saved.get("stations"), list)
        and all(isinstance(name, str) for name in saved["stations"])
    ):
        raise PhtError(f"{path} is damaged; start a new network with --fresh")
    return saved


def serve(workdir: Path, fresh: bool = False) -> int:
    """Start the demo network (or the one kept in ``workdir``) and keep it running; register
    you as a researcher (your keys in ~/.pht/keys, made if missing), have the stations trust
    you, and point your profile (~/.config/pht/profile.toml, or $PHT_PROFILE) at it."""
    from train_builder.profile import DEFAULT_KEYS_DIR

    run_dir = workdir / "serve"
    saved = None if fresh else _saved(run_dir)
    if saved is None:
        shutil.rmtree(run_dir, ignore_errors=True)  # fresh, or a start that never came up
    else:
        for key in ("registry_port", "central_port"):
            port = int(saved[key])
            if not _port_free(port):
                raise PhtError(
                    f"port {port}, kept for this demo network's {key.split('_')[0]}, is in use "
                    f"(is the demo already serving from {workdir}?); stop that, or start a new "
                    "network with --fresh"
                )
    keys_dir = Path(os.environ.get("PHT_KEYS_DIR") or DEFAULT_KEYS_DIR).expanduser()
    with DemoNet(run_dir) as net:
        if saved is not None:
            net.registry_port = int(saved["registry_port"])
            net.central_port = int(saved["central_port"])
        net.start_registry(storage=workdir / "registry")
        net.start_central()
        if saved is None:
            you, keys, token = net.add_researcher(getpass.getuser() or "researcher", keys_dir)
            for name in HOSPITALS:
                net.add_station(name, hospital_datasets(name), trusted=[you])
            (run_dir / NETWORK_FILE).write_text(
                json.dumps(
                    {
                        "registry_port": net.registry_port,
                        "central_port": net.central_port,
                        "researcher": you.name,
                        "keys_dir": str(keys),
                        "stations": HOSPITALS,
                    },
                    indent=2,
                )
                + "\n"
            )
        else:
            keys = Path(str(saved["keys_dir"]))
            token = run_dir / "researchers" / str(saved["researcher"]) / "token"
            for name in saved["stations"]:
                directory = run_dir / "stations" / name
                net.stations[name] = Station(name, directory, Identity.load(directory / "keys"))
            busy = busy_console_ports(net, _port_free)
            if busy:
                name, port = busy[0]
                raise PhtError(
                    f"port {port}, kept for the console of {name}, is in use (is the demo "
                    f"already serving from {workdir}?); stop that, or start a new network "
                    "with --fresh"
                )
        consoles = ensure_consoles(net, run_dir)  # before the stations read station.toml
        admin = admin_token(net, run_dir)
        for name in net.stations:
            net.start_station(name)
        for login in consoles:  # printed once it answers: a URL you can open at once
            wait_http(f"{login.url}login")
        profile = _write_profile(net, keys, token)
        _print_network(net, workdir, keys, profile, resumed=saved is not None)
        _print_logins(net, consoles, admin, token)
        say("press Ctrl-C to stop the network")
        while all(p.poll() is None for p in net.processes):
            time.sleep(0.5)
        say(f"a demo process stopped; see the logs in {run_dir}")
        return 1


def _write_profile(net: LocalNet, keys: Path, token: Path) -> Path:
    from train_builder.profile import profile_path, write_profile_value

    profile = profile_path()
    backup = profile.with_name(profile.name + ".before-demo")
    # keep the profile the demo replaces, once: not its own from an earlier run
    if profile.exists() and not backup.exists() and not _points_at(profile, net):
        shutil.copy2(profile, backup)
        say(f"your profile was saved to {backup}")
    for key, value in (
        ("central_url", net.central_url),
        ("token_file", str(token)),
        ("keys_dir", str(keys)),
        ("registry", net.registry),
        ("network_root", net.network_root),
    ):
        write_profile_value(key, value, profile)
    return profile


def _points_at(profile: Path, net: LocalNet) -> bool:
    try:
        return bool(tomllib.loads(profile.read_text()).get("central_url") == net.central_url)
    except tomllib.TOMLDecodeError:
        return False


def _print_network(net: LocalNet, workdir: Path, keys: Path, profile: Path, resumed: bool) -> None:
    you = load_public(keys / "public.json")
    central = net.central_dir
    how = "resumed (its state is kept; --fresh starts a new one)" if resumed else "started"
    say(f"demo network {how} in {net.root}")
    say(f"registry   {net.registry}")
    say(f"central    {net.central_url}   data folder {central}")
    for name, station in net.stations.items():
        say(f"station    {name:<11} offers {_datasets(station.config)}")
    say(f"you        researcher {you.name}, signing key {you.signing_fingerprint}")
    say(f"           keys in {keys}; profile written to {profile}")
    say(
        f"network    root {net.network_root} (its key is in {net.root_dir}) enrolled every "
        "station; your profile pins it, so 'pht-train submit' accepts only stations it enrolled"
    )
    folder = workdir / HAND_STATION
    say(f"\nadd a station to this network ({HAND_STATION}, in {folder}):")
    say(f"  pht-station init {folder} --name {HAND_STATION} --central {net.central_url}")
    say(
        f"  pht-network enrol {folder}/keys/public.json --dir {net.root_dir} --days 30 "
        f"--out {folder}/enrolment.json"
    )
    say(
        f"  pht-central admin add-station --data-dir {central} {folder}/keys/public.json "
        f"--enrolment {folder}/enrolment.json | tail -n 1 > {folder}/token"
    )
    say(f"  then in {folder}/station.toml add a [datasets.NAME] table and set under [policy]")
    say(
        f'    trusted_signers = ["{you.signing_fingerprint}"]\n'
        f'    allowed_registries = ["{net.registry}"]\n'
        f'    network_root = "{net.network_root}"'
    )
    say(f"  and run it: pht-station run --config {folder}/station.toml")
    bob = workdir / "researchers" / HAND_RESEARCHER
    say(f"add a researcher ({HAND_RESEARCHER}, keys and token in {bob}):")
    say(f"  pht-train --keys {bob}/keys keys new --name {HAND_RESEARCHER}")
    say(
        f"  pht-central admin add-researcher --data-dir {central} {bob}/keys/public.json "
        f"| tail -n 1 > {bob}/token"
    )
    say(
        f"  then add {HAND_RESEARCHER}'s signing key ('pht-train --keys {bob}/keys keys show') to "
        f"trusted_signers in {net.root}/stations/*/station.toml and restart the demo"
    )


def _print_logins(
    net: LocalNet, consoles: list[ConsoleLogin], admin: Path, researcher: Path
) -> None:
    """Where to open the consoles and the dashboard, with a login for each (kept in the
    demo's state folder, so a restart prints the same ones)."""
    say("\nopen in a browser on this machine:")
    for login in consoles:
        say(f"console    {login.station:<11} {login.url}   user {login.user}   "
            f"password {login.password}")  # fmt: skip
    say(f"dashboard  {net.central_url}/dashboard/   log in at /dashboard/login with a token:")
    say(f"  operator   (admin)       {admin.read_text().strip()}   (in {admin})")
    say(f"  researcher (you)         {researcher.read_text().strip()}   (in {researcher})")


def _datasets(config: Path) -> str:
    """What the station's own station.toml offers, as configured."""
    datasets = tomllib.loads(config.read_text()).get("datasets", {})
    if not datasets:
        return "no datasets"
    return ", ".join(
        f"{name} ({spec.get('path') or spec.get('type', '?')})" for name, spec in datasets.items()
    )
