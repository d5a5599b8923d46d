"""The logins ``python3 -m train_builder.demo --serve`` prints: each station's web console
(a ``[console]`` table in its ``station.toml`` and a console user made by ``pht-station
console-user add``) and central's dashboard (the operator's admin token, and your
researcher token).

A password or token is made once and kept in the demo's state folder, readable by you
alone (``logins.json``, ``admin-token``), so a restart without ``--fresh`` prints the same
login again and the console's port stays the one your browser has open.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from train_builder.localnet import LocalNet, Station, _bin, free_port
from trains.errors import PhtError

LOGINS_FILE = "logins.json"  # station name -> console user and password
ADMIN_TOKEN_FILE = "admin-token"
CONSOLE_USER = "steward"  # the data steward who approves trains in the console
OPERATOR = "demo-operator"  # the admin central knows the demo's operator by


@dataclass(frozen=True)
class ConsoleLogin:
    """Where one station's console is served and who can log in to it."""

    station: str
    url: str
    user: str
    password: str


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (no window where
    another user could read a password)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a file (or link) left there keeps its own mode: start anew
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _console_port(station: Station) -> int | None:
    console = tomllib.loads(station.config.read_text()).get("console")
    if not isinstance(console, dict):
        return None
    port = console.get("port", 8470)
    if not isinstance(port, int):
        raise PhtError(f"{station.config}: [console] port is not a number; fix it or use --fresh")
    return port


def ensure_consoles(net: LocalNet, run_dir: Path) -> list[ConsoleLogin]:
    """Give every station of ``net`` a console on a port of its own and a console user
    (each made once: a station that has both keeps them). Call before the stations start:
    the daemon reads ``[console]`` when it starts."""
    path = run_dir / LOGINS_FILE
    try:
        saved = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        raise PhtError(f"{path} is damaged; start a new network with --fresh") from None
    if not isinstance(saved, dict):
        raise PhtError(f"{path} is damaged; start a new network with --fresh")
    logins: list[ConsoleLogin] = []
    for name, station in net.stations.items():
        port = _console_port(station)
        if port is None:
            port = free_port()
            with station.config.open("a") as handle:  # a new table after [policy]
                handle.write(f'\n[console]\nhost = "127.0.0.1"\nport = {port}\n')
        login = saved.get(name)
        if not (
            isinstance(login, dict)
            and isinstance(login.get("user"), str)
            and isinstance(login.get("password"), str)
        ):
            login = {"user": CONSOLE_USER, "password": secrets.token_urlsafe(18)}
            _add_console_user(station, login["user"], login["password"])
            saved[name] = login
            _write_private(path, json.dumps(saved, indent=2) + "\n")
        logins.append(
            ConsoleLogin(name, f"http://127.0.0.1:{port}/", login["user"], login["password"])
        )
    return logins


def _add_console_user(station: Station, user: str, password: str) -> None:
    """As an admin would: ``pht-station console-user add USER --password-stdin``."""
    done = subprocess.run(
        [*_bin("pht-station"), "console-user", "add", user, "--password-stdin",
         "--config", str(station.config)],
        input=password + "\n", capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise PhtError(f"adding console user {user} at {station.name} failed: {done.stderr}")


def admin_token(net: LocalNet, run_dir: Path) -> Path:
    """The operator's admin token at central (registered once, as an operator would with
    ``pht-central admin add-admin``), in a file only you can read."""
    path = run_dir / ADMIN_TOKEN_FILE
    if path.exists() and path.read_text().strip():
        return path
    done = subprocess.run(
        [*_bin("pht-central"), "admin", "add-admin", "--data-dir", str(net.central_dir),
         OPERATOR],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise PhtError(f"registering the demo's operator failed: {done.stderr.strip()}")
    _write_private(path, done.stdout.strip().splitlines()[-1] + "\n")
    return path


def busy_console_ports(net: LocalNet, free: Callable[[int], bool]) -> list[tuple[str, int]]:
    """The stations whose kept console port is taken (``free(port) -> bool``)."""
    taken = []
    for name, station in net.stations.items():
        port = _console_port(station)
        if port is not None and not free(port):
            taken.append((name, port))
    return taken
