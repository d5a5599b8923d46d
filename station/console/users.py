"""Console logins: user names with argon2id password hashes (``argon2-cffi``), kept in the
station's state folder (``console-users.json``, mode 0600). ``pht-station console-user
add`` writes them; the console only reads."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from trains.errors import ConfigError

USERS_FILE = "console-users.json"
_USER = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
MIN_PASSWORD = 12
_HASHER = PasswordHasher()  # argon2id with the library's current parameters
# verified against when the user does not exist, so a wrong name costs the same time
_DUMMY = _HASHER.hash("not a password of anyone")


class Users:
    """The console's users, in ``<state_dir>/console-users.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / USERS_FILE

    def _load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text())
        return {str(k): str(v) for k, v in data.items()}

    def names(self) -> list[str]:
        return sorted(self._load())

    def add(self, user: str, password: str) -> None:
        """Add a user, or set a new password for one."""
        if not _USER.fullmatch(user):
            raise ConfigError(
                f"{user[:80]!r} is not a user name: lower-case letters, digits, '.', '_', '-', "
                "starting with a letter"
            )
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"a console password has at least {MIN_PASSWORD} characters")
        users = self._load()
        users[user] = _HASHER.hash(password)
        self._write(users)

    def remove(self, user: str) -> None:
        users = self._load()
        if users.pop(user, None) is None:
            raise ConfigError(f"no console user {user[:80]!r}")
        self._write(users)

    def check(self, user: str, password: str) -> bool:
        """The password is this user's."""
        stored = self._load().get(user)
        try:
            return _HASHER.verify(stored or _DUMMY, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _write(self, users: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(users, handle, indent=2)
        os.replace(tmp, self.path)
