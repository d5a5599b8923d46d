"""``pht-train``: write, test, build, submit, watch and fetch a verified result.

Settings come from flags, else environment variables (PHT_CENTRAL_URL, PHT_TOKEN or
PHT_TOKEN_FILE, PHT_KEYS_DIR, PHT_REGISTRY), else the profile file
(~/.config/pht/profile.toml, or PHT_PROFILE; see 'pht-train profile show').

  pht-train init mytrain --template cohort
  pht-train test mytrain --data mytrain/sample/hospital-a.csv --data mytrain/sample/hospital-b.csv
  pht-train build mytrain
  pht-train stations list
  pht-train submit mytrain --route hospital-a,hospital-b
  pht-train submit mytrain --route hospital-a,hospital-b,hospital-c --aggregator hospital-a
  pht-train watch last
  pht-train result last --out result/
"""

from __future__ import annotations

import argparse
import os
import sys

from train_builder import commands
from trains.errors import CentralError, PhtError
from trains.text import printable

TRAIN_ID_HELP = "the train's id, a unique start of it, or 'last' for your most recent train"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pht-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--central", help="central's URL (PHT_CENTRAL_URL)")
    parser.add_argument("--token-file", help="file holding your API token (PHT_TOKEN_FILE)")
    parser.add_argument("--keys", help="your keys folder (PHT_KEYS_DIR, default ~/.pht/keys)")
    parser.add_argument(
        "--network-root",
        metavar="sha256:...",
        help="the network root's fingerprint: stations must be enrolled by it (PHT_NETWORK_ROOT)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = sub.add_parser("keys", help="your identity").add_subparsers(
        dest="keys_command", required=True
    )
    k = keys.add_parser("new", help="create your signing and sealing keys")
    k.add_argument("--name", required=True)
    k.set_defaults(func=commands.keys_new)
    k = keys.add_parser("show", help="print your keys' sha256 fingerprints")
    k.set_defaults(func=commands.keys_show)

    st = sub.add_parser(
        "stations", help="the stations central serves, and which keys you believe"
    ).add_subparsers(dest="stations_command", required=True)
    st.add_parser(
        "list", help="each station's fingerprints and whether you trust them"
    ).set_defaults(func=commands.stations)
    k = st.add_parser("trust", help="pin a station's keys after comparing fingerprints out of band")
    k.add_argument("name")
    k.add_argument(
        "--fingerprint",
        action="append",
        default=[],
        required=True,
        metavar="sha256:...",
        help="give twice: the station's signing and sealing key fingerprints, as its admin "
        "read them out to you",
    )
    k.set_defaults(func=commands.stations)
    k = st.add_parser("forget", help="drop a station's pinned keys (to accept a checked change)")
    k.add_argument("name")
    k.set_defaults(func=commands.stations)

    profile = sub.add_parser("profile", help="where central, token, keys and registry are")
    prof = profile.add_subparsers(dest="profile_command", required=True)
    p = prof.add_parser("set", help="save one setting in the profile file")
    p.add_argument("key", help="central_url, token_file, keys_dir or registry")
    p.add_argument("value")
    p.set_defaults(func=commands.profile_set)
    p = prof.add_parser("show", help="show each setting and where it comes from")
    p.set_defaults(func=commands.profile_show)

    i = sub.add_parser("init", help="start a new train folder from a template")
    i.add_argument("name", help="the new folder; its name is the train's name")
    i.add_argument("--template", help="a reference train to start from ('pht-train templates')")
    i.set_defaults(func=commands.init)
    sub.add_parser("templates", help="list the templates").set_defaults(
        func=commands.list_templates
    )

    t = sub.add_parser("test", help="run the whole route locally on sample data")
    t.add_argument("dir")
    t.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="[NAME=]FILE[,NAME=FILE]",
        help="one local station's data; repeat per station (NAME: a dataset of train.toml)",
    )
    t.add_argument("--rounds", type=int, default=1)
    t.add_argument(
        "--parallel",
        "--aggregator",
        action="store_true",
        help="parallel rounds: every station runs local() at once, then aggregate() joins them",
    )
    t.add_argument("--in-docker", action="store_true", help="run each hop in a real container")
    t.add_argument("--out", help="keep the final state files in this folder")
    t.add_argument("--base", default=None, help="base image for --in-docker")
    t.add_argument("--wheelhouse", help="offline wheels for requirements.txt (--in-docker)")
    t.set_defaults(func=commands.test)

    b = sub.add_parser("build", help="build the train image and push it to the registry")
    b.add_argument("dir")
    b.add_argument("--registry", help="host:port of the OCI registry (PHT_REGISTRY)")
    b.add_argument("--base", default="pht-base:latest")
    b.add_argument("--wheelhouse", help="folder of wheels for the train's requirements.txt")
    b.add_argument("--no-push", action="store_true", help="build only; push later with 'push'")
    b.set_defaults(func=commands.build)

    p = sub.add_parser("push", help="push an image built with 'build --no-push'")
    p.add_argument("dir")
    p.add_argument("--registry", help="host:port of the OCI registry (PHT_REGISTRY)")
    p.set_defaults(func=commands.push)

    s = sub.add_parser("submit", help="sign the manifest and submit it to central")
    s.add_argument("dir")
    s.add_argument("--route", required=True, help="stations in order, comma separated")
    s.add_argument(
        "--aggregator",
        metavar="STATION",
        help="run parallel rounds: all --route stations at once, joined at this station",
    )
    s.add_argument("--rounds", type=int, default=1)
    s.add_argument(
        "--skip-refusing",
        action="store_true",
        help="a station that refuses its hop passes the state on unchanged and the train "
        "goes on without it (sequential routes; the last stop must run; default: a refusal "
        "fails the train)",
    )
    s.add_argument(
        "--allow-exposed-partials",
        action="append",
        default=[],
        choices=["aggregator_at_stop", "single_stop"],
        help="allow a parallel route that exposes more partial states (an aggregator that is "
        "also a data stop; one data stop per round); the stations see it before approving",
    )
    s.add_argument("--days", type=float, default=7, help="days until the manifest expires")
    s.add_argument("--yes", action="store_true", help="do not ask to confirm the fingerprints")
    s.set_defaults(func=commands.submit)

    for name, func, text in (
        ("status", commands.status, "show where a train is"),
        ("watch", commands.watch, "show a train's progress live until it finishes"),
        ("wait", commands.wait, "wait until a train is done or failed"),
        ("cancel", commands.cancel, "stop a train; hops not yet run never run"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("train_id", help=TRAIN_ID_HELP)
        p.set_defaults(func=func)
        if name in ("watch", "wait"):
            p.add_argument("--timeout", type=float, default=3600, help="seconds (default 3600)")
        if name == "status":
            p.add_argument(
                "--timeline",
                action="store_true",
                help="where each hop's time went: queue, the station's signed steps, delivery",
            )

    sub.add_parser("list", help="your trains").set_defaults(func=commands.list_trains)

    r = sub.add_parser("result", help="download, verify every receipt and open the result")
    r.add_argument("train_id", help=TRAIN_ID_HELP)
    r.add_argument("--out", required=True)
    r.add_argument("--quiet", action="store_true", help="do not print the state")
    r.set_defaults(func=commands.result)
    return parser


def explain(exc: PhtError, args: argparse.Namespace) -> str:
    """The error's message, plus the next step where the message alone cannot say it."""
    message = str(exc)
    if isinstance(exc, CentralError) and "(401)" in message:
        try:
            token = commands.profile_of(args).describe()[1]
            where = f"{token[1]} ({token[2]})"
        except PhtError:
            where = "your token file"
        message += (
            f"\ncentral does not know your token, or it was revoked; ask central's operator "
            f"for a new one and save it in {where}"
        )
    return message


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, so that a closed pipe is caught below, not at exit
        return code
    except BrokenPipeError:  # `pht-train status ID | head -1`: the reader has had enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit's own flush cannot fail again
        return 0
    except PhtError as exc:
        sys.stdout.flush()  # what was said so far, then the error on a line of its own
        print(f"error: {printable(explain(exc, args), keep_newlines=True)}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file the researcher named cannot be read or written
        sys.stdout.flush()
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
