"""What the console's pages show of a hop: read from its record and manifest, never from
its data. A held output is shown by its disclosure summary (names, sizes, shapes, what was
suppressed), never a value."""

from __future__ import annotations

import difflib
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from station.config import StationConfig
from station.disclosure import Disclosure
from station.queue import HopRecord
from station.service import manifest_of
from trains.errors import PhtError
from trains.manifest import EXPOSURE_SHOWN, Image

# The only messages an action's redirect can put on the next page, by key (in a one-shot
# cookie the action's answer sets, so a link someone sends the steward picks none). A
# message that needs details (why an action was not done) is rendered with the page.
NOTES = {
    "wrong-login": "Wrong user name or password.",
    "too-many": "Too many failed logins: wait 15 minutes.",
    "logged-out": "Logged out.",
    "session-ended": "Your session ended (it expired, or the station daemon restarted, which "
    "ends every session): log in again.",
    "approved-train": "Approved train as a whole: its hops waiting here run now, and its later "
    "hops here run without asking until the approval expires (listed on the Waiting page).",
    "approved-hop": "Approved this hop.",
    "rejected": "Rejected: the researcher sees your reason.",
    "released": "Released this output.",
    "refused": "Refused this output: the researcher sees your reason.",
}


def note_text(key: str) -> str:
    """The console's own message for ``key`` ("" for any other text)."""
    return NOTES.get(key, "")


def hop_view(record: HopRecord, config: StationConfig) -> dict[str, Any]:
    """Everything the hop page shows, as plain values for the template."""
    manifest = manifest_of(record)
    view: dict[str, Any] = {
        "id": record.id,
        "train_id": record.train_id,
        "hop": record.hop,
        "kind": record.kind,
        "state": str(record.state),
        "received_at": record.received_at,
        "updated_at": record.updated_at,
        "needs_approval": record.needs_approval,
        "reason": record.reason,
        "approved_by": record.approved_by,
        "manifest_digest": record.manifest.digest,
        "manifest": None,
        "disclosure": disclosure_view(record),
    }
    if manifest is None:
        return view
    signer = manifest.researcher
    rules = config.policy.signer(signer.signing_fingerprint)
    allowed = None if rules is None else rules.datasets
    if rules is not None and allowed is None:  # every dataset this station offers
        allowed = sorted(config.datasets)
    asked, caps = manifest.resources, config.policy.caps
    view["manifest"] = {
        "name": manifest.name,
        "version": manifest.version,
        "signer_name": signer.name,
        "signer_key": signer.signing_fingerprint,
        "signer_rule": "" if rules is None else rules.name,
        "trusted": rules is not None,
        "image": manifest.image.reference,
        "datasets": list(manifest.datasets),
        "allowed": allowed,
        "outputs": list(manifest.outputs),
        "resources": [
            ("memory (MB)", asked.memory_mb, caps.memory_mb),
            ("CPUs", asked.cpus, caps.cpus),
            ("timeout (s)", asked.timeout_s, caps.timeout_s),
            ("output (MB)", asked.max_output_mb, caps.max_output_mb),
        ],
        "expires_at": manifest.expires_at,
        "expired": manifest.expires_at <= datetime.now(UTC),
        "mode": manifest.route.mode,
        "rounds": manifest.route.rounds,
        "exposed": [EXPOSURE_SHOWN[e] for e in manifest.route.allow_exposed_partials],
        "route": [
            {
                "index": h.index,
                "round": h.round,
                "stop": h.stop.name,
                "key": h.stop.station.signing_fingerprint,
                "kind": h.kind,
                "here": h.index == record.hop,
            }
            for h in manifest.hops()
        ],
    }
    return view


def disclosure_view(record: HopRecord) -> dict[str, Any] | None:
    if record.disclosure is None:
        return None
    disclosure = Disclosure.from_dict(record.disclosure)
    return {
        "files": [
            {"name": f.name, "bytes": f.bytes, "shape": f.shape, "count_file": f.count_file}
            for f in disclosure.files
        ],
        "total_bytes": disclosure.total_bytes,
        "suppressed_cells": disclosure.suppressed_cells,
        "output_digest": record.output_digest,
        # at the release point (station.show shows the same): types, shapes and counts of
        # suppressions, never a value; a release there goes to the researcher
        "release": None if disclosure.release is None else disclosure.release.to_dict(),
        "destination": "the next stop" if disclosure.release is None else "the researcher",
    }


@dataclass
class CodeCache:
    """A train's files by image digest: the image is pulled and read once per digest
    (``station.inspect``: a container is created, never started)."""

    config: StationConfig
    _files: dict[str, dict[str, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def files(self, image: Image) -> tuple[dict[str, str], str | None]:
        """``(files, None)``, or ``({}, why they cannot be shown)``."""
        with self._lock:
            if image.digest in self._files:
                return self._files[image.digest], None
        from station.inspect import train_files
        from station.runner import DockerRunner

        try:
            files = train_files(DockerRunner(), image, self.config)
        except PhtError as exc:
            return {}, str(exc)
        with self._lock:
            self._files[image.digest] = files
        return files, None


def last_approved(record: HopRecord, history: list[HopRecord]) -> HopRecord | None:
    """The newest hop of another train of the same name from the same signer that this
    station approved (by policy or by hand), to compare the code with."""
    manifest = manifest_of(record)
    if manifest is None:
        return None
    for other in history:  # newest first
        if other.train_id == record.train_id or other.approved_by is None:
            continue
        theirs = manifest_of(other)
        if (
            theirs is not None
            and theirs.name == manifest.name
            and theirs.researcher.signing_fingerprint == manifest.researcher.signing_fingerprint
        ):
            return other
    return None


def code_diff(before: dict[str, str], after: dict[str, str], old: str, new: str) -> str:
    """A unified diff of two trains' files, file by file ("" when they are the same)."""
    lines: list[str] = []
    for name in sorted(set(before) | set(after)):
        lines += difflib.unified_diff(
            before.get(name, "").splitlines(),
            after.get(name, "").splitlines(),
            f"{old}/{name}",
            f"{new}/{name}",
            lineterm="",
        )
    return "\n".join(lines)
