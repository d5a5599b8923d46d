"""``pht-train``: build, push, sign, submit, watch and fetch a verified result.

Settings come from flags, else environment variables: PHT_CENTRAL_URL, PHT_TOKEN (or
PHT_TOKEN_FILE), PHT_KEYS_DIR (default ~/.pht/keys), PHT_REGISTRY (default 127.0.0.1:5000).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from trains.errors import ConfigError, PhtError
from trains.keys import Identity
from trains.manifest import Image

IMAGE_FILE = ".pht-image.json"


def _keys_dir(args: argparse.Namespace) -> Path:
    return Path(args.keys or os.environ.get("PHT_KEYS_DIR", "~/.pht/keys")).expanduser()


def _researcher(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from central.client import CentralClient
    from train_builder.researcher import Researcher

    url = args.central or os.environ.get("PHT_CENTRAL_URL")
    if not url:
        raise ConfigError("no central URL: pass --central URL or set PHT_CENTRAL_URL")
    token = os.environ.get("PHT_TOKEN")
    token_file = args.token_file or os.environ.get("PHT_TOKEN_FILE")
    if token_file:
        try:
            token = Path(token_file).expanduser().read_text().strip()
        except FileNotFoundError:
            raise ConfigError(f"token file {token_file} not found") from None
    if not token:
        raise ConfigError("no token: pass --token-file FILE or set PHT_TOKEN / PHT_TOKEN_FILE")
    return Researcher(Identity.load(_keys_dir(args)), CentralClient(url, token))


def cmd_keys_new(args: argparse.Namespace) -> int:
    directory = _keys_dir(args)
    if (directory / "signing.key").exists():
        raise PhtError(f"{directory} already holds keys; pass --keys DIR for another identity")
    identity = Identity.generate(args.name)
    identity.save(directory)
    print(f"researcher identity {args.name} written to {directory}")
    print(f"  signing key {identity.public.signing_fingerprint}")
    print(f"hand {directory / 'public.json'} to central's operator and to each station admin")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from train_builder.image import build_image, push_image

    folder = Path(args.dir)
    registry = args.registry or os.environ.get("PHT_REGISTRY", "127.0.0.1:5000")
    _, tag = build_image(folder, registry, args.base)
    print(f"built {tag}")
    image = push_image(tag)
    (folder / IMAGE_FILE).write_text(image.model_dump_json(indent=2) + "\n")
    print(f"pushed {image.reference}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    try:
        image = Image.model_validate_json((folder / IMAGE_FILE).read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{folder} has no pushed image yet; run 'pht-train build {folder}'"
        ) from None
    researcher = _researcher(args)
    stops = researcher.route_stops([s.strip() for s in args.route.split(",") if s.strip()])
    manifest = researcher.make_manifest(folder, image, stops, args.rounds, args.days)
    print(f"train {manifest.name} {manifest.version}, image {image.digest}")
    print(f"route ({args.rounds} round(s)):")
    for i, stop in enumerate(stops, 1):
        print(f"  {i}. {stop.name:<20} signing key {stop.station.signing_fingerprint}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise PhtError("confirm the fingerprints above: re-run with --yes to submit")
        if input("Pin these keys and submit? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not submitted")
            return 1
    train_id = researcher.submit_manifest(manifest)
    print(f"submitted train {train_id}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = _researcher(args).status(args.train_id)
    print(f"train {status['train_id']} ({status['name']}): {status['status']}")
    for hop in status["hops"]:
        error = f"  {hop['error']}" if hop.get("error") else ""
        print(
            f"  hop {hop['index']} round {hop['round']} {hop['station']:<20} {hop['status']}{error}"
        )
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    status = _researcher(args).wait(args.train_id, timeout_s=args.timeout)
    print(f"train {args.train_id}: {status['status']}")
    if status.get("error"):
        print(f"  {status['error']}")
    return 0 if status["status"] == "done" else 1


def cmd_result(args: argparse.Namespace) -> int:
    result = _researcher(args).result(args.train_id, Path(args.out))
    print(f"verified {len(result.hops)} receipts:")
    for hop in result.hops:
        print(f"  hop {hop.hop} {hop.station:<20} container {hop.container_seconds:.2f}s")
    print(f"opened the final state into {result.out_dir}: {', '.join(result.files)}")
    if result.state is not None and not args.quiet:
        print(json.dumps(result.state, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pht-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--central", help="central's URL (PHT_CENTRAL_URL)")
    parser.add_argument("--token-file", help="file holding your API token (PHT_TOKEN_FILE)")
    parser.add_argument("--keys", help="your keys folder (PHT_KEYS_DIR, default ~/.pht/keys)")
    sub = parser.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="your identity").add_subparsers(
        dest="keys_command", required=True
    )
    k = keys.add_parser("new", help="create your signing and sealing keys")
    k.add_argument("--name", required=True)
    k.set_defaults(func=cmd_keys_new)

    b = sub.add_parser("build", help="build the train image and push it to the registry")
    b.add_argument("dir")
    b.add_argument("--registry", help="host:port of the OCI registry (PHT_REGISTRY)")
    b.add_argument("--base", default="pht-base:latest")
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("submit", help="sign the manifest and submit it to central")
    s.add_argument("dir")
    s.add_argument("--route", required=True, help="stations in order, comma separated")
    s.add_argument("--rounds", type=int, default=1)
    s.add_argument("--days", type=float, default=7, help="days until the manifest expires")
    s.add_argument("--yes", action="store_true", help="do not ask to confirm the fingerprints")
    s.set_defaults(func=cmd_submit)

    for name, func, text in (
        ("status", cmd_status, "show where a train is"),
        ("wait", cmd_wait, "wait until a train is done or failed"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("train_id")
        p.set_defaults(func=func)
        if name == "wait":
            p.add_argument("--timeout", type=float, default=3600)

    r = sub.add_parser("result", help="download, verify every receipt and open the result")
    r.add_argument("train_id")
    r.add_argument("--out", required=True)
    r.add_argument("--quiet", action="store_true", help="do not print the state")
    r.set_defaults(func=cmd_result)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PhtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
