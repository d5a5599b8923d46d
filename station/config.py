"""``station.toml``, loaded into typed models and validated at start."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from station.registry import normalise_allowed
from trains.errors import ConfigError
from trains.keys import NAME_PATTERN
from trains.manifest import DIGEST_RE, Resources
from trains.train_spec import format_validation

if TYPE_CHECKING:
    from station.pull import PullLimits


class StationInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)  # as central and every manifest spell it
    central_url: str
    token_file: Path = Path("token")
    keys_dir: Path = Path("keys")
    work_dir: Path = Path("work")
    state_dir: Path = Path("state")  # approval queue, outbox, audit log: keep it backed up
    poll_interval_s: float = Field(1.0, gt=0, le=3600)
    # central holds an idle poll open this long and answers the moment a hop is queued
    long_poll_s: float = Field(10.0, ge=0, le=30)
    max_backoff_s: float = Field(30.0, gt=0, le=3600)
    heartbeat_s: float = Field(10.0, gt=0, le=3600)  # well within central's hop lease
    # a pull ends when Docker reports no progress for pull_stall_s, and at pull_timeout_s
    pull_timeout_s: float = Field(600.0, gt=0, le=86400)
    pull_stall_s: float = Field(60.0, gt=0, le=3600)
    # the OCI runtime of every train container: "runsc" runs each under gVisor's own kernel
    # (registered with dockerd by scripts/register-runsc.sh; docs/sandbox.md, "gVisor")
    runtime: Literal["runc", "runsc"] = "runc"


class ConsoleSettings(BaseModel):
    """The web console the daemon serves (``station.console``; docs/station-admin.md)."""

    model_config = ConfigDict(extra="forbid")

    # 127.0.0.1: only this machine; for another address put a TLS reverse proxy in front
    host: str = "127.0.0.1"
    port: int = Field(8470, ge=1, le=65535)
    session_minutes: float = Field(30.0, gt=0, le=24 * 60)


class CsvSource(BaseModel):
    """A CSV file, handed to trains as it is."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["csv"] = "csv"
    path: Path


class ParquetSource(BaseModel):
    """A Parquet file, handed to trains as it is."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["parquet"]
    path: Path


class SqlSource(BaseModel):
    """A query against a database (any SQLAlchemy URL), run afresh for every hop."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["sql"]
    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db")
    query: str = Field(min_length=1)
    format: Literal["csv", "parquet"] = "csv"


Dataset = Annotated[CsvSource | ParquetSource | SqlSource, Field(discriminator="type")]


class SignerPolicy(BaseModel):
    """What one researcher key may do here; the table key is its fingerprint."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""  # for people reading the config; the fingerprint is what counts
    datasets: list[str] | None = None  # None: every dataset this station offers
    auto_approve: bool = True


class DisclosurePolicy(BaseModel):
    """What a station checks on an output before it leaves (see station.disclosure)."""

    model_config = ConfigDict(extra="forbid")

    min_cell: int = Field(5, ge=1, le=1_000_000)
    small_cells: Literal["suppress", "refuse"] = "suppress"
    count_files: list[str] = Field(
        default_factory=lambda: ["*.counts.csv", "*.counts.json"],
        description="glob patterns of output files whose numbers are counts",
    )
    # typed outputs at the release point (station.release, station.disclosure_rules); the
    # defaults are ACRO's (SACRO guidelines), see docs/station-admin.md
    k: int = Field(10, ge=1, le=1_000_000, description="minimum records behind a number")
    min_df: int = Field(10, ge=1, le=1_000_000, description="minimum residual df")
    nk_k: float = Field(0.9, gt=0, le=1, description="(2, k) dominance share")
    p_ratio: float = Field(0.1, ge=0, le=1, description="p-ratio rule")
    zeros_disclosive: bool = False
    untyped: Literal["hold", "refuse"] = Field(
        "hold", description="files other than published.json at the release point"
    )


class PrivacyPolicy(BaseModel):
    """Differential privacy on what this station releases (see station.privacy)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "required"] = "off"
    mechanism: Literal["laplace", "gaussian"] = "laplace"
    epsilon_per_release: float = Field(1.0, gt=0, le=100, description="ε one release spends")
    delta: float = Field(
        0.0, ge=0, le=1e-4, description="δ one release spends; only the gaussian mechanism"
    )
    budget: float = Field(
        10.0, gt=0, le=10_000, description="total ε per researcher key and dataset, for good"
    )
    # a quantity DP does not cover (a regression, model weights, a median): refuse the
    # release, or release it exact with a note saying it is not covered
    uncovered: Literal["refuse", "release"] = "refuse"

    @model_validator(mode="after")
    def _consistent(self) -> PrivacyPolicy:
        if self.mechanism == "gaussian" and self.delta == 0:
            raise ValueError('mechanism "gaussian" needs a delta > 0 (e.g. 1e-6)')
        if self.mechanism == "laplace" and self.delta != 0:
            raise ValueError('delta applies only to mechanism "gaussian"; remove it')
        if self.epsilon_per_release > self.budget:
            raise ValueError("epsilon_per_release is larger than the whole budget")
        return self


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trusted_signers: list[str] = Field(
        default_factory=list, description="researcher signing-key fingerprints (sha256:...)"
    )
    signers: dict[str, SignerPolicy] = Field(default_factory=dict)
    allowed_registries: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:5000"],
        description="registries as host:port (exactly: no default port, localhost is not "
        "127.0.0.1), optionally with a path prefix host:port/path; see station.registry",
    )
    allowed_images: list[str] = Field(
        default_factory=list,
        description="image digests approved in advance; empty: any image from an allowed "
        "registry. An image not listed waits for the admin's approval.",
    )
    max_image_mb: int = Field(
        4096, ge=1, le=1_000_000, description="largest image pulled (download and unpacked)"
    )
    network_root: str | None = Field(
        None,
        pattern=DIGEST_RE.pattern,
        description="the consortium root's fingerprint (sha256:...): refuse a train unless "
        "every stop of its route is enrolled by this root (station/verify.py check 4c)",
    )
    approval: Literal["auto", "manual"] = "auto"
    release: Literal["auto", "manual"] = "auto"
    caps: Resources = Resources(memory_mb=2048, cpus=2.0, timeout_s=3600, max_output_mb=1024)
    disclosure: DisclosurePolicy = DisclosurePolicy()
    privacy: PrivacyPolicy = PrivacyPolicy()
    # longest manifest lifetime (created_at to expires_at) this station runs
    max_manifest_days: float = Field(30.0, gt=0, le=366)

    @field_validator("trusted_signers", "allowed_images")
    @classmethod
    def _digests(cls, values: list[str]) -> list[str]:
        for value in values:
            if not DIGEST_RE.match(value):
                raise ValueError(f"{value!r} is not a fingerprint of the form sha256:<64 hex>")
        return values

    @field_validator("allowed_registries")
    @classmethod
    def _registries(cls, values: list[str]) -> list[str]:
        return normalise_allowed(values)

    @field_validator("signers")
    @classmethod
    def _signer_keys(cls, values: dict[str, SignerPolicy]) -> dict[str, SignerPolicy]:
        for key in values:
            if not DIGEST_RE.match(key):
                raise ValueError(
                    f'[policy.signers."{key}"] must be named by a fingerprint sha256:<64 hex>'
                )
        return values

    def signer(self, fingerprint: str) -> SignerPolicy | None:
        """The rules for a researcher key, or None when this station does not trust it."""
        if fingerprint in self.signers:
            return self.signers[fingerprint]
        if fingerprint in self.trusted_signers:
            return SignerPolicy()
        return None


class StationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    station: StationInfo
    datasets: dict[str, Dataset] = Field(default_factory=dict)
    policy: Policy = Policy()
    console: ConsoleSettings | None = None  # no [console] table: the daemon serves none
    base_dir: Path = Path(".")
    source: Path | None = None  # the file this was read from, for messages

    @model_validator(mode="before")
    @classmethod
    def _csv_by_default(cls, raw: Any) -> Any:
        for dataset in (raw.get("datasets") or {}).values() if isinstance(raw, dict) else ():
            if isinstance(dataset, dict):
                dataset.setdefault("type", "csv")
        return raw

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path

    @property
    def keys_dir(self) -> Path:
        return self.resolve(self.station.keys_dir)

    @property
    def work_dir(self) -> Path:
        return self.resolve(self.station.work_dir)

    @property
    def state_dir(self) -> Path:
        return self.resolve(self.station.state_dir)

    @property
    def token_path(self) -> Path:
        return self.resolve(self.station.token_file)

    @property
    def pull_limits(self) -> PullLimits:
        from station.pull import PullLimits

        info = self.station
        return PullLimits(info.pull_timeout_s, info.pull_stall_s, self.policy.max_image_mb)

    def token(self) -> str:
        path = self.token_path
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
    raw["source"] = str(path)
    try:
        config = StationConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation(exc)}") from None
    for name, dataset in config.datasets.items():
        if isinstance(dataset, CsvSource | ParquetSource):
            source = config.resolve(dataset.path)
            if not source.is_file():
                raise ConfigError(
                    f"{path}: key 'datasets.{name}.path': {source} does not exist; "
                    "point it at the dataset's file"
                )
    for fingerprint, signer in config.policy.signers.items():
        unknown = sorted(set(signer.datasets or []) - set(config.datasets))
        if unknown:
            raise ConfigError(
                f"{path}: key 'policy.signers.\"{fingerprint}\".datasets': no dataset named "
                f"{unknown}; use names from the [datasets.*] tables {sorted(config.datasets)}"
            )
    return config
