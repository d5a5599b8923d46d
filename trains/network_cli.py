"""``pht-network``: the consortium's root key, kept offline by its holder.

  pht-network root new --dir ROOT --name my-consortium
  pht-network enrol hospital-a.public.json --dir ROOT --days 90
  pht-network revoke hospital-a --dir ROOT --reason "keys lost"

``enrol`` signs a station's enrolment statement (its name and both public keys, issued and
expiry times); hand the file to central's operator (``pht-central admin add-station
PUBLIC.json --enrolment FILE``, or ``set-enrolment FILE`` to renew). ``revoke`` adds an
entry to the root-signed revocation list ``ROOT/revocations.json`` (``pht-central admin
set-revocations FILE`` serves it). Researchers and stations pin the root's fingerprint
that ``root new`` and ``root show`` print; see trains/enrolment.py for what they check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trains.enrolment import (
    REVOCATIONS_FILE,
    EnrolmentStatement,
    NetworkRoot,
    RevocationList,
    enrol,
    revoke,
)
from trains.errors import PhtError
from trains.keys import load_public
from trains.signing import Envelope, unverified_payload


def root_new(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if (directory / "root.key").exists():
        raise PhtError(f"{directory} already holds a network root; use another --dir")
    root = NetworkRoot.generate(args.name)
    root.save(directory)
    print(f"network root {args.name} written to {directory} (keep root.key offline)")
    print(f"  root fingerprint {root.public.signing_fingerprint}")
    print("publish this fingerprint to every researcher (profile network_root) and station")
    print("(station.toml [policy] network_root) over a channel central does not control")
    return 0


def root_show(args: argparse.Namespace) -> int:
    root = NetworkRoot.load(Path(args.dir))
    print(f"network root {root.name}\n  root fingerprint {root.public.signing_fingerprint}")
    return 0


def enrol_station(args: argparse.Namespace) -> int:
    root = NetworkRoot.load(Path(args.dir))
    station = load_public(Path(args.public_json))
    envelope = enrol(root, station, args.days)
    statement = unverified_payload(envelope, EnrolmentStatement)
    out = Path(args.out or f"{station.name}.enrolment.json")
    out.write_text(envelope.model_dump_json(indent=2) + "\n")
    print(f"enrolled station {station.name} until {statement.expires_at.isoformat()}")
    print(f"  signing key {station.signing_fingerprint}")
    print(f"  sealing key {station.sealing_fingerprint}")
    print("(you compared these with the station's admin out of band, didn't you?)")
    print(f"wrote {out}; central's operator stores it with")
    print(f"  pht-central admin add-station PUBLIC.json --enrolment {out}  (or set-enrolment)")
    return 0


def revoke_station(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    root = NetworkRoot.load(directory)
    path = directory / REVOCATIONS_FILE
    previous = None
    if path.exists():
        try:
            previous = unverified_payload(
                Envelope.model_validate_json(path.read_text()), RevocationList
            )
        except ValueError as exc:
            raise PhtError(f"{path} is not a revocation list ({exc}); restore it") from None
    envelope = revoke(root, previous, args.name, args.key, args.reason)
    path.write_text(envelope.model_dump_json(indent=2) + "\n")
    which = f"key {args.key} of " if args.key else "every enrolment so far of "
    serial = 1 if previous is None else previous.serial + 1
    print(f"revoked {which}station {args.name}: {path} is revocation list {serial}")
    print(f"central's operator serves it with: pht-central admin set-revocations {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pht-network",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    root = sub.add_parser("root", help="the network root key").add_subparsers(
        dest="root_command", required=True
    )
    r = root.add_parser("new", help="create the root key (keep it offline)")
    r.add_argument("--dir", required=True, help="folder for root.key and root.public.json")
    r.add_argument("--name", required=True, help="the network's name")
    r.set_defaults(func=root_new)
    r = root.add_parser("show", help="print the root's fingerprint")
    r.add_argument("--dir", required=True)
    r.set_defaults(func=root_show)

    e = sub.add_parser("enrol", help="sign a station's enrolment statement")
    e.add_argument("public_json", help="the station's public.json")
    e.add_argument("--dir", required=True, help="the root's folder")
    e.add_argument("--days", type=float, default=90, help="lifetime (default 90 days)")
    e.add_argument("--out", help="where to write it (default NAME.enrolment.json)")
    e.set_defaults(func=enrol_station)

    v = sub.add_parser("revoke", help="revoke a station's enrolments (signed revocation list)")
    v.add_argument("name")
    v.add_argument("--dir", required=True, help="the root's folder")
    v.add_argument("--key", metavar="sha256:...", help="only this signing key of the station")
    v.add_argument("--reason", default="", help="shown to researchers (at most 200 characters)")
    v.set_defaults(func=revoke_station)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PhtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. a name or reason the statement's schema refuses
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
