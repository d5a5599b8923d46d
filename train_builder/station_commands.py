"""``pht-train stations ...``: which station keys you believe, and why (train_builder.trust).

With a network root pinned, ``list`` shows each station's enrolment; without one, ``trust``
pins a station's two fingerprints after you compared them with its admin out of band, and
``forget`` drops a pin so that a key change you checked can be accepted.
"""

from __future__ import annotations

import argparse
import sys

from train_builder.researcher import Researcher
from train_builder.trust import FirstContact, describe
from trains.errors import NotEndorsed, PhtError, RouteMismatch
from trains.keys import PublicIdentity


def _served(researcher: Researcher, name: str) -> PublicIdentity:
    for entry in researcher.central.station_directory().stations:
        if entry.identity.name == name:
            return entry.identity
    raise RouteMismatch(f"central knows no station {name!r}; 'pht-train stations list' shows all")


def stations_list(researcher: Researcher) -> int:
    directory = researcher.central.station_directory()
    trust = researcher.trust
    how = (
        f"enrolled by network root {trust.network_root}"
        if trust.network_root
        else f"confirmed by you ({trust.known.path})"
    )
    print(f"stations central serves; 'ok' means {how}:")
    for entry in directory.stations:
        try:
            trust.stops(directory, [entry.identity.name])
            verdict = "ok"
        except FirstContact:
            verdict = "not confirmed yet"
        except NotEndorsed as exc:
            verdict = "REFUSED: " + str(exc).splitlines()[0]
        print(f"  {describe(entry.identity)}\n    {verdict}")
    return 0


def stations_trust(researcher: Researcher, name: str, fingerprints: list[str]) -> int:
    station = _served(researcher, name)
    researcher.trust.known.trust(station, fingerprints)
    print(f"trusting {describe(station)}  (pinned in {researcher.trust.known.path})")
    return 0


def stations_forget(researcher: Researcher, name: str) -> int:
    if not researcher.trust.known.forget(name):
        raise PhtError(f"station {name} is not pinned in {researcher.trust.known.path}")
    print(f"forgot station {name}; confirm its keys again before its next train")
    return 0


def confirm_at_prompt(researcher: Researcher, first: FirstContact) -> bool:
    """At a terminal, ask the researcher to type each new station's name after comparing
    its fingerprints out of band; pin the ones confirmed. False when any was declined."""
    if not sys.stdin.isatty():
        return False
    print(str(first))
    for station in first.stations:
        typed = input(
            f"Compared {station.name}'s fingerprints with its admin? Type its name to trust "
            "it (anything else refuses): "
        ).strip()
        if typed != station.name:
            print(f"not trusting {station.name}; not submitted")
            return False
        researcher.trust.known.trust(
            station, [station.signing_fingerprint, station.sealing_fingerprint]
        )
    return True


def run(args: argparse.Namespace, researcher: Researcher) -> int:
    if args.stations_command == "list":
        return stations_list(researcher)
    if researcher.trust.network_root:
        raise PhtError(
            f"your profile pins network root {researcher.trust.network_root}: stations are "
            "trusted by their enrolment, not one by one (unset network_root to pin stations)"
        )
    if args.stations_command == "trust":
        return stations_trust(researcher, args.name, args.fingerprint)
    return stations_forget(researcher, args.name)
