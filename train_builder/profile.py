"""The researcher's profile: where central, the token, the keys and the registry are.

One TOML file (default ``~/.config/pht/profile.toml``, another with ``PHT_PROFILE``)::

    central_url = "http://127.0.0.1:8700"
    token_file = "~/.config/pht/token"
    keys_dir = "~/.pht/keys"
    registry = "127.0.0.1:5000"
    network_root = "sha256:..."   # the consortium's root key: stations must be enrolled by it

Environment variables override the file (PHT_CENTRAL_URL, PHT_TOKEN or PHT_TOKEN_FILE,
PHT_KEYS_DIR, PHT_REGISTRY, PHT_NETWORK_ROOT) and command-line flags override both.
Without a network root, the stations you confirmed are pinned in ``known_stations.json``
beside the profile file (see ``train_builder.trust``). Every error names the
value that is missing or wrong and the three places it can be set.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from train_builder.trust import (
    KNOWN_STATIONS_FILE,
    REVOCATIONS_CACHE_FILE,
    KnownStations,
    StationTrust,
)
from trains.errors import ConfigError
from trains.train_spec import format_validation

DEFAULT_PROFILE = "~/.config/pht/profile.toml"
DEFAULT_KEYS_DIR = "~/.pht/keys"
DEFAULT_REGISTRY = "127.0.0.1:5000"

# profile key -> (environment variable, command-line flag)
SOURCES = {
    "central_url": ("PHT_CENTRAL_URL", "--central"),
    "token_file": ("PHT_TOKEN_FILE", "--token-file"),
    "keys_dir": ("PHT_KEYS_DIR", "--keys"),
    "registry": ("PHT_REGISTRY", "--registry"),
    "network_root": ("PHT_NETWORK_ROOT", "--network-root"),
}


class ProfileFile(BaseModel):
    """What the TOML file may hold; an unknown key is an error that names it."""

    model_config = ConfigDict(extra="forbid")

    central_url: str | None = None
    token_file: str | None = None
    keys_dir: str | None = None
    registry: str | None = None
    network_root: str | None = None


def profile_path() -> Path:
    return Path(os.environ.get("PHT_PROFILE") or DEFAULT_PROFILE).expanduser()


def read_profile(path: Path | None = None) -> ProfileFile:
    path = path or profile_path()
    if not path.exists():
        return ProfileFile()
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix or delete the file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the profile {path}: {exc.strerror}") from None
    try:
        return ProfileFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            f"{path}: {format_validation(exc)}; the profile knows {', '.join(SOURCES)}"
        ) from None


def write_profile_value(key: str, value: str, path: Path | None = None) -> Path:
    """Set one key in the profile file (created with its folder when missing)."""
    if key not in SOURCES:
        raise ConfigError(f"unknown profile key {key!r}; the profile knows {', '.join(SOURCES)}")
    path = path or profile_path()
    values = read_profile(path).model_dump(exclude_none=True)
    values[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    # every value is a string; a JSON string is a valid TOML basic string
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in sorted(values.items())))
    return path


@dataclass(frozen=True)
class Setting:
    value: str | None
    source: str  # "flag --central", "env PHT_CENTRAL_URL", "profile <path>", "default"


@dataclass(frozen=True)
class Profile:
    """The resolved settings, each remembering where it came from."""

    path: Path
    central_url: Setting
    token_file: Setting
    token_env: bool  # PHT_TOKEN is set (it wins over every token file)
    keys_dir: Setting
    registry: Setting
    network_root: Setting

    def trust(self) -> StationTrust:
        """How this researcher authenticates station keys (train_builder.trust)."""
        folder = self.path.parent
        return StationTrust(
            self.network_root.value,
            KnownStations(folder / KNOWN_STATIONS_FILE),
            folder / REVOCATIONS_CACHE_FILE,
        )

    def require_central_url(self) -> str:
        if not self.central_url.value:
            raise ConfigError(self._missing("central_url", "the URL of central"))
        return self.central_url.value

    def token(self) -> str:
        if self.token_env:
            token = os.environ["PHT_TOKEN"].strip()
            if token:
                return token
        if not self.token_file.value:
            raise ConfigError(
                self._missing("token_file", "a file holding your API token")
                + " (or put the token itself in PHT_TOKEN)"
            )
        path = Path(self.token_file.value).expanduser()
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"token file {path} (from {self.token_file.source}) not found; save the token "
                "central's operator gave you there, or point token_file elsewhere"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"token file {path} is empty; save your API token in it")
        return token

    def keys_path(self) -> Path:
        return Path(self.keys_dir.value or DEFAULT_KEYS_DIR).expanduser()

    def registry_value(self) -> str:
        return self.registry.value or DEFAULT_REGISTRY

    def _missing(self, key: str, what: str) -> str:
        env, flag = SOURCES[key]
        return (
            f"no {key} ({what}): run 'pht-train profile set {key} VALUE' (writes {self.path}), "
            f"or set {env}, or pass {flag}"
        )

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, source) rows for ``pht-train profile show``; never the token."""
        token_row = (
            ("token", "(set)", "env PHT_TOKEN")
            if self.token_env
            else ("token_file", self.token_file.value or "(not set)", self.token_file.source)
        )
        return [
            ("central_url", self.central_url.value or "(not set)", self.central_url.source),
            token_row,
            ("keys_dir", str(self.keys_path()), self.keys_dir.source),
            ("registry", self.registry_value(), self.registry.source),
            (
                "network_root",
                self.network_root.value or f"(none: stations pinned in {KNOWN_STATIONS_FILE})",
                self.network_root.source,
            ),
        ]


def resolve_profile(flags: dict[str, str | None] | None = None) -> Profile:
    """Flags over environment over profile file over defaults."""
    flags = flags or {}
    path = profile_path()
    stored = read_profile(path)

    def pick(key: str) -> Setting:
        env, flag = SOURCES[key]
        if flags.get(key):
            return Setting(flags[key], f"flag {flag}")
        if os.environ.get(env):
            return Setting(os.environ[env], f"env {env}")
        value = getattr(stored, key)
        if value:
            return Setting(value, f"profile {path}")
        return Setting(None, "default")

    return Profile(
        path=path,
        central_url=pick("central_url"),
        token_file=pick("token_file"),
        token_env=bool(os.environ.get("PHT_TOKEN")) and not flags.get("token_file"),
        keys_dir=pick("keys_dir"),
        registry=pick("registry"),
        network_root=pick("network_root"),
    )
