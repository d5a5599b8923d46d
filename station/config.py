"""``station.toml``, loaded into typed models and validated at start."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trains.errors import ConfigError
from trains.manifest import Resources
from trains.train_spec import format_validation


class StationInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    central_url: str
    token_file: Path = Path("token")
    keys_dir: Path = Path("keys")
    work_dir: Path = Path("work")
    poll_interval_s: float = Field(1.0, gt=0, le=3600)


class Dataset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["csv"] = "csv"
    path: Path


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trusted_signers: list[str] = Field(
        default_factory=list, description="researcher signing-key fingerprints (sha256:...)"
    )
    allowed_registries: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    caps: Resources = Resources(memory_mb=2048, cpus=2.0, timeout_s=3600, max_output_mb=1024)


class StationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    station: StationInfo
    datasets: dict[str, Dataset] = Field(default_factory=dict)
    policy: Policy = Policy()
    base_dir: Path = Path(".")

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path

    @property
    def keys_dir(self) -> Path:
        return self.resolve(self.station.keys_dir)

    @property
    def work_dir(self) -> Path:
        return self.resolve(self.station.work_dir)

    def token(self) -> str:
        path = self.resolve(self.station.token_file)
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"{path} is missing: put the token central's operator gave you there"
            ) from None
        if not token:
            raise ConfigError(f"{path} is empty: put the token from central's operator there")
        return token


def load_config(path: Path) -> StationConfig:
    """Read a station.toml; an error names the file, the key and what to fix."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found; create one with 'pht-station init'") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    raw["base_dir"] = str(path.resolve().parent)
    try:
        config = StationConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation(exc)}") from None
    for name, dataset in config.datasets.items():
        source = config.resolve(dataset.path)
        if not source.is_file():
            raise ConfigError(
                f"{path}: key 'datasets.{name}.path': {source} does not exist; "
                "point it at the dataset's file"
            )
    return config
