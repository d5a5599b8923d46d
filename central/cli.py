"""``pht-central``: run the registry/router, and manage who may use it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trains.errors import PhtError
from trains.keys import load_public


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from central.settings import CentralSettings

    return CentralSettings(
        data_dir=Path(args.data_dir).resolve(),
        database_url=args.database_url or "",
        host=getattr(args, "host", "127.0.0.1"),
        port=getattr(args, "port", 8700),
    )


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from central.api import create_app

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level)
    return 0


def add_party(args: argparse.Namespace) -> int:
    from central.db import make_engine, make_sessions
    from central.service import Service

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    identity = load_public(Path(args.public_key_file))
    service = Service(make_sessions(make_engine(settings.database_url)))
    token = service.register(args.role, identity)
    print(f"registered {args.role} {identity.name}")
    print(f"  signing key {identity.signing_fingerprint}")
    print(f"  sealing key {identity.sealing_fingerprint}")
    print("token (shown once, hand it over securely):")
    print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pht-central", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", required=True, help="where central keeps its DB and blobs")
        p.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in data dir)")

    s = sub.add_parser("serve", help="run the API server")
    common(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8700)
    s.add_argument("--log-level", default="warning")
    s.set_defaults(func=serve)

    admin = sub.add_parser("admin", help="manage stations and researchers")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    for role in ("station", "researcher"):
        a = admin_sub.add_parser(f"add-{role}", help=f"register a {role} and print its token")
        common(a)
        a.add_argument("public_key_file", help=f"the {role}'s public.json")
        a.set_defaults(func=add_party, role=role)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PhtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
