"""One function per ``pht-train`` subcommand: read the parsed flags, call the API, print.

Every failure a researcher can cause is a ``PhtError`` whose message says what to do;
``train_builder.cli.main`` prints it without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from train_builder.profile import Profile, resolve_profile, write_profile_value
from train_builder.release_view import read_published, show_release
from train_builder.researcher import Researcher
from trains.errors import ConfigError, PhtError
from trains.keys import Identity, load_public
from trains.manifest import EXPOSURE_SHOWN
from trains.text import printable
from trains.train_spec import load_train_spec

STATE_LINES = 40  # how much of a state the terminal shows; --out keeps all of it


def profile_of(args: argparse.Namespace) -> Profile:
    return resolve_profile(
        {
            "central_url": args.central,
            "token_file": args.token_file,
            "keys_dir": args.keys,
            "registry": getattr(args, "registry", None),
            "network_root": args.network_root,
        }
    )


def researcher_of(args: argparse.Namespace) -> Researcher:
    return Researcher.from_profile(profile_of(args))


def train_folder(path: str) -> Path:
    """A train folder, or an error that says what is wrong with the path."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ConfigError(f"{folder} does not exist (looked from {Path.cwd()})")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is a file; give the train's folder (the one with train.toml)")
    load_train_spec(folder)  # names the file and the key when train.toml is wrong
    return folder


def show_state(state: dict[str, Any] | None, files: list[str]) -> None:
    if state is None:
        print(f"final state files: {', '.join(files) or '(none)'}")
        return
    lines = json.dumps(state, indent=2, sort_keys=True).splitlines()
    print("\n".join(lines[:STATE_LINES]))
    if len(lines) > STATE_LINES:
        print(f"... ({len(lines) - STATE_LINES} more lines; --out DIR keeps the whole state)")


# -- identity and profile ------------------------------------------------------------


def keys_new(args: argparse.Namespace) -> int:
    directory = profile_of(args).keys_path()
    if (directory / "signing.key").exists():
        raise PhtError(f"{directory} already holds keys; pass --keys DIR for another identity")
    identity = Identity.generate(args.name)
    identity.save(directory)
    print(f"researcher identity {args.name} written to {directory}")
    print(f"  signing key {identity.public.signing_fingerprint}")
    print(f"  sealing key {identity.public.sealing_fingerprint}")
    print(f"hand {directory / 'public.json'} to central's operator and to each station admin")
    return 0


def keys_show(args: argparse.Namespace) -> int:
    directory = profile_of(args).keys_path()
    public = load_public(directory / "public.json")
    print(f"researcher {public.name} (keys in {directory})")
    print(f"  signing key {public.signing_fingerprint}")
    print(f"  sealing key {public.sealing_fingerprint}")
    print("read the signing key's fingerprint out to each station admin (policy.trusted_signers)")
    return 0


def stations(args: argparse.Namespace) -> int:
    from train_builder import station_commands

    with researcher_of(args) as researcher:
        return station_commands.run(args, researcher)


def profile_set(args: argparse.Namespace) -> int:
    path = write_profile_value(args.key, args.value)
    print(f"{args.key} = {args.value}  (saved in {path})")
    return 0


def profile_show(args: argparse.Namespace) -> int:
    profile = profile_of(args)
    print(f"profile {profile.path}{'' if profile.path.exists() else ' (not created yet)'}")
    for key, value, source in profile.describe():
        print(f"  {key:<12} {value:<40} ({source})")
    return 0


# -- local work: scaffold, test, build -----------------------------------------------


def init(args: argparse.Namespace) -> int:
    from train_builder.templates import scaffold, templates

    if args.template is None:
        raise ConfigError(f"choose a template with --template: {', '.join(sorted(templates()))}")
    target = Path(args.name).expanduser()
    written = scaffold(target, args.template)
    print(f"created train {target.name} from template {args.template}:")
    for path in written:
        print(f"  {path}")
    print(f"next: read {target / 'README.md'}, then 'pht-train test {target} --data ...'")
    return 0


def list_templates(args: argparse.Namespace) -> int:
    from train_builder.templates import templates

    for template in templates().values():
        print(f"  {template.name:<12} {template.description}")
    return 0


def test(args: argparse.Namespace) -> int:
    from train_builder.local_run import LocalHop, parse_data, run_local

    folder = train_folder(args.dir)
    stops = parse_data(args.data, load_train_spec(folder))
    where = "in containers" if args.in_docker else "in-process"
    shape = "parallel round(s) joined at an aggregator" if args.parallel else "round(s)"
    print(f"testing {folder} {where}: {args.rounds} {shape} over {len(stops)} local station(s)")

    def on_hop(hop: LocalHop) -> None:
        print(
            f"  hop {hop.hop} round {hop.round} {hop.station:<20} {hop.kind:<9} ok  "
            f"{hop.seconds:.2f}s"
        )
        if hop.converged:
            print(
                f"  converged: the route ends after round {hop.round} of {args.rounds} "
                "(a station seals this state to you and signs that it converged)"
            )

    result = run_local(
        folder,
        stops,
        args.rounds,
        in_docker=args.in_docker,
        base=args.base,
        wheelhouse=Path(args.wheelhouse) if args.wheelhouse else None,
        out_dir=Path(args.out) if args.out else None,
        on_hop=on_hop,
        parallel=args.parallel,
    )
    print("final state:")
    show_state(result.state, result.files)
    show_release(result.published)  # what the stations' default rules would suppress
    if args.out:
        print(f"kept the final state in {args.out}: {', '.join(result.files)}")
    return 0


def build(args: argparse.Namespace) -> int:
    from train_builder.image import build_image, push_image, write_image_file

    folder = train_folder(args.dir)
    registry = profile_of(args).registry_value()
    wheelhouse = Path(args.wheelhouse).expanduser() if args.wheelhouse else None
    _, tag = build_image(folder, registry, args.base, wheelhouse)
    print(f"built {tag}")
    if args.no_push:
        print(f"not pushed; push it with 'pht-train push {folder}'")
        return 0
    image = push_image(tag)
    write_image_file(folder, image)
    print(f"pushed {image.reference}")
    return 0


def push(args: argparse.Namespace) -> int:
    from train_builder.image import push_image, write_image_file

    folder = train_folder(args.dir)
    spec = load_train_spec(folder)
    registry = profile_of(args).registry_value()
    image = push_image(f"{registry}/pht/{spec.train.name}:{spec.train.version}")
    write_image_file(folder, image)
    print(f"pushed {image.reference}")
    return 0


# -- the network: submit, follow, fetch ----------------------------------------------


def submit(args: argparse.Namespace) -> int:
    from train_builder.image import read_image_file
    from train_builder.station_commands import confirm_at_prompt
    from train_builder.trust import FirstContact

    folder = train_folder(args.dir)
    image = read_image_file(folder)
    names = [s.strip() for s in args.route.split(",") if s.strip()]
    with researcher_of(args) as researcher:
        everyone = names + ([args.aggregator] if args.aggregator else [])
        try:
            researcher.route_stops(everyone)
        except FirstContact as first:  # --yes never confirms a station met the first time
            if not confirm_at_prompt(researcher, first):
                raise
        stops = researcher.route_stops(names)
        aggregator = researcher.route_stops([args.aggregator])[0] if args.aggregator else None
        manifest = researcher.make_manifest(
            folder,
            image,
            stops,
            args.rounds,
            args.days,
            aggregator,
            "skip" if args.skip_refusing else "fail",
            args.allow_exposed_partials,
        )
        print(f"train {manifest.name} {manifest.version}, image {image.digest}")
        if aggregator is None:
            skips = ", a refusing stop but the last is skipped" if args.skip_refusing else ""
            print(f"route ({args.rounds} round(s){skips}):")
        else:
            print(f"parallel route ({args.rounds} round(s)), each round's stops at once:")
        for i, stop in enumerate(stops, 1):
            print(f"  {i}. {stop.name:<20} signing key {stop.station.signing_fingerprint}")
        if aggregator is not None:
            print(
                f"  aggregator {aggregator.name:<14} signing key "
                f"{aggregator.station.signing_fingerprint}"
            )
        for exposure in manifest.route.allow_exposed_partials:
            print(f"  allowed    {EXPOSURE_SHOWN[exposure]}")
        if not args.yes:
            if not sys.stdin.isatty():
                raise PhtError("confirm the fingerprints above: re-run with --yes to submit")
            if input("Pin these keys and submit? [y/N] ").strip().lower() not in ("y", "yes"):
                print("not submitted")
                return 1
        train_id = researcher.submit_manifest(manifest)
    print(f"follow it with 'pht-train watch {train_id}'")
    print(f"submitted train {train_id}")
    return 0


def status(args: argparse.Namespace) -> int:
    from train_builder.timeline import timeline_lines
    from train_builder.watch import headline, hop_line

    with researcher_of(args) as researcher:
        train_id = researcher.resolve(args.train_id)
        if args.timeline:
            current, signed = researcher.timeline(train_id)
        else:
            current, signed = researcher.status(train_id), {}
    print(headline(current))
    for line in (
        timeline_lines(current, signed) if args.timeline else map(hop_line, current["hops"])
    ):
        print(line)
    not_needed = sum(1 for hop in current["hops"] if hop["status"] == "not_needed")
    if not_needed:
        print(f"  converged: the route ended early; {not_needed} hop(s) were not needed")
    if current.get("error"):
        print(f"  {printable(current['error'])}")
    return 0


def watch(args: argparse.Namespace) -> int:
    from train_builder.watch import watch_train

    with researcher_of(args) as researcher:
        final = watch_train(researcher, researcher.resolve(args.train_id), timeout_s=args.timeout)
    return 0 if final["status"] == "done" else 1


def wait(args: argparse.Namespace) -> int:
    with researcher_of(args) as researcher:
        train_id = researcher.resolve(args.train_id)
        final = researcher.wait(train_id, timeout_s=args.timeout)
    print(f"train {train_id}: {final['status']}")
    if final.get("error"):
        print(f"  {printable(final['error'])}")
    return 0 if final["status"] == "done" else 1


def list_trains(args: argparse.Namespace) -> int:
    with researcher_of(args) as researcher:
        trains = researcher.list()
    if not trains:
        print("no trains yet; submit one with 'pht-train submit DIR --route A,B'")
    for train in trains:
        created = train["created_at"][:19]
        print(f"{train['train_id']}  {train['status']:<18} {created}  {train['name']}")
    return 0


def cancel(args: argparse.Namespace) -> int:
    with researcher_of(args) as researcher:
        train_id = researcher.resolve(args.train_id)
        print(f"train {train_id}: {researcher.cancel(train_id)}")
    return 0


def result(args: argparse.Namespace) -> int:
    with researcher_of(args) as researcher:
        fetched = researcher.result(researcher.resolve(args.train_id), Path(args.out))
    # names and reasons come from the train and the stations: printed escaped, so a name
    # holding a newline, an ANSI sequence or a right-to-left mark cannot fake a line
    print(f"verified {len(fetched.hops)} receipts:")
    for hop in fetched.hops:
        done = (
            f"skipped: {printable(hop.reason or '')}"
            if hop.kind == "skipped"
            else (f"container {hop.container_seconds:.2f}s")
        )
        print(f"  hop {hop.hop} {printable(hop.station):<20} {hop.kind:<9} {done}")
    skipped = [printable(h.station) for h in fetched.hops if h.kind == "skipped"]
    if skipped:
        print(f"the result leaves out {', '.join(skipped)}: they refused and passed it on")
    if fetched.hops[-1].converged:
        end = fetched.hops[-1]
        print(
            f"converged: the route ended after round {end.round} (hop {end.hop}), as "
            f"{printable(end.station)} signed; the later hops were not needed"
        )
    files = ", ".join(printable(name) for name in fetched.files)
    print(f"opened the final state into {printable(str(fetched.out_dir))}: {files}")
    if not args.quiet:
        show_state(fetched.state, fetched.files)
    show_release(read_published(fetched.out_dir))  # every suppression and its rule
    return 0
