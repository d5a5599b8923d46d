"""Disclosure control: what a train wrote is checked here before anything is sealed.

1. only the files the manifest declares in ``outputs``, and all of them;
2. within the size cap the train asked for (and the station allowed);
3. count files keep no small cells: every count ``0 < n < min_cell`` is suppressed (blanked
   in CSV, ``null`` in JSON) or the hop is refused, as ``policy.disclosure.small_cells`` says.

Which files are count files is the station's call (``policy.disclosure.count_files``,
glob patterns; by default ``*.counts.csv`` and ``*.counts.json``, the convention trains
follow). In a count file every integer cell is a count: in CSV every cell that is a whole
number, in JSON every integer (not boolean) anywhere in the document.

The summary an admin sees before a manual release names files, sizes and shapes and how many
cells were suppressed; it never shows a value.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from station.config import DisclosurePolicy
from trains import state_codec
from trains.errors import DisclosureRefused, StateInvalid, StateTooLarge


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

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def suppressed_cells(self) -> int:
        return sum(f.suppressed_cells for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"files": [asdict(f) for f in self.files]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Disclosure:
        return cls([FileSummary(**f) for f in raw["files"]])


def check_output(
    output_dir: Path, declared: list[str], max_bytes: int, policy: DisclosurePolicy
) -> Disclosure:
    """Run checks 1-3 on ``output_dir`` in place; suppression rewrites count files."""
    written = state_codec.list_state_files(output_dir)
    undeclared = sorted(set(written) - set(declared))
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
    files = []
    for name in written:
        path = output_dir / name
        is_count = any(fnmatch.fnmatch(name, pattern) for pattern in policy.count_files)
        suppressed = _control_counts(path, name, policy) if is_count else 0
        files.append(FileSummary(name, path.stat().st_size, _shape(path), is_count, suppressed))
    return Disclosure(files)


def _control_counts(path: Path, name: str, policy: DisclosurePolicy) -> int:
    text = path.read_text(encoding="utf-8", errors="strict")
    if name.endswith(".json"):
        try:
            document = json.loads(text)
        except ValueError:
            raise StateInvalid(f"count file {name} is not valid JSON") from None
        cleaned, small = _suppress_json(document, policy.min_cell)
        new_text = json.dumps(cleaned, indent=2, sort_keys=True) + "\n"
    else:
        rows = list(csv.reader(io.StringIO(text)))
        small = 0
        for row in rows:
            for i, cell in enumerate(row):
                if _is_small(cell, policy.min_cell):
                    row[i] = ""
                    small += 1
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        new_text = buffer.getvalue()
    if small and policy.small_cells == "refuse":
        raise DisclosureRefused(
            f"count file {name} has {small} cells below the minimum of {policy.min_cell}; "
            "aggregate further (or suppress them in the train) and resubmit"
        )
    if small:
        path.write_text(new_text, encoding="utf-8")
    return small


def _is_small(cell: str, min_cell: int) -> bool:
    try:
        value = int(cell.strip())
    except ValueError:
        return False
    return 0 < value < min_cell


def _suppress_json(node: Any, min_cell: int) -> tuple[Any, int]:
    if isinstance(node, bool):
        return node, 0
    if isinstance(node, int):
        return (None, 1) if 0 < node < min_cell else (node, 0)
    if isinstance(node, dict):
        out, total = {}, 0
        for key, value in node.items():
            out[key], small = _suppress_json(value, min_cell)
            total += small
        return out, total
    if isinstance(node, list):
        items = [_suppress_json(v, min_cell) for v in node]
        return [v for v, _ in items], sum(s for _, s in items)
    return node, 0


def _shape(path: Path) -> str:
    """Shape only: rows and columns, keys, never a value or a column name."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
            columns = max((len(r) for r in rows), default=0)
            return f"{max(len(rows) - 1, 0)} rows x {columns} columns (+ header)"
        if suffix == ".json":
            document = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(document, dict):
                return f"JSON object, {len(document)} top-level keys"
            if isinstance(document, list):
                return f"JSON array, {len(document)} items"
            return "JSON scalar"
    except (ValueError, UnicodeDecodeError):
        return "unreadable as its type"
    return f"{suffix.lstrip('.') or 'plain'} file"
