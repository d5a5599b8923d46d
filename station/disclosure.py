"""Disclosure control: what a train wrote is checked here before anything is sealed.

1. only the files the manifest declares in ``outputs``, and all of them;
2. within the size cap the train asked for (and the station allowed);
3. count files keep no small cells: every count ``0 < n < min_cell`` is suppressed (blanked
   in CSV, ``null`` in JSON) or the hop is refused, as ``policy.disclosure.small_cells`` says.

Which files are count files is the station's call (``policy.disclosure.count_files``,
glob patterns; by default ``*.counts.csv`` and ``*.counts.json``, the convention trains
follow). In a count file every integer cell is a count: in CSV every cell that is a whole
number, in JSON every integer (not boolean) anywhere in the document.

At the release point (the route's last hop) ``station.release`` adds the typed rules of
issue 12: ``published.json`` checked per type, untyped files to the station's policy.

The summary an admin sees before a manual release names files, sizes and shapes and how many
cells were suppressed; it never shows a value.

Checks 1 and 2 look only at names and sizes. Everything that reads the files' bytes (check
3 and the shapes) runs in a child process, ``station.output_parse``, under its own memory,
CPU and file-size limits and with explicit parse bounds (listed there): whatever a train
writes, the daemon's memory stays flat and no parser error reaches it. A child that dies
or overruns ``station.parse_child.PARSE_TIMEOUT_S`` fails the hop with a reason; nothing is sealed.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from station.config import DisclosurePolicy
from station.parse_child import run_parser
from station.release import ReleaseSummary, release_output
from trains import state_codec
from trains.errors import DisclosureRefused, StateInvalid, StateTooLarge
from trains.published import PUBLISHED_FILE


@dataclass(frozen=True)
class FileSummary:
    name: str
    bytes: int
    shape: str  # "120 rows x 4 columns", "JSON object, 5 keys", "binary"
    count_file: bool
    suppressed_cells: int


@dataclass(frozen=True)
class Disclosure:
    files: list[FileSummary]
    release: ReleaseSummary | None = None  # at the release point only (station.release)

    @property
    def held(self) -> bool:
        """Untyped files at the release point, kept for the admin's manual release."""
        return self.release is not None and self.release.held

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def suppressed_cells(self) -> int:
        return sum(f.suppressed_cells for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        release = None if self.release is None else self.release.to_dict()
        return {"files": [asdict(f) for f in self.files], "release": release}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Disclosure:
        release = raw.get("release")
        summary = None if release is None else ReleaseSummary.from_dict(release)
        return cls([FileSummary(**f) for f in raw["files"]], summary)


def check_output(
    output_dir: Path,
    declared: list[str],
    max_bytes: int,
    policy: DisclosurePolicy,
    release: bool = False,
) -> Disclosure:
    """Run checks 1-3 on ``output_dir`` in place; suppression rewrites count files. At the
    release point (``release``) also the typed rules of ``station.release``, which may write
    ``published.json`` (the runtime's file, never declared by a train)."""
    written = state_codec.list_state_files(output_dir)
    allowed = {*declared, PUBLISHED_FILE} if release else set(declared)
    undeclared = sorted(set(written) - allowed)
    if undeclared:
        raise StateInvalid(
            f"the train wrote undeclared files {undeclared}; declare them in train.toml outputs"
        )
    missing = sorted(set(declared) - set(written))
    if missing:
        raise StateInvalid(f"the train did not write its declared outputs {missing}")
    total = sum((output_dir / name).stat().st_size for name in written)
    if total > max_bytes:
        raise StateTooLarge(
            f"the output is {total} bytes, above the cap of {max_bytes}; write less or ask "
            "for a larger max_output_mb"
        )
    summary = release_output(output_dir, written, policy) if release else None
    written = state_codec.list_state_files(output_dir)
    counted = {n: any(fnmatch.fnmatch(n, p) for p in policy.count_files) for n in written}
    parsed = _parse_in_child(output_dir, counted, policy)
    files = []
    for name in written:
        shape, suppressed = parsed[name]
        size = (output_dir / name).stat().st_size
        files.append(FileSummary(name, size, shape, counted[name], suppressed))
    return Disclosure(files, summary)


def _parse_in_child(
    output_dir: Path, counted: dict[str, bool], policy: DisclosurePolicy
) -> dict[str, tuple[str, int]]:
    """Shapes and suppressed cells per file, from ``station.output_parse`` in a child.

    Raises DisclosureRefused for small cells under the refuse policy, StateInvalid for a
    count file it cannot check, or if the child dies (a limit hit) or times out."""
    request = {
        "folder": str(output_dir),
        "files": [{"name": n, "count_file": c} for n, c in counted.items()],
        "min_cell": policy.min_cell,
        "refuse": policy.small_cells == "refuse",
    }
    child = run_parser(
        request, "checking the output took too long; write smaller or simpler outputs"
    )
    results: dict[str, tuple[str, int]] = {}
    for line in child.stdout.decode("utf-8", errors="replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            break
        if "refused" in item:
            kind = DisclosureRefused if "below the minimum" in item["refused"] else StateInvalid
            raise kind(item["refused"])
        results[item["name"]] = (item["shape"], int(item["suppressed"]))
    if child.returncode != 0 or len(results) != len(counted):
        stuck = next((n for n in counted if n not in results), "?")
        raise StateInvalid(
            f"the output file {stuck} could not be checked within the station's limits "
            f"(the checker ended with {_ending(child.returncode)}); write smaller or simpler "
            "outputs"
        )
    return results


def _ending(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
