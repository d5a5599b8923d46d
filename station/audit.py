"""The station's audit log: append-only JSON lines, each naming the sha256 of the line before.

An entry records what happened to a hop (offer received, each verification result,
approval or rejection, run start and end, output held and released, upload) by train id,
hop, names and digests. It never carries patient data, container logs or output values.
``verify`` finds an edited, inserted, deleted or reordered line: every line's ``prev``
must be the hash of the line above it, the first line's the hash of nothing, and the last
line's hash must be the one kept in ``audit.head`` (so a cut-off tail shows too).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

AUDIT_FILE = "audit.jsonl"
HEAD_SUFFIX = ".head"
GENESIS = "sha256:" + hashlib.sha256(b"").hexdigest()


def line_hash(line: bytes) -> str:
    return "sha256:" + hashlib.sha256(line.rstrip(b"\n")).hexdigest()


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _last_hash(self) -> str:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return GENESIS
        with self.path.open("rb") as handle:
            # the last line is all we need; logs grow, so read from the end
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = min(size, 1 << 16)
            while True:
                handle.seek(size - block)
                tail = handle.read(block)
                lines = tail.rstrip(b"\n").split(b"\n")
                if len(lines) > 1 or block == size:
                    return line_hash(lines[-1])
                block = min(size, block * 4)

    def append(self, event: str, **fields: object) -> None:
        """Add one entry; ``fields`` must be metadata only (ids, names, digests, numbers)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "w") as handle:
            # the daemon and an admin's command append at once: the last line is read and
            # the next chained to it under one lock, or both would chain to the same line
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            entry = {
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "event": event,
                **fields,
                "prev": self._last_hash(),
            }
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str) + "\n"
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
            head = head_path(self.path)
            head.with_suffix(".tmp").write_text(line_hash(line.encode()) + "\n")
            os.replace(head.with_suffix(".tmp"), head)

    def entries(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


def head_path(path: Path) -> Path:
    return path.with_name(path.name + HEAD_SUFFIX)


@dataclass(frozen=True)
class AuditProblem:
    line: int  # 1-based
    message: str


def verify(path: Path) -> list[AuditProblem]:
    """Every break in the hash chain, by line number; empty when the log is intact."""
    if not path.exists():
        return []
    problems = []
    previous = GENESIS
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw:
            continue
        try:
            entry = json.loads(raw)
            prev = entry["prev"]
        except (ValueError, KeyError, TypeError):
            problems.append(AuditProblem(number, "not an audit entry (unreadable JSON)"))
            previous = line_hash(raw)
            continue
        if prev != previous:
            problems.append(
                AuditProblem(
                    number,
                    "does not follow the line above it: the line above was edited, or a line "
                    "was inserted or deleted here",
                )
            )
        previous = line_hash(raw)
    head = head_path(path)
    if head.exists() and head.read_text().strip() != previous:
        problems.append(
            AuditProblem(number, f"the log does not end where {head.name} says: lines were cut off")
        )
    return problems
