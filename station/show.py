"""What ``pht-station show`` prints: everything an admin needs to decide on one hop."""

from __future__ import annotations

from datetime import UTC, datetime

from station.config import StationConfig
from station.disclosure import Disclosure
from station.queue import HopRecord
from trains.errors import PhtError
from trains.manifest import EXPOSURE_SHOWN, Manifest
from trains.signing import unverified_payload
from trains.text import printable, printable_lines


def describe(record: HopRecord, config: StationConfig, with_files: bool = True) -> str:
    # The signature was checked when the offer came in (the record exists only then) and is
    # checked again before the run; here we only read.
    manifest = unverified_payload(record.manifest, Manifest)
    signer = manifest.researcher
    rules = config.policy.signer(signer.signing_fingerprint)
    trust = "trusted" if rules is not None else "NOT trusted by this station"
    left = manifest.expires_at - datetime.now(UTC)
    lines = [
        f"hop {record.id}: {record.state}",
        f"  train      {manifest.name} {printable(manifest.version)} (id {manifest.train_id})",
        f"  signer     {signer.name} {signer.signing_fingerprint} ({trust})",
        f"  image      {printable(manifest.image.reference)}",
        f"  datasets   {', '.join(manifest.datasets) or '(none)'}",
        f"  outputs    {', '.join(printable(o) for o in manifest.outputs)}",
        f"  resources  {_resources(manifest, config)}",
        f"  expires    {manifest.expires_at.isoformat()} "
        + (f"(in {_span(left.total_seconds())})" if left.total_seconds() > 0 else "(EXPIRED)"),
        f"  received   {record.received_at.isoformat(timespec='seconds')}",
        "  route      " + _route(manifest, record.hop),
    ]
    if record.needs_approval:
        lines.append(f"  waits for  {'; '.join(record.needs_approval)}")
    if record.reason:
        lines.append(f"  reason     {printable(record.reason)}")
    if record.disclosure is not None:
        lines.append(describe_disclosure(record))
    if with_files:
        lines.append(_files(manifest, config))
    return "\n".join(lines)


def describe_disclosure(record: HopRecord) -> str:
    """Files, sizes and shapes of an output; never a value."""
    if record.disclosure is None:
        return "  output     (none yet)"
    disclosure = Disclosure.from_dict(record.disclosure)
    lines = [
        f"  output     {len(disclosure.files)} files, {disclosure.total_bytes} bytes, "
        f"{disclosure.suppressed_cells} small cells suppressed, sealed as {record.output_digest}"
    ]
    for f in disclosure.files:
        kind = "count file" if f.count_file else "file"
        name, shape = printable(f.name), printable(f.shape)
        lines.append(f"    {name:<28} {f.bytes:>10} bytes  {shape}  ({kind})")
    release = disclosure.release
    if release is not None:  # the release point: typed quantities, types and shapes only
        held = "; HELD: untyped files wait for a manual release" if release.held else ""
        lines.append(
            f"  release    {len(release.quantities)} typed quantities, {release.suppressed} "
            f"parts suppressed by the rules, {len(release.untyped)} untyped files{held}"
        )
        for q in release.quantities:
            name, kind, shape = (printable(q[k]) for k in ("name", "type", "shape"))
            lines.append(f"    {name:<28} {kind:<18} {shape}")
        for u in release.untyped:
            lines.append(f"    {printable(u['name']):<28} {'untyped':<18} {printable(u['shape'])}")
    return "\n".join(lines)


def _resources(manifest: Manifest, config: StationConfig) -> str:
    asked, caps = manifest.resources, config.policy.caps
    return (
        f"memory {asked.memory_mb}/{caps.memory_mb} MB, cpus {asked.cpus}/{caps.cpus}, "
        f"timeout {asked.timeout_s}/{caps.timeout_s} s, output {asked.max_output_mb}/"
        f"{caps.max_output_mb} MB (asked/cap)"
    )


def _route(manifest: Manifest, here: int) -> str:
    parts = []
    for hop in manifest.hops():
        mark = " <- this hop" if hop.index == here else ""
        reads = f" reads {hop.inputs}" if hop.inputs else ""
        parts.append(
            f"\n    {hop.index}: round {hop.round} {hop.stop.name} "
            f"{hop.stop.station.signing_fingerprint[:19]}... {hop.kind}{reads}{mark}"
        )
    aggregator = manifest.route.aggregator
    joins = f", joined at {aggregator.name}" if aggregator is not None else ""
    # what the researcher allowed a parallel route to expose, before the hops: an admin
    # approving a hop of this train agrees to it
    allowed = "".join(
        f"\n    ALLOWED by route.allow_exposed_partials: {EXPOSURE_SHOWN[exposure]}"
        for exposure in manifest.route.allow_exposed_partials
    )
    return (
        f"{manifest.route.mode}, {manifest.route.rounds} round(s){joins}" + allowed + "".join(parts)
    )


def _span(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def _files(manifest: Manifest, config: StationConfig) -> str:
    from station.inspect import not_shown, train_files
    from station.runner import DockerRunner

    try:
        files = train_files(DockerRunner(), manifest.image, config)
    except PhtError as exc:
        return f"  code       cannot show the train's files: {printable(str(exc))}"
    out = [f"  code       {len(files)} files in /opt/train of the image (exactly what runs)"]
    flagged = [name for name, text in files.items() if not_shown(text)]
    if flagged:
        out.append(f"  WARNING    {len(flagged)} file(s) NOT SHOWN (compiled, binary or a link)")
    for name, text in files.items():
        # the researcher's code, escaped line by line: it cannot rewrite this screen
        out.append(f"\n----- {printable(name)} -----\n{printable_lines(text.rstrip())}")
    return "\n".join(out)
