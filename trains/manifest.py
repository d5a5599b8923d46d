"""The manifest: what a researcher signs, and every station checks before anything runs.

It pins the image by digest, the route with each stop's keys, the datasets and resources
the train asks for, and who may read the final state (the researcher's sealing key).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from trains.keys import PublicIdentity

MANIFEST_TYPE = "application/vnd.pht.manifest+json"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class Resources(BaseModel):
    """What one container run may use; stations refuse requests above their caps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory_mb: int = Field(512, ge=16, le=1_048_576)
    cpus: float = Field(1.0, gt=0, le=256)
    timeout_s: int = Field(600, ge=1, le=7 * 24 * 3600)
    max_output_mb: int = Field(100, ge=1, le=1_048_576)


class Image(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    repository: str = Field(description="e.g. 127.0.0.1:5000/pht/cohort")
    digest: str = Field(pattern=DIGEST_RE.pattern)

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


class Stop(BaseModel):
    """One station on the route, pinned by its public keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    station: PublicIdentity

    @property
    def name(self) -> str:
        return self.station.name


class Route(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["sequential"] = "sequential"
    rounds: int = Field(1, ge=1, le=1000)
    stops: list[Stop] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_stations(self) -> Route:
        names = [stop.name for stop in self.stops]
        if len(set(names)) != len(names):
            raise ValueError(f"a station may appear once per round; route is {names}")
        return self


class Hop(BaseModel):
    """One visit of one stop. Hops are numbered 0.. across all rounds."""

    model_config = ConfigDict(frozen=True)

    index: int
    round: int
    stop: Stop
    is_last: bool


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    train_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    name: str = Field(pattern=NAME_RE)
    version: str = Field(min_length=1, max_length=64)
    researcher: PublicIdentity
    image: Image
    route: Route
    datasets: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(min_length=1, description="files the train declares it writes")
    resources: Resources = Resources()
    initial_state_digest: str | None = Field(
        None, description="sha256 of the sealed initial state, if the train brings one"
    )
    created_at: AwareDatetime
    expires_at: AwareDatetime

    @model_validator(mode="after")
    def _times_in_order(self) -> Manifest:
        if self.expires_at <= self.created_at:
            raise ValueError("expires_at must be after created_at")
        return self

    def hops(self) -> list[Hop]:
        stops = self.route.stops
        total = len(stops) * self.route.rounds
        return [
            Hop(index=i, round=i // len(stops), stop=stops[i % len(stops)], is_last=i == total - 1)
            for i in range(total)
        ]

    def hop(self, index: int) -> Hop:
        hops = self.hops()
        if not 0 <= index < len(hops):
            raise IndexError(f"hop {index} is outside this route of {len(hops)} hops")
        return hops[index]

    def recipient_after(self, index: int) -> PublicIdentity:
        """Who may open the state that hop ``index`` writes: the next stop, or the researcher."""
        hop = self.hop(index)
        return self.researcher if hop.is_last else self.hop(index + 1).stop.station


def expiry_from_now(days: float) -> tuple[datetime, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    return now, now + timedelta(days=days)
