"""``train.toml``: the researcher's description of a train folder."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trains.errors import ConfigError
from trains.manifest import NAME_RE, Resources
from trains.runtime.masking import SECURE_FILE

TRAIN_FILE = "train.toml"
CODE_FILE = "train.py"


class TrainInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_RE)
    version: str = "0.1.0"
    description: str = ""


class TrainSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: TrainInfo
    datasets: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=lambda: ["state.json"], min_length=1)
    resources: Resources = Resources()
    parameters: dict[str, Any] = Field(default_factory=dict)
    # additive parts masked between stations (trains/runtime/secure.py); they travel in
    # secure.json, declared here so that it is in the signed manifest's outputs
    secure: bool = False

    @model_validator(mode="after")
    def _secure_file_declared(self) -> TrainSpec:
        if self.secure and SECURE_FILE not in self.outputs:
            self.outputs.append(SECURE_FILE)
        return self


def load_train_spec(folder: Path) -> TrainSpec:
    """Read ``folder/train.toml``; errors name the file and the key to fix."""
    path = folder / TRAIN_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found; is {folder} a train folder? ('pht-train init')")
    if not (folder / CODE_FILE).is_file():
        raise ConfigError(f"{folder / CODE_FILE} not found; a train needs its code in train.py")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return TrainSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation(exc)}") from None


def format_validation(exc: ValidationError) -> str:
    """Turn a pydantic error into 'key: problem' lines a person can act on."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"key '{key}': {error['msg']}")
    return "; ".join(lines)
