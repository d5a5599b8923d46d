"""``pht-station``: set up a station and run its daemon."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trains.errors import PhtError
from trains.keys import Identity

TEMPLATE = """\
# pht station configuration. Paths are relative to this file.
[station]
name = "{name}"
central_url = "{central}"
token_file = "token"        # the token central's operator gives you (keep it 0600)
keys_dir = "keys"           # this station's private keys; never share them
work_dir = "work"           # scratch space for runs; logs of each run stay here
poll_interval_s = 1.0

# Datasets trains may ask for, by name. Each is materialised read-only per run.
# [datasets.cohort]
# type = "csv"
# path = "data/cohort.csv"

[policy]
# Researcher signing-key fingerprints (sha256:...) whose trains run here.
trusted_signers = []
# Registries images may come from (host or host:port).
allowed_registries = ["127.0.0.1"]

[policy.caps]
memory_mb = 2048
cpus = 2.0
timeout_s = 3600
max_output_mb = 1024
"""


def init(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    config_path = directory / "station.toml"
    if config_path.exists():
        raise PhtError(f"{config_path} exists; choose another folder or edit it")
    identity = Identity.generate(args.name)
    identity.save(directory / "keys")
    config_path.write_text(TEMPLATE.format(name=args.name, central=args.central))
    public = identity.public
    print(f"station {args.name} created in {directory}")
    print(f"  signing key {public.signing_fingerprint}")
    print(f"  sealing key {public.sealing_fingerprint}")
    print(f"hand {directory / 'keys' / 'public.json'} to central's operator; put the token")
    print(f"they give you in {directory / 'token'}")
    return 0


def run(args: argparse.Namespace) -> int:
    from station.config import load_config
    from station.daemon import run_daemon

    config = load_config(Path(args.config))
    run_daemon(config, once=args.once)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pht-station", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    i = sub.add_parser("init", help="create keys and a commented station.toml")
    i.add_argument("dir")
    i.add_argument("--name", required=True)
    i.add_argument("--central", required=True, help="central's URL")
    i.set_defaults(func=init)
    r = sub.add_parser("run", help="run the station daemon")
    r.add_argument("--config", default="station.toml")
    r.add_argument("--once", action="store_true", help="stop when no hop is waiting")
    r.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    try:
        return int(args.func(args))
    except PhtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
