"""The layout version of a station's state folder, in ``<state>/SCHEMA``.

The daemon and every admin command open the folder through :func:`open_state`: a new
folder gets this code's version; an older one is migrated, one step at a time, each step
recorded before the next (so a crash mid-way resumes where it stopped); a newer one is
refused before anything in it is read or written, since this code would misread it.

Version 1 is the layout of ``station.queue`` and ``station.audit``: ``hops/<record>.json``,
``outbox/`` and ``audit.jsonl``. A folder without ``SCHEMA`` predates versioning: it is
version 1 once its known entries are checked to be what version 1 makes.

Version 2 keeps the records the daemon's loop no longer acts on (done, quarantined, a
refusal or failure central has heard of) in ``ended/`` instead of ``hops/``, so that a
step reads only open hops. Version 1 code would not look there (a done hop offered again
would look new to it, and listings would miss the history), hence a new version.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from trains.errors import ConfigError

SCHEMA_FILE = "SCHEMA"
CURRENT = 2
# what each version's layout holds, and of which kind (True: a folder)
V1_ENTRIES = {
    "hops": True,
    "outbox": True,
    "audit.jsonl": False,
    "approvals.json": False,  # standing approvals (station.approvals)
    "console-users.json": False,  # the console's logins (station.console.users)
    "privacy": True,  # the privacy budget ledger (station.privacy_ledger)
    "runner": False,  # the Docker label of the daemon's runs, for cleanup after a restart
}


def _to_v2(state_dir: Path) -> None:
    """Move the records the loop is done with from ``hops/`` to ``ended/`` (each move is
    a save: written there, then removed here; run again after a crash, it finishes)."""
    from station.queue import HopQueue  # the queue's own rule of which records are live

    HopQueue(state_dir).live()  # reading hops/ settles every record in its folder


# version N -> N + 1, rewriting the folder in place (safe to run again after a crash)
MIGRATIONS: dict[int, Callable[[Path], None]] = {1: _to_v2}
_LOCK_FILE = ".schema.lock"


class StateTooNew(ConfigError):
    """The state folder was written by a newer pht-station than this one."""


def open_state(state_dir: Path) -> Path:
    """Check the folder's layout version, migrating an older one; returns ``state_dir``."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(state_dir):
        version = read_version(state_dir)
        if version is None:
            _check_unversioned(state_dir)
            version = 1  # empty (a new station) or the layout before versioning
            write_version(state_dir, version)
        if version > CURRENT:
            raise StateTooNew(
                f"the state folder {state_dir} has layout version {version}, but this "
                f"pht-station knows versions up to {CURRENT}: a newer pht-station wrote it. "
                "Run that newer pht-station, or restore the backup of the folder taken "
                "before the upgrade to run this one; a folder is never migrated back"
            )
        while version < CURRENT:
            MIGRATIONS[version](state_dir)
            version += 1
            write_version(state_dir, version)
    return state_dir


def still_current(state_dir: Path) -> None:
    """Raise StateTooNew if a newer pht-station migrated the folder under this running
    process (an admin command of a newer release run before the daemon was restarted):
    this process would misread what it finds next."""
    version = read_version(state_dir)
    if version != CURRENT:
        raise StateTooNew(
            f"the state folder {state_dir} is now at layout version {version}, not the "
            f"{CURRENT} this process opened: a newer pht-station migrated it. Restart the "
            "daemon with that release"
        )


def read_version(state_dir: Path) -> int | None:
    """The folder's version, or None if it has no ``SCHEMA`` file."""
    path = state_dir / SCHEMA_FILE
    try:
        with path.open("rb") as handle:
            raw = handle.read(33)  # a number, bounded: never read a large file whole
    except FileNotFoundError:
        return None
    text = raw.decode("ascii", "replace").strip()
    if len(raw) > 32 or not text.isdigit() or not text.isascii() or int(text) < 1:
        raise ConfigError(
            f"{path} should hold the state folder's layout version (a number such as "
            f"{CURRENT}) and does not; restore it from the backup of the folder"
        )
    return int(text)


def write_version(state_dir: Path, version: int) -> None:
    """Record ``version`` (write, fsync, rename: a crash leaves the old or the new)."""
    tmp = state_dir / f".{SCHEMA_FILE}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{version}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, state_dir / SCHEMA_FILE)


def _check_unversioned(state_dir: Path) -> None:
    """A folder without ``SCHEMA``: empty, or holding version 1's entries as version 1
    makes them. Anything else is not a station's state folder (a wrong ``state_dir``)."""
    entries = [p for p in state_dir.iterdir() if not p.name.startswith(".")]
    for path in entries:
        want_folder = V1_ENTRIES.get(path.name)
        if want_folder is not None and path.is_dir() != want_folder:
            kind = "a folder" if want_folder else "a file"
            raise ConfigError(
                f"{state_dir} does not look like a station's state folder ({path.name} is "
                f"not {kind}); check state_dir in station.toml"
            )
    if entries and not any(p.name in V1_ENTRIES for p in entries):
        raise ConfigError(
            f"{state_dir} holds other files and no station state (no hops/, outbox/ or "
            "audit.jsonl); point state_dir in station.toml at the station's state folder or "
            "at an empty one"
        )


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One process at a time checks or migrates (the daemon and an admin command may
    start together)."""
    fd = os.open(state_dir / _LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
