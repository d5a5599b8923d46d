"""Which station keys the researcher believes: never simply the ones central serves.

Two ways, chosen by the profile:

* **a network root** (profile ``network_root = "sha256:..."``): a station is accepted only
  with an enrolment statement the pinned root signed for its name and exactly the keys
  central serves, not expired and not revoked (``trains.enrolment``). The newest revocation
  list seen is kept beside the profile (``network-revocations.json``), so central cannot
  roll it back by serving an older one.
* **known stations** (no root; small networks): ``known_stations.json`` beside the profile
  pins each station's two fingerprints. A station met for the first time is refused until
  the researcher confirms its fingerprints, compared out of band with its admin
  (``pht-train stations trust NAME --fingerprint SIGNING --fingerprint SEALING``, or typing
  the name at the prompt of an interactive ``submit``; ``--yes`` does not confirm it). A
  station whose keys changed is refused, with both fingerprints, until the researcher checks
  and accepts the change (``pht-train stations forget NAME``, then trust it again).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trains.enrolment import (
    RevocationList,
    StationDirectory,
    open_revocations,
    verify_enrolment,
)
from trains.errors import ConfigError, NotEndorsed, RouteMismatch
from trains.keys import PublicIdentity
from trains.manifest import DIGEST_RE, Stop
from trains.signing import Envelope

KNOWN_STATIONS_FILE = "known_stations.json"
REVOCATIONS_CACHE_FILE = "network-revocations.json"


class Pinned(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signing_fingerprint: str = Field(pattern=DIGEST_RE.pattern)
    sealing_fingerprint: str = Field(pattern=DIGEST_RE.pattern)
    trusted_at: str


class FirstContact(NotEndorsed):
    """Stations never confirmed before: their fingerprints must be compared out of band."""

    def __init__(self, message: str, stations: list[PublicIdentity]) -> None:
        super().__init__(message)
        self.stations = stations


def describe(station: PublicIdentity) -> str:
    return (
        f"{station.name}: signing key {station.signing_fingerprint}, "
        f"sealing key {station.sealing_fingerprint}"
    )


@dataclass(frozen=True)
class KnownStations:
    """The researcher's pinned station fingerprints (a JSON file, name -> fingerprints)."""

    path: Path

    def load(self) -> dict[str, Pinned]:
        try:
            raw = json.loads(self.path.read_text())
            return {name: Pinned.model_validate(p) for name, p in dict(raw).items()}
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError, ValidationError) as exc:
            raise ConfigError(
                f"{self.path} is not a known-stations file ({exc}); fix it, or delete it and "
                "confirm each station's fingerprints again"
            ) from None

    def _save(self, known: dict[str, Pinned]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({n: p.model_dump() for n, p in sorted(known.items())}, indent=2))
        os.replace(tmp, self.path)

    def trust(self, station: PublicIdentity, fingerprints: list[str]) -> None:
        """Pin ``station``'s keys, if ``fingerprints`` are exactly its two fingerprints."""
        wanted = {station.signing_fingerprint, station.sealing_fingerprint}
        if set(fingerprints) != wanted:
            raise NotEndorsed(
                f"the fingerprints you gave ({', '.join(fingerprints) or 'none'}) are not the "
                f"keys central serves for {describe(station)}. Give both the signing and the "
                "sealing key fingerprint its admin read out to you ('pht-station init' printed "
                "them); if they differ, do not trust this station: its keys may have been replaced"
            )
        known = self.load()
        if station.name in known:
            raise NotEndorsed(
                f"station {station.name} is already pinned; to accept new keys after checking "
                f"them, run 'pht-train stations forget {station.name}' first"
            )
        known[station.name] = Pinned(
            signing_fingerprint=station.signing_fingerprint,
            sealing_fingerprint=station.sealing_fingerprint,
            trusted_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._save(known)

    def forget(self, name: str) -> bool:
        known = self.load()
        found = known.pop(name, None) is not None
        if found:
            self._save(known)
        return found


@dataclass(frozen=True)
class StationTrust:
    """What the researcher pinned: a network root, else the known-stations file."""

    network_root: str | None
    known: KnownStations
    revocations_cache: Path | None = None

    def __post_init__(self) -> None:
        if self.network_root is not None and not DIGEST_RE.match(self.network_root):
            raise ConfigError(
                f"network_root {self.network_root!r} is not a fingerprint sha256:<64 hex>; "
                "copy it exactly as the consortium's root holder published it"
            )

    def stops(self, directory: StationDirectory, names: list[str]) -> list[Stop]:
        """One pinned stop per name, each station's keys authenticated without trusting
        central; raises NotEndorsed (FirstContact) naming every station refused and why."""
        served = {entry.identity.name: entry for entry in directory.stations}
        unknown = [n for n in names if n not in served]
        if unknown:
            raise RouteMismatch(
                f"central knows no station {unknown}; known stations: {sorted(served)}"
            )
        if self.network_root is not None:
            revocations = self._revocations(directory.revocations)
            return [
                Stop(
                    station=served[n].identity,
                    enrolment=_endorsed(
                        served[n].enrolment, self.network_root, served[n].identity, revocations
                    ),
                )
                for n in names
            ]
        known = self.known.load()
        changed, new = [], []
        for name in dict.fromkeys(names):
            station, pinned = served[name].identity, known.get(name)
            if pinned is None:
                new.append(station)
            elif (pinned.signing_fingerprint, pinned.sealing_fingerprint) != (
                station.signing_fingerprint,
                station.sealing_fingerprint,
            ):
                changed.append(
                    f"the keys of station {name} changed: you confirmed signing key "
                    f"{pinned.signing_fingerprint} and sealing key {pinned.sealing_fingerprint} "
                    f"on {pinned.trusted_at[:10]}, central now serves signing key "
                    f"{station.signing_fingerprint} and sealing key "
                    f"{station.sealing_fingerprint}. Nothing was submitted. Ask the station's "
                    "admin whether its keys really changed; only then run 'pht-train stations "
                    f"forget {name}' and trust the new ones"
                )
        if changed:
            raise NotEndorsed("\n".join(changed))
        if new:
            lines = "\n".join(f"  {describe(s)}" for s in new)
            raise FirstContact(
                f"first contact with {len(new)} station(s); compare these fingerprints with "
                f"the ones each station's admin gives you over another channel:\n{lines}\n"
                "then confirm each: 'pht-train stations trust NAME --fingerprint SIGNING "
                "--fingerprint SEALING' (--yes does not confirm a new station)",
                new,
            )
        # the statements central serves go along unchecked: a station pinning the root checks
        return [Stop(station=served[n].identity, enrolment=served[n].enrolment) for n in names]

    def _revocations(self, served: Envelope | None) -> RevocationList | None:
        """The newest revocation list: the one central serves, or the one seen before."""
        assert self.network_root is not None
        current = open_revocations(served, self.network_root) if served is not None else None
        cache = self.revocations_cache
        if cache is None:
            return current
        try:
            cached = open_revocations(
                Envelope.model_validate_json(cache.read_text()), self.network_root
            )
        except FileNotFoundError:
            cached = None
        except (ValueError, NotEndorsed):
            cached = None  # another root's or unreadable: replaced by what central serves
        if current is not None and (cached is None or current.serial > cached.serial):
            assert served is not None
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(served.model_dump_json())
            return current
        return cached


def _endorsed(
    enrolment: Envelope | None,
    root: str,
    station: PublicIdentity,
    revocations: RevocationList | None,
) -> Envelope:
    verify_enrolment(enrolment, root, station, revocations)
    assert enrolment is not None
    return enrolment
