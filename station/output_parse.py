"""The parsing half of disclosure control, run in a child process under resource limits.

A train's output is hostile bytes. Parsing it in the daemon let one file take the daemon
down (a deeply nested JSON: RecursionError; 39 MB of ``[[],[],...]``: 570 MB more RSS).
So ``station.disclosure`` starts ``python -m station.output_parse`` for each hop's output;
this process lowers its own limits first (address space ``MEMORY_BYTES``, CPU
``CPU_SECONDS``, written file size ``FILE_BYTES``) and then, with explicit bounds:

* CSV is streamed row by row (memory independent of the file's size); a field longer than
  ``CSV_FIELD_BYTES`` or text that is not UTF-8 is refused in a count file and left
  unsummarised elsewhere; rows are counted for the summary only up to ``CSV_SHAPE_BYTES``
  (a count file is still checked whole, within the CPU limit);
* JSON is parsed only up to ``JSON_BYTES`` (larger: a count file is refused, another file is
  not summarised) and only ``JSON_DEPTH`` levels deep.

It reads a request (JSON) on stdin and writes one JSON line per file on stdout, as it
goes. It imports the standard library only, and never prints a value from a file.
"""

from __future__ import annotations

import csv
import json
import os
import re
import resource
import sys
from pathlib import Path
from typing import Any

MEMORY_BYTES = 512 * 1024 * 1024
CPU_SECONDS = 300
FILE_BYTES = 4 * 1024 * 1024 * 1024  # a rewritten count file; outputs are capped lower
CSV_FIELD_BYTES = 1024 * 1024
CSV_SHAPE_BYTES = 64 * 1024 * 1024  # a larger CSV is summarised as "not summarised"
JSON_BYTES = 16 * 1024 * 1024
JSON_DEPTH = 64


_DIGIT = re.compile(r"\d")  # any Unicode decimal digit, as int() accepts


class Refused(Exception):
    """A count file that cannot be checked: the hop is refused with this message."""


class NotSummarised(Exception):
    """A file whose shape is beyond the bounds: it travels, its summary says so."""


def check_file(
    path: Path, name: str, count_file: bool, min_cell: int, refuse: bool
) -> dict[str, Any]:
    """Shape (and, for a count file, suppression) of one file: ``{"shape", "suppressed"}``,
    or ``{"refused": message}``."""
    suffix = path.suffix.lower()
    beyond = f"parsing it needs more than {MEMORY_BYTES >> 20} MiB"
    try:
        small = _control_counts(path, name, min_cell, refuse) if count_file else 0
    except Refused as exc:
        return {"refused": str(exc)}
    except MemoryError:
        return {"refused": f"count file {name} cannot be checked: {beyond}"}
    try:
        shape = _shape(path, suffix)
    except NotSummarised as why:
        shape = f"{suffix.lstrip('.').upper()} file, not summarised ({why})"
    except MemoryError:
        shape = f"{suffix.lstrip('.').upper()} file, not summarised ({beyond})"
    return {"shape": shape, "suppressed": small}


def _control_counts(path: Path, name: str, min_cell: int, refuse: bool) -> int:
    try:
        if name.endswith(".json"):
            document = _load_json(path)
            cleaned, small = _suppress_json(document, min_cell)
            new_text = json.dumps(cleaned, sort_keys=True, separators=(",", ":")) + "\n"
            if small and not refuse:
                path.write_text(new_text, encoding="utf-8")
        else:
            small = _suppress_csv(path, min_cell, rewrite=not refuse)
    except NotSummarised as why:
        raise Refused(f"count file {name} cannot be checked: {why}") from None
    if small and refuse:
        raise Refused(
            f"count file {name} has {small} cells below the minimum of {min_cell}; "
            "aggregate further (or suppress them in the train) and resubmit"
        )
    return small


def _suppress_csv(path: Path, min_cell: int, rewrite: bool) -> int:
    """Count the small cells in one streamed pass; only if there are some (and they are
    to be blanked) stream the rows again into a copy that replaces the file."""
    with _CsvRows(path) as rows:
        small = sum(_is_small(cell, min_cell) for row in rows for cell in row)
    if not (small and rewrite):
        return small
    tmp = path.with_name(f".{path.name}.suppressed")
    with _CsvRows(path) as rows, tmp.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        for row in rows:
            writer.writerow(["" if _is_small(cell, min_cell) else cell for cell in row])
    os.replace(tmp, path)
    return small


class _CsvRows:
    """CSV rows streamed from a file, with the field bound and strict UTF-8; errors become
    NotSummarised (the bound or the encoding named, never a value)."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open(newline="", encoding="utf-8", errors="strict")

    def __enter__(self) -> _CsvRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def __iter__(self) -> Any:
        reader = csv.reader(self.handle)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise NotSummarised("it is not UTF-8 text") from None
            except csv.Error:
                raise NotSummarised(f"a field is longer than {CSV_FIELD_BYTES} bytes") from None
            yield row


def _load_json(path: Path) -> Any:
    size = path.stat().st_size
    if size > JSON_BYTES:
        raise NotSummarised(f"{size} bytes, above the {JSON_BYTES} this station parses")
    try:
        document = json.loads(path.read_bytes().decode("utf-8", errors="strict"))
    except UnicodeDecodeError:
        raise NotSummarised("it is not UTF-8 text") from None
    except RecursionError:
        raise NotSummarised(f"nested deeper than {JSON_DEPTH} levels") from None
    except MemoryError:
        raise NotSummarised(f"parsing it needs more than {MEMORY_BYTES >> 20} MiB") from None
    except ValueError:
        raise NotSummarised("it is not valid JSON") from None
    if _deeper_than(document, JSON_DEPTH):
        raise NotSummarised(f"nested deeper than {JSON_DEPTH} levels")
    return document


def _deeper_than(document: Any, limit: int) -> bool:
    """Walks with one iterator per level: memory grows with depth, not size."""
    stack = [iter([document])]
    while stack:
        node = next(stack[-1], _END)
        if node is _END:
            stack.pop()
        elif isinstance(node, dict | list):
            if len(stack) > limit:
                return True
            stack.append(iter(node.values() if isinstance(node, dict) else node))
    return False


_END = object()


def _is_small(cell: str, min_cell: int) -> bool:
    # int() reads only cells with a decimal digit; no count is longer than 40 characters
    # (and int() of a huge digit string is slow)
    if len(cell) > 40 or not _DIGIT.search(cell):
        return False
    try:
        value = int(cell.strip())
    except ValueError:
        return False
    return 0 < value < min_cell


def _suppress_json(node: Any, min_cell: int) -> tuple[Any, int]:
    """Recursive, but only ever on a document at most JSON_DEPTH deep."""
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


def _shape(path: Path, suffix: str) -> str:
    """Shape only: rows and columns, keys, never a value or a column name."""
    if suffix == ".csv":
        size = path.stat().st_size
        if size > CSV_SHAPE_BYTES:  # a shape is for the admin's eyes: not worth minutes
            raise NotSummarised(f"{size} bytes, above the {CSV_SHAPE_BYTES} this station counts")
        rows = columns = 0
        with _CsvRows(path) as reader:
            for row in reader:
                rows += 1
                columns = max(columns, len(row))
        return f"{max(rows - 1, 0)} rows x {columns} columns (+ header)"
    if suffix == ".json":
        document = _load_json(path)
        if isinstance(document, dict):
            return f"JSON object, {len(document)} top-level keys"
        if isinstance(document, list):
            return f"JSON array, {len(document)} items"
        return "JSON scalar"
    return f"{suffix.lstrip('.') or 'plain'} file"


def _limit_myself() -> None:
    for limit, value in (
        (resource.RLIMIT_AS, MEMORY_BYTES),
        (resource.RLIMIT_CPU, CPU_SECONDS),
        (resource.RLIMIT_FSIZE, FILE_BYTES),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(limit, (value, value))
    csv.field_size_limit(CSV_FIELD_BYTES)
    sys.setrecursionlimit(JSON_DEPTH + 200)  # the JSON decoder stops here, far short of C's


def main() -> None:
    _limit_myself()
    request = json.loads(sys.stdin.read())
    folder = Path(request["folder"])
    if request.get("mode") == "release":  # the release point's typed rules
        from station.disclosure_rules import Rules
        from station.release_check import check_release

        result = check_release(
            folder,
            request["files"],
            Rules(**request["rules"]),
            request["hold_untyped"],
            _load_json,
            _shape,
        )
        print(json.dumps(result), flush=True)
        return
    for item in request["files"]:
        result = check_file(
            folder / item["name"],
            item["name"],
            item["count_file"],
            request["min_cell"],
            request["refuse"],
        )
        print(json.dumps({"name": item["name"], **result}), flush=True)
        if "refused" in result:
            return


if __name__ == "__main__":
    main()
