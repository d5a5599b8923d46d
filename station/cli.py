"""``pht-station``: set up a station, check it, run its daemon, and approve what it runs."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from station.keys_cli import add_keys_command
from trains.errors import ConfigError, PhtError
from trains.keys import Identity
from trains.text import printable

if TYPE_CHECKING:
    from station.config import StationConfig
    from station.service import StationService

TEMPLATE = """\
# pht station configuration. Paths are relative to this file.
# 'pht-station doctor --config station.toml' checks it; docs/station-admin.md explains it.
[station]
name = "{name}"
central_url = "{central}"
token_file = "token"        # the token central's operator gives you (keep it 0600)
keys_dir = "keys"           # this station's private keys; never share them
work_dir = "work"           # scratch space for runs; logs of each run stay here
state_dir = "state"         # approval queue, outputs not yet delivered, audit log: back it up
poll_interval_s = 1.0        # pause between polls when long polling is off
long_poll_s = 10.0           # central answers at once when a hop is queued; 0 = plain polling
max_backoff_s = 30.0        # longest wait between retries when central or Docker is away
runtime = "runc"            # "runsc": every train under gVisor (docs/sandbox.md, "gVisor")

# Datasets trains may ask for, by name. Each is materialised read-only, per run, into
# /pht/data/<name>/data.csv (or data.parquet).
# [datasets.cohort]
# type = "csv"              # or "parquet"
# path = "data/cohort.csv"
#
# [datasets.labs]
# type = "sql"              # any SQLAlchemy URL; the query runs afresh for every hop
# url = "postgresql+psycopg://pht_reader@127.0.0.1:5432/hospital"
# query = "SELECT age, sex, hba1c FROM labs WHERE consent"
# format = "csv"            # or "parquet"

[policy]
# Researcher signing-key fingerprints (sha256:...) whose trains may run here, on any
# dataset, approved automatically. Use [policy.signers."sha256:..."] for finer rules.
trusted_signers = []
# Registries images may come from, exactly as images name them: host:port (no default
# port; localhost is not 127.0.0.1), or host:port/path to allow only that path.
allowed_registries = ["127.0.0.1:5000"]
# Image digests approved in advance. Empty: any image from an allowed registry. An image
# not listed waits in the queue for 'pht-station approve'.
allowed_images = []
approval = "auto"           # "manual": every hop waits for 'pht-station approve'
release = "auto"            # "manual": every output waits for 'pht-station release'
# The consortium's network root (sha256:...): refuse a train unless every stop of its route
# is enrolled by that root with the keys the manifest pins.
# network_root = "sha256:..."

# [policy.signers."sha256:<researcher signing-key fingerprint>"]
# name = "dr-alice"         # for you; the fingerprint is what counts
# datasets = ["cohort"]     # the datasets this researcher's trains may use
# auto_approve = false      # true: run without asking (if the image is allowed)

[console]                   # web pages for approving and releasing (docs/station-admin.md)
host = "127.0.0.1"          # only this machine; another address needs a TLS reverse proxy
port = 8470                 # users: 'pht-station console-user add NAME'
session_minutes = 30

[policy.caps]               # the most a train may ask for
memory_mb = 2048
cpus = 2.0
timeout_s = 3600
max_output_mb = 1024

[policy.disclosure]         # checks on every output before it is sealed
min_cell = 5                # counts 1..min_cell-1 in count files are small cells
small_cells = "suppress"    # or "refuse": fail the hop instead of blanking them
count_files = ["*.counts.csv", "*.counts.json"]
k = 10                      # at the release point: fewer records behind a number: suppressed
untyped = "hold"            # or "refuse": files other than published.json at the release point

# [policy.privacy]          # differential privacy on what leaves (docs/station-admin.md 8a)
# mode = "required"         # default "off"
# epsilon_per_release = 1.0 # ε one release spends
# budget = 10.0             # total ε per researcher key and dataset ('pht-station budget')
"""


def init(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    config_path = directory / "station.toml"
    if config_path.exists():
        raise ConfigError(f"{config_path} exists; choose another folder or edit it")
    identity = Identity.generate(args.name)
    identity.save(directory / "keys")
    config_path.write_text(TEMPLATE.format(name=args.name, central=args.central))
    config_path.chmod(0o640)
    public = identity.public
    print(f"station {args.name} created in {directory}")
    print(f"  signing key {public.signing_fingerprint}")
    print(f"  sealing key {public.sealing_fingerprint}")
    print()
    print("1. hand this public-key block to central's operator (also in keys/public.json):")
    print()
    print(public.model_dump_json(indent=2))
    print()
    print(f"2. put the token they give you in {directory / 'token'} (chmod 600)")
    print(f"3. add datasets and trusted researchers to {config_path}")
    print(f"4. check everything: pht-station doctor --config {config_path}")
    return 0


def doctor(args: argparse.Namespace) -> int:
    from station.config import load_config
    from station.doctor import run_checks

    findings = run_checks(load_config(Path(args.config)))
    for finding in findings:
        mark = "ok  " if finding.ok else "FAIL"
        print(f"{mark} {finding.check:<18} {finding.detail}")
    failed = [f for f in findings if not f.ok]
    print(f"{len(failed)} of {len(findings)} checks failed" if failed else "all checks passed")
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    from station.config import load_config
    from station.daemon import run_daemon

    run_daemon(load_config(Path(args.config)), once=args.once)
    return 0


def pending(args: argparse.Namespace) -> int:
    from station.queue import HopState, summary_line

    service = _service(args)
    shown = service.history()[::-1] if args.all else service.waiting()
    if not shown:
        print("no hops waiting" if not args.all else "no hops yet")
    for record in shown:
        print(summary_line(record))
        if record.state == HopState.PENDING:
            print(f"    waits because: {'; '.join(record.needs_approval)}")
        if record.state == HopState.HELD:
            print("    output held: 'pht-station show' it, then 'release' or 'reject'")
        if record.state == HopState.QUARANTINED:
            print(f"    {printable(record.reason or '')}")
    return 0


def show(args: argparse.Namespace) -> int:
    from station.show import describe

    service = _service(args)
    print(describe(service.get(args.id), service.config, with_files=not args.no_files))
    return 0


def approve(args: argparse.Namespace) -> int:
    """A whole train (every hop of it here, until its manifest expires), or one hop: with
    ``--hop N``, or given a hop's id as ``pending`` prints it."""
    from station.queue import is_record_id, record_id

    service = _service(args)
    if args.hop is not None or is_record_id(args.id):
        rid = args.id if args.hop is None else record_id(service.train_id(args.id), args.hop)
        record = service.approve_hop(rid, by="admin")
        print(f"approved hop {record.id}; the daemon runs it on its next loop")
        return 0
    approval, approved = service.approve_train(args.id, by="admin")
    print(
        f"approved train {approval.train_id} at this station until "
        f"{approval.expires_at:%Y-%m-%d %H:%M}Z (manifest {approval.manifest_digest[:19]}..., "
        f"signer {approval.signer_key[:19]}...)"
    )
    for record in approved:
        print(f"  hop {record.hop} runs on the daemon's next loop")
    print("  its later hops here run without asking; a changed manifest still waits")
    return 0


def reject(args: argparse.Namespace) -> int:
    record = _service(args).reject(args.id, args.reason, by="admin")
    print(f"rejected {record.id}; the daemon tells central, and the researcher sees the reason")
    return 0


def release(args: argparse.Namespace) -> int:
    from station.queue import HopState
    from station.show import describe_disclosure

    service = _service(args)
    record = service.get(args.id)
    if record.state == HopState.HELD:
        print(describe_disclosure(record))
    if record.state == HopState.HELD and not args.yes:
        answer = input("release this output to the next stop? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("not released")
            return 1
    record = service.release(record.id, by="admin")
    print(f"released {record.id}; the daemon uploads it on its next loop")
    return 0


def audit_verify(args: argparse.Namespace) -> int:
    service = _service(args)
    path = service.audit.path
    problems = service.verify_audit()
    for problem in problems:
        print(f"{path}:{problem.line}: {problem.message}")
    if problems:
        print(f"the audit log is NOT intact ({len(problems)} problems)")
        return 1
    print(f"{path}: intact")
    return 0


def console_user(args: argparse.Namespace) -> int:
    import getpass

    from station.console.users import Users

    users = Users(_config(args).state_dir)
    if args.action == "remove":
        users.remove(args.user)
        print(f"removed console user {args.user}")
        return 0
    password = args.password_stdin and sys.stdin.readline().rstrip("\n")
    if not password:
        password = getpass.getpass(f"password for {args.user}: ")
        if password != getpass.getpass("again: "):
            raise ConfigError("the two passwords differ; nothing changed")
    users.add(args.user, password)
    print(f"console user {args.user} can log in ('pht-station run' serves the console)")
    return 0


def _config(args: argparse.Namespace) -> StationConfig:
    from station.config import load_config

    return load_config(Path(args.config))


def _service(args: argparse.Namespace) -> StationService:
    from station.service import StationService

    return StationService(_config(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pht-station", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: object, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        if name != "init":
            p.add_argument("--config", default="station.toml")
        p.set_defaults(func=func)
        return p

    i = command("init", init, "create keys and a commented station.toml")
    i.add_argument("dir")
    i.add_argument("--name", required=True)
    i.add_argument("--central", required=True, help="central's URL")
    command("doctor", doctor, "check Docker, central, token, keys and datasets")
    r = command("run", run, "run the station daemon")
    r.add_argument("--once", action="store_true", help="stop when no hop is waiting")
    p = command("pending", pending, "list hops waiting for approval or release")
    p.add_argument("--all", action="store_true", help="every hop this station has seen")
    s = command("show", show, "everything about one hop, with the train's code")
    s.add_argument("id")
    s.add_argument("--no-files", action="store_true", help="do not pull the image")
    a = command("approve", approve, "let a train run here (every hop, until it expires)")
    a.add_argument("id", help="a train id (or its start), or one hop's id as 'pending' prints")
    a.add_argument("--hop", type=int, help="approve only this hop of the train")
    j = command("reject", reject, "refuse a pending hop or a held output, with a reason")
    j.add_argument("id")
    j.add_argument("--reason", required=True, help="what the researcher will read")
    rel = command("release", release, "let a held output leave")
    rel.add_argument("id")
    rel.add_argument("--yes", action="store_true", help="do not ask")
    au = command("audit", audit_verify, "check the audit log's hash chain")
    au.add_argument("action", choices=["verify"])
    add_keys_command(sub)  # pht-station keys show (station/keys_cli.py)
    cu = command("console-user", console_user, "add or remove a login of the web console")
    cu.add_argument("action", choices=["add", "remove"])
    cu.add_argument("user")
    cu.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    from station.budget_cli import add_parser as add_budget

    add_budget(sub)  # pht-station budget (station/budget_cli.py)
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
        print(f"error: {printable(str(exc), keep_newlines=True)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
