"""``pht-station keys show``: the station's name and key fingerprints, to read out to the
network root's holder or to researchers confirming the station (docs/station-admin.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trains.keys import Identity


def add_keys_command(sub: Any) -> None:
    """Add ``keys show`` to ``pht-station``'s subcommands (``sub``, argparse's action)."""
    keys = sub.add_parser("keys", help="this station's identity").add_subparsers(
        dest="keys_command", required=True
    )
    show = keys.add_parser("show", help="print the station's name and key fingerprints")
    show.add_argument("--config", default="station.toml")
    show.set_defaults(func=keys_show)


def keys_show(args: argparse.Namespace) -> int:
    from station.config import load_config

    directory = load_config(Path(args.config)).keys_dir
    public = Identity.load(directory).public  # of the private keys the daemon signs with
    print(f"station {public.name} (keys in {directory})")
    print(f"  signing key {public.signing_fingerprint}")
    print(f"  sealing key {public.sealing_fingerprint}")
    print(
        "read both fingerprints out to the network root's holder, or to each researcher "
        "('pht-train stations trust NAME --fingerprint SIGNING --fingerprint SEALING')"
    )
    return 0
