"""The manifest: what a researcher signs, and every station checks before anything runs.

It pins the image by digest, the route with each stop's keys, the datasets and resources
the train asks for, and who may read the final state (the researcher's sealing key).

The route unfolds into a plan of hops (:meth:`Manifest.hops`), a small DAG: each hop names
the hops whose outputs it reads. A sequential route is a chain (hop i reads hop i-1); a
parallel route fans out to every stop in a round and joins at the aggregator::

    round r, n stops:  local hops r*(n+1)+s (s = 0..n-1) read the previous aggregate
                       aggregate hop r*(n+1)+n reads every local hop of the round
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from trains.errors import ManifestInvalid, StateInvalid
from trains.keys import NAME_PATTERN, PublicIdentity
from trains.signing import Envelope
from trains.state_codec import MAX_ENTRIES, check_state_name

MANIFEST_TYPE = "application/vnd.pht.manifest+json"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
NAME_RE = NAME_PATTERN  # a train's name, like every party's
# a train id is a UUID in its canonical lower-case form: it names folders and files at
# central and at every station, so nothing else is ever accepted as one
TRAIN_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
MAX_HOPS = 100_000  # hops of one route; hop indices and input positions stay below it
MAX_LIFETIME = timedelta(days=366)  # no manifest lives longer, whatever a setting says
CLOCK_SKEW = timedelta(minutes=5)  # how far ahead a signer's clock may be


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
    """One station on the route, pinned by its public keys, with the network root's signed
    enrolment of those keys when the researcher checked one (see trains.enrolment): a
    station that pins the root refuses a route whose stops are not all endorsed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    station: PublicIdentity
    enrolment: Envelope | None = None

    @property
    def name(self) -> str:
        return self.station.name


Exposure = Literal["aggregator_at_stop", "single_stop"]
EXPOSURE_REFUSED: dict[Exposure, str] = {
    "aggregator_at_stop": "the aggregator {route.aggregator.name} is also a data stop of its "
    "round: it would read the raw partial state of every other stop; name a station that "
    "holds no data as the aggregator",
    "single_stop": "a parallel round needs at least two data stops: with one, its "
    "aggregator sees that site's partial state alone; add stops or use a sequential route",
}
ALLOW_HOW = (
    " (or, if every station of the route agrees, allow it explicitly: "
    "route.allow_exposed_partials = ['{name}'], pht-train submit --allow-exposed-partials {name})"
)
EXPOSURE_SHOWN: dict[Exposure, str] = {
    "aggregator_at_stop": "the aggregator is also a data stop of its round: it reads every "
    "other stop's raw partial state",
    "single_stop": "one data stop per round: the aggregator sees that site's partial alone",
}


class Route(BaseModel):
    """Where the train goes: ``sequential`` visits the stops in order, round after round;
    ``parallel`` runs every stop of a round at once and joins at the ``aggregator``.

    ``on_refusal`` says what a station refusing its hop does to the train: ``fail`` it
    (the default), or ``skip`` the stop: the station passes the state it was handed on to
    the next stop unchanged, re-sealed, with a signed receipt that says it skipped and why
    (sequential routes only: a parallel round joins every partial). The last hop never
    skips: it runs ``finalize`` and the station's disclosure control on what the researcher
    receives, so a refusal there fails the train (and so does a route where every stop
    refuses).

    A parallel round exposes each stop's partial state to its aggregator. Two routes would
    expose more, and are refused unless ``allow_exposed_partials`` names them (stations
    see that in ``pht-station show`` before they approve): ``aggregator_at_stop``, an
    aggregator that is also a data stop of its round (it reads its peers' raw partials),
    and ``single_stop``, a round with one data stop (its aggregator sees that one site's
    partial alone, and the aggregate passes it on)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["sequential", "parallel"] = "sequential"
    rounds: int = Field(1, ge=1, le=1000)
    stops: list[Stop] = Field(min_length=1)
    aggregator: Stop | None = None
    on_refusal: Literal["fail", "skip"] = "fail"
    allow_exposed_partials: list[Exposure] = Field(default_factory=list, max_length=2)

    @model_validator(mode="after")
    def _unique_stations(self) -> Route:
        names = [stop.name for stop in self.stops]
        if len(set(names)) != len(names):
            raise ValueError(f"a station may appear once per round; route is {names}")
        if self.mode == "parallel" and self.aggregator is None:
            raise ValueError(
                "a parallel route needs an aggregator stop that joins each round; "
                "name one (pht-train submit --aggregator STATION)"
            )
        if self.mode == "parallel" and self.on_refusal == "skip":
            raise ValueError(
                "on_refusal 'skip' works on sequential routes only: a parallel round joins "
                "the partial state of every stop; use on_refusal 'fail' or a sequential route"
            )
        if self.mode == "sequential" and self.aggregator is not None:
            raise ValueError(
                "an aggregator belongs to a parallel route only; use mode 'parallel' or drop it"
            )
        exposed = self.exposed_partials()
        if missing := [e for e in exposed if e not in self.allow_exposed_partials]:
            refused = EXPOSURE_REFUSED[missing[0]] + ALLOW_HOW
            raise ValueError(refused.format(route=self, name=missing[0]))
        if unused := [e for e in self.allow_exposed_partials if e not in exposed]:
            raise ValueError(
                f"route.allow_exposed_partials names {unused[0]!r}, which this route does not "
                "do; remove it (pht-train submit without --allow-exposed-partials)"
            )
        return self

    def exposed_partials(self) -> list[Exposure]:
        """What this route exposes beyond each partial to a separate aggregator."""
        if self.mode != "parallel" or self.aggregator is None:
            return []
        exposed: list[Exposure] = []
        keys = self.aggregator.station
        if any(
            stop.name == self.aggregator.name
            or stop.station.signing_fingerprint == keys.signing_fingerprint
            or stop.station.sealing_fingerprint == keys.sealing_fingerprint
            for stop in self.stops
        ):
            exposed.append("aggregator_at_stop")
        if len({stop.station.sealing_fingerprint for stop in self.stops}) < 2:
            exposed.append("single_stop")
        return exposed


HopKind = Literal["local", "aggregate"]
ReceiptKind = Literal["local", "aggregate", "skipped"]  # what a hop's receipt says it did


class Hop(BaseModel):
    """One visit of one stop. Hops are numbered 0.. across all rounds.

    ``inputs`` are the hops whose outputs this hop reads, in order (empty: it reads the
    initial state, if the train brings one); ``position`` is the stop's place in its round
    (the aggregate hop of a parallel round comes after the n local ones: position n)."""

    model_config = ConfigDict(frozen=True)

    index: int
    round: int
    stop: Stop
    is_last: bool
    kind: HopKind = "local"
    inputs: list[int] = Field(default_factory=list)
    position: int = 0


def plan_hops(route: Route) -> list[Hop]:
    """The route unfolded into its hops, in index order (see the module docstring)."""
    stops, rounds = route.stops, route.rounds
    n = len(stops)
    if route.mode == "sequential":
        total = n * rounds
        return [
            Hop(
                index=i,
                round=i // n,
                stop=stops[i % n],
                is_last=i == total - 1,
                inputs=[] if i == 0 else [i - 1],
                position=i % n,
            )
            for i in range(total)
        ]
    assert route.aggregator is not None  # the validator insists
    hops: list[Hop] = []
    for r in range(rounds):
        base = r * (n + 1)
        previous = [] if r == 0 else [base - 1]
        hops += [
            Hop(index=base + s, round=r, stop=stop, is_last=False, inputs=previous, position=s)
            for s, stop in enumerate(stops)
        ]
        hops.append(
            Hop(
                index=base + n,
                round=r,
                stop=route.aggregator,
                is_last=r == rounds - 1,
                kind="aggregate",
                inputs=list(range(base, base + n)),
                position=n,
            )
        )
    return hops


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    train_id: str = Field(default_factory=lambda: str(uuid.uuid4()), pattern=TRAIN_ID_PATTERN)
    name: str = Field(pattern=NAME_RE)
    version: str = Field(min_length=1, max_length=64)
    researcher: PublicIdentity
    image: Image
    route: Route
    datasets: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default_factory=list, max_length=64
    )
    outputs: list[str] = Field(
        min_length=1, max_length=MAX_ENTRIES, description="files the train declares it writes"
    )
    resources: Resources = Resources()
    initial_state_digest: str | None = Field(
        None, description="sha256 of the sealed initial state, if the train brings one"
    )
    created_at: AwareDatetime
    expires_at: AwareDatetime

    @field_validator("outputs")
    @classmethod
    def _plain_file_names(cls, names: list[str]) -> list[str]:
        """Each declared output is a name the state codec would pack: no control or bidi
        characters, no path tricks (it is shown to station admins before approval)."""
        for name in names:
            try:
                check_state_name(name)
            except StateInvalid as exc:
                raise ValueError(f"outputs: {exc}") from None
        return names

    @model_validator(mode="after")
    def _times_in_order(self) -> Manifest:
        if self.expires_at <= self.created_at:
            raise ValueError("expires_at must be after created_at")
        if self.expires_at - self.created_at > MAX_LIFETIME:
            raise ValueError(
                f"a manifest lives at most {MAX_LIFETIME.days} days (created_at to "
                "expires_at); sign one with a nearer expiry"
            )
        return self

    @model_validator(mode="after")
    def _bounded_route(self) -> Manifest:
        n = len(self.route.stops) + (self.route.mode == "parallel")
        if n * self.route.rounds > MAX_HOPS:
            raise ValueError(f"a route has at most {MAX_HOPS} hops (stops x rounds)")
        return self

    @cached_property
    def _plan(self) -> tuple[list[Hop], dict[int, list[Hop]]]:
        hops = plan_hops(self.route)
        consumers: dict[int, list[Hop]] = {h.index: [] for h in hops}
        for hop in hops:
            for source in hop.inputs:
                consumers[source].append(hop)
        return hops, consumers

    def hops(self) -> list[Hop]:
        return list(self._plan[0])

    def hop(self, index: int) -> Hop:
        hops = self._plan[0]
        if not 0 <= index < len(hops):
            raise IndexError(f"hop {index} is outside this route of {len(hops)} hops")
        return hops[index]

    def may_skip(self, index: int) -> bool:
        """May the station of hop ``index`` pass the state on unchanged when it refuses?"""
        return self.skip_refused(index) is None

    def skip_refused(self, index: int) -> str | None:
        """Why hop ``index`` may not be skipped, in words for a message; None: it may."""
        hop = self.hop(index)
        if self.route.on_refusal != "skip":
            return f"the route lets no stop skip (route.on_refusal is {self.route.on_refusal!r})"
        if hop.kind != "local":
            return f"hop {index} is of kind {hop.kind!r}, and only a local hop may skip"
        if hop.is_last:
            return (
                f"hop {index} is the last hop: it runs finalize and disclosure control on what "
                "the researcher receives, so it must run"
            )
        return None

    def first_hops(self) -> list[Hop]:
        """The hops that read no other hop's output (they read the initial state, if any)."""
        return [h for h in self._plan[0] if not h.inputs]

    def consumers(self, index: int) -> list[Hop]:
        """The hops that read the output of hop ``index`` (none after the last hop)."""
        self.hop(index)
        return list(self._plan[1][index])

    def recipients_after(self, index: int) -> list[PublicIdentity]:
        """Who may open the state hop ``index`` writes: the stations of the hops that read
        it (each once, in hop order), or the researcher after the last hop."""
        return _distinct([h.stop.station for h in self.consumers(index)]) or [self.researcher]

    def initial_recipients(self) -> list[PublicIdentity]:
        """Who may open the initial state: the stations of the first hops."""
        return _distinct([h.stop.station for h in self.first_hops()])

    def recipient_after(self, index: int) -> PublicIdentity:
        """The one reader of hop ``index``'s output (sequential routes, an aggregate's last
        round); a fan-out has several: use :meth:`recipients_after`."""
        recipients = self.recipients_after(index)
        if len(recipients) != 1:
            raise ValueError(
                f"the output of hop {index} goes to {len(recipients)} stops; use recipients_after()"
            )
        return recipients[0]


def _distinct(identities: list[PublicIdentity]) -> list[PublicIdentity]:
    seen: set[str] = set()
    out = []
    for identity in identities:
        if identity.sealing_fingerprint not in seen:
            seen.add(identity.sealing_fingerprint)
            out.append(identity)
    return out


def check_times(
    manifest: Manifest,
    max_lifetime: timedelta,
    skew: timedelta = CLOCK_SKEW,
    now: datetime | None = None,
) -> None:
    """Refuse a manifest that has expired, was made in the future (beyond ``skew``: the
    signer's clock may be a little ahead) or lives longer than ``max_lifetime``. Central
    checks at submission, each station before it runs a hop."""
    now = now or datetime.now(UTC)
    if manifest.expires_at <= now:
        raise ManifestInvalid(f"the manifest expired at {manifest.expires_at.isoformat()}")
    if manifest.created_at > now + skew:
        raise ManifestInvalid(
            f"the manifest says it was made at {manifest.created_at.isoformat()}, more than "
            f"{skew.total_seconds():.0f}s in the future; check the signer's clock and sign again"
        )
    if manifest.expires_at - manifest.created_at > max_lifetime:
        raise ManifestInvalid(
            f"the manifest lives from {manifest.created_at.isoformat()} to "
            f"{manifest.expires_at.isoformat()}, longer than the {max_lifetime.days} days "
            "allowed here; sign it with a nearer expiry (pht-train submit --days N)"
        )


def expiry_from_now(days: float) -> tuple[datetime, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    return now, now + timedelta(days=days)
