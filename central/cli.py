"""``pht-central``: run the registry/router, migrate its database, manage who may use it."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from trains.errors import PhtError
from trains.keys import load_public


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from central.settings import CentralSettings

    fields: dict[str, Any] = {
        "data_dir": Path(args.data_dir).resolve(),
        "database_url": args.database_url or "",
    }
    for name in (
        "host",
        "port",
        "lease_s",
        "max_attempts",
        "lease_check_s",
        "max_state_mb",
        "max_train_mb",
        "retention_h",
        "gc_interval_s",
        "token_cache_s",
        "max_manifest_days",
        "max_header_bytes",
        "max_header_count",
        "poll_recheck_s",
        "poll_fallback_s",
    ):
        if getattr(args, name, None) is not None:
            fields[name] = getattr(args, name)
    if getattr(args, "plain_logs", False):
        fields["log_json"] = False
    settings = CentralSettings(**fields)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


def _service(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from central.db import make_engine, make_sessions
    from central.service import Service

    return Service(make_sessions(make_engine(_settings(args).database_url)))


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from central import logs
    from central.api import create_app
    from central.server import bounded_http

    settings = _settings(args)
    logs.configure(json_lines=settings.log_json)
    app = create_app(settings)  # upgrades the database to the newest schema first
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=False,  # central logs every request itself, as JSON with its request id
        timeout_keep_alive=75,
        http=bounded_http(settings.max_header_bytes),  # httptools, the request head bounded
    )
    return 0


def db_upgrade(args: argparse.Namespace) -> int:
    from central.db import make_engine
    from central.migrate import current, head, upgrade

    engine = make_engine(_settings(args).database_url, migrate=False)
    before = current(engine)
    upgrade(engine)
    print(f"database at revision {current(engine)} (was {before}; newest is {head()})")
    return 0


def db_current(args: argparse.Namespace) -> int:
    from central.db import make_engine
    from central.migrate import current, head

    revision = current(make_engine(_settings(args).database_url, migrate=False))
    print(f"database at revision {revision}; newest is {head()}")
    return 0


def _print_token(token: str) -> None:
    print("token (shown once, hand it over securely):")
    print(token)


def add_party(args: argparse.Namespace) -> int:
    from central.db import utcnow

    expires = None if args.expires_days is None else utcnow() + timedelta(days=args.expires_days)
    service = _service(args)
    if args.role == "admin":
        token = service.identities.register("admin", args.name, None, expires)
        print(f"registered admin {args.name}")
    else:
        identity = load_public(Path(args.public_key_file))
        enrolment = _envelope(args.enrolment) if getattr(args, "enrolment", None) else None
        token = service.identities.register(args.role, identity.name, identity, expires, enrolment)
        print(f"registered {args.role} {identity.name}")
        print(f"  signing key {identity.signing_fingerprint}")
        print(f"  sealing key {identity.sealing_fingerprint}")
        if enrolment is not None:
            print("  enrolled by the network root (statement stored, served with /stations)")
    if expires is not None:
        print(f"  expires {expires.isoformat(timespec='seconds')}")
    _print_token(token)
    return 0


def _envelope(path: str):  # type: ignore[no-untyped-def]
    from trains.signing import Envelope

    try:
        return Envelope.model_validate_json(Path(path).read_text())
    except ValueError as exc:
        raise PhtError(f"{path} is not a signed statement from 'pht-network': {exc}") from None


def set_enrolment(args: argparse.Namespace) -> int:
    name = _service(args).identities.set_enrolment(_envelope(args.enrolment))
    print(f"stored the enrolment of station {name}")
    return 0


def set_revocations(args: argparse.Namespace) -> int:
    serial = _service(args).identities.set_revocations(_envelope(args.revocations))
    print(f"serving revocation list {serial} from now on")
    return 0


def revoke(args: argparse.Namespace) -> int:
    role = _service(args).identities.revoke(args.name, args.role)
    print(f"revoked {role} {args.name}: its token no longer works")
    return 0


def list_parties(args: argparse.Namespace) -> int:
    rows = _service(args).identities.parties()
    print(f"{'role':<11} {'name':<24} {'state':<8} {'expires':<26} signing key")
    for p in rows:
        state = "revoked" if p["revoked"] else "active"
        print(
            f"{p['role']!s:<11} {p['name']!s:<24} {state:<8} "
            f"{p['expires_at'] or 'never'!s:<26} {p['signing_key'] or '-'}"
        )
    return 0


def gc(args: argparse.Namespace) -> int:
    from central.blobs import BlobStore
    from central.retention import collect_garbage

    settings = _settings(args)
    service = _service(args)
    pruned = collect_garbage(service, BlobStore(settings.data_dir / "blobs"), settings.retention_h)
    print(f"pruned {pruned.trains} finished trains, freed {pruned.bytes} bytes")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pht-central", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", required=True, help="where central keeps its DB and blobs")
        p.add_argument(
            "--database-url",
            help="SQLAlchemy URL, e.g. postgresql+psycopg://pht@db/pht "
            "(default: SQLite in the data dir)",
        )

    s = sub.add_parser("serve", help="run the API server (upgrades the database first)")
    common(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8700)
    s.add_argument("--log-level", default="warning", help="uvicorn's own log level")
    s.add_argument("--plain-logs", action="store_true", help="text logs instead of JSON lines")
    s.add_argument("--lease-s", type=float, help="hop lease in seconds (default 60)")
    s.add_argument("--max-attempts", type=int, help="claims of a hop before its train fails")
    s.add_argument("--lease-check-s", type=float, help="how often expired leases are swept")
    s.add_argument("--max-state-mb", type=int, help="largest single state upload")
    s.add_argument("--max-train-mb", type=int, help="all states of one train together")
    s.add_argument("--retention-h", type=float, help="keep finished trains' states this long")
    s.add_argument("--gc-interval-s", type=float, help="how often retention runs")
    s.add_argument(
        "--token-cache-s",
        type=float,
        help="remember a token that worked this long; a revocation by another process "
        "(pht-central admin revoke) is heard within it (default 1, 0: off)",
    )
    s.add_argument(
        "--max-manifest-days",
        type=float,
        help="longest manifest lifetime accepted at submit (default 30, at most 366)",
    )
    s.add_argument("--max-header-bytes", type=int, help="request headers together (16384)")
    s.add_argument("--max-header-count", type=int, help="request headers (64)")
    s.add_argument("--poll-recheck-s", type=float, help="long-poll DB check without NOTIFY (1)")
    s.add_argument("--poll-fallback-s", type=float, help="long-poll DB check with NOTIFY (15)")
    s.set_defaults(func=serve)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the database to the newest schema")
    common(up)
    up.set_defaults(func=db_upgrade)
    cur = db_sub.add_parser("current", help="print the database's schema revision")
    common(cur)
    cur.set_defaults(func=db_current)

    admin = sub.add_parser("admin", help="manage stations, researchers and admins")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    for role in ("station", "researcher"):
        a = admin_sub.add_parser(f"add-{role}", help=f"register a {role} and print its token")
        common(a)
        a.add_argument("public_key_file", help=f"the {role}'s public.json")
        a.add_argument("--expires-days", type=float, help="the token stops working after this")
        if role == "station":
            a.add_argument(
                "--enrolment",
                metavar="FILE",
                help="the station's enrolment signed by the network root ('pht-network enrol')",
            )
        a.set_defaults(func=add_party, role=role)
    e = admin_sub.add_parser(
        "set-enrolment", help="store a station's (renewed) enrolment from 'pht-network enrol'"
    )
    common(e)
    e.add_argument("enrolment", metavar="FILE")
    e.set_defaults(func=set_enrolment)
    e = admin_sub.add_parser(
        "set-revocations", help="serve the network root's newest revocation list"
    )
    common(e)
    e.add_argument("revocations", metavar="FILE", help="revocations.json from 'pht-network'")
    e.set_defaults(func=set_revocations)
    a = admin_sub.add_parser("add-admin", help="register an admin (HTTP /api/v1/admin/...)")
    common(a)
    a.add_argument("name")
    a.add_argument("--expires-days", type=float, help="the token stops working after this")
    a.set_defaults(func=add_party, role="admin")
    r = admin_sub.add_parser("revoke", help="revoke a party's token at once")
    common(r)
    r.add_argument("name")
    r.add_argument("--role", choices=["station", "researcher", "admin"])
    r.set_defaults(func=revoke)
    ls = admin_sub.add_parser("list", help="list every registered party")
    common(ls)
    ls.set_defaults(func=list_parties)

    g = sub.add_parser("gc", help="delete states of trains finished longer ago than retention")
    common(g)
    g.add_argument("--retention-h", type=float, help="default 168 (one week)")
    g.set_defaults(func=gc)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PhtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # e.g. the database is unreachable: say so, no traceback
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError):
            print(
                f"error: the database is not usable ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}); check --database-url and that it is running",
                file=sys.stderr,
            )
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
