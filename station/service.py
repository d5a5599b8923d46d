"""What a station's admin can do, in one place: the CLI (``pht-station approve`` ...) and the
console (``station.console``) both call this, so an action is checked the same way and
lands in the audit log as the same entry, whoever took it and however.

Every action names who took it (``by``: ``"admin"`` from the shell, ``"console:<user>"``
from the browser). Nothing here reads patient data: a held output is described by its
disclosure summary (names, sizes, shapes, what was suppressed), never its values.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from station.approvals import StandingApproval, StandingApprovals
from station.audit import AUDIT_FILE, AuditLog, AuditProblem, verify
from station.config import StationConfig
from station.queue import OPEN, HopQueue, HopRecord, HopState
from station.state_version import open_state
from trains.errors import ConfigError, PhtError
from trains.manifest import Manifest
from trains.signing import unverified_payload

_TRAIN_PREFIX = re.compile(r"^[0-9a-f-]{1,36}$")
# events of the audit log that tell of something going wrong, for the health page
_ERROR_EVENTS = {"failed", "deferred", "pass_on_refused", "quarantined"}


@dataclass(frozen=True)
class Check:
    """One line of the station's health: what was checked, whether it is fine, and why."""

    name: str
    ok: bool
    detail: str


class StationService:
    """The admin's actions on one station's state folder."""

    def __init__(self, config: StationConfig) -> None:
        self.config = config
        # the folder's layout version checked (an older one migrated) before any read
        self.queue = HopQueue(open_state(config.state_dir))
        self.audit = AuditLog(self.queue.root / AUDIT_FILE)
        self.approvals = StandingApprovals(self.queue.root)

    # -- reading ---------------------------------------------------------------------------

    def waiting(self) -> list[HopRecord]:
        """Hops that wait for the admin or for delivery, and those given up on."""
        return [r for r in self.queue.all() if r.state in {*OPEN, HopState.QUARANTINED}]

    def history(self) -> list[HopRecord]:
        """Every hop this station has been offered, newest first."""
        return sorted(self.queue.all(), key=lambda r: r.received_at, reverse=True)

    def get(self, rid: str) -> HopRecord:
        return self.queue.get(rid)

    def train_id(self, given: str) -> str:
        """A train id from the id itself or a unique start of it, among the trains with a
        hop here."""
        if not _TRAIN_PREFIX.fullmatch(given):
            raise ConfigError(f"{given[:80]!r} is not a train id; 'pht-station pending' lists them")
        ids = sorted({r.train_id for r in self.queue.all() if r.train_id.startswith(given)})
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise ConfigError(f"no hop of a train {given!r} here; 'pht-station pending' lists them")
        raise ConfigError(f"{given!r} names {len(ids)} trains; give more of the id")

    def standing(self) -> list[StandingApproval]:
        return self.approvals.all()

    # -- deciding --------------------------------------------------------------------------

    def approve_hop(self, rid: str, by: str) -> HopRecord:
        """Let one pending hop run."""
        return self._approve(self.queue.get(rid), by)

    def approve_train(
        self, given: str, by: str, seen: str | None = None
    ) -> tuple[StandingApproval, list[HopRecord]]:
        """Approve every hop of a train at this station until its manifest expires: the
        pending ones now, later ones as they arrive (``station.hop.admit`` asks
        :class:`StandingApprovals`). Bound to the manifest of the hop waiting here (of hop
        ``seen``, the one the admin looked at, if given), so a different manifest under
        the same id is not covered."""
        train_id = self.train_id(given)
        pending = [
            r for r in self.queue.all() if r.train_id == train_id and r.state == HopState.PENDING
        ]
        if seen is not None:
            pending = sorted(pending, key=lambda r: r.id != seen)
        if not pending or (seen is not None and pending[0].id != seen):
            raise ConfigError(
                f"no hop of train {train_id} waits for approval here; approve a train while "
                "one of its hops is pending, so that you have seen what you approve"
            )
        if seen is None and len({r.manifest.digest for r in pending}) > 1:
            raise ConfigError(
                f"hops of train {train_id} wait here with different manifests; compare them "
                "with 'pht-station show' and approve one hop with --hop"
            )
        manifest_env = pending[0].manifest
        manifest = unverified_payload(manifest_env, Manifest)
        if manifest.expires_at <= datetime.now(UTC):
            raise ConfigError(f"the manifest of train {train_id} has expired; nothing to approve")
        approval = StandingApproval(
            train_id=train_id,
            manifest_digest=manifest_env.digest,
            signer_key=manifest.researcher.signing_fingerprint,
            expires_at=manifest.expires_at,
            by=by,
            at=datetime.now(UTC),
        )
        self.approvals.add(approval)
        self.audit.append(
            "train_approved",
            train_id=train_id,
            by=by,
            manifest_digest=approval.manifest_digest,
            signer_key=approval.signer_key,
            until=approval.expires_at.isoformat(),
        )
        approved = [
            self._approve(r, by) for r in pending if r.manifest.digest == approval.manifest_digest
        ]
        return approval, approved

    def _approve(self, record: HopRecord, by: str) -> HopRecord:
        def approve(current: HopRecord) -> bool:
            _expect(current.state, HopState.PENDING, "approve")
            current.state, current.approved_by = HopState.APPROVED, by
            return True

        # decided on the record as it is now (under the queue's lock), not as it was read:
        # a pre-pull's save or another admin's decision landing meanwhile is kept
        record = self.queue.update(record.id, approve)
        self.audit.append("approved", train_id=record.train_id, hop=record.hop, by=by)
        return record

    def reject(self, rid: str, reason: str, by: str) -> HopRecord:
        """Refuse a pending hop, or a held output; the reason reaches the researcher (the
        daemon reports it to central, and ``pht-train status`` shows it)."""
        reason = reason.strip()
        if not reason:
            raise ConfigError("give a reason: the researcher reads it")

        def refuse(record: HopRecord) -> bool:
            if record.state not in (HopState.PENDING, HopState.HELD):
                raise ConfigError(f"hop {record.id} is {record.state}; only pending or held hops")
            what = "its output" if record.state == HopState.HELD else "the hop"
            record.state = HopState.REJECTED
            record.reason = (
                f"PolicyRejected: the admin of station {self.config.station.name} rejected "
                f"{what}: {reason[:1000]}"
            )
            record.reported = False
            self.queue.clear_output(record)
            return True

        record = self.queue.update(self.queue.get(rid).id, refuse)
        self.audit.append("rejected", train_id=record.train_id, hop=record.hop, by=by)
        return record

    def release(self, rid: str, by: str) -> HopRecord:
        """Let a held output leave (the daemon uploads it on its next loop)."""

        def let_go(record: HopRecord) -> bool:
            _expect(record.state, HopState.HELD, "release")
            record.state = HopState.SEALED
            return True

        record = self.queue.update(self.queue.get(rid).id, let_go)
        self.audit.append(
            "output_released",
            train_id=record.train_id,
            hop=record.hop,
            by=by,
            output_digest=record.output_digest,
        )
        return record

    def refuse_release(self, rid: str, reason: str, by: str) -> HopRecord:
        """Keep a held output from leaving, with a reason: the hop is rejected."""
        record = self.queue.get(rid)
        _expect(record.state, HopState.HELD, "refuse")
        return self.reject(rid, reason, by)

    # -- the audit log and health ----------------------------------------------------------

    def audit_entries(self, last: int = 500) -> list[dict[str, Any]]:
        return self.audit.entries()[-last:]

    def verify_audit(self) -> list[AuditProblem]:
        return verify(self.audit.path)

    def health(self) -> list[Check]:
        """Docker, central, token, datasets, state folder (``pht-station doctor``), the base
        image, free disk, and the last error the audit log recorded."""
        from station.doctor import run_checks

        checks = [
            # a database's error text may quote a row: the details stay in the shell
            Check(f.check, f.ok, f.detail)
            if f.ok or not f.check.startswith("dataset")
            else Check(f.check, False, "cannot be read; 'pht-station doctor' says why")
            for f in run_checks(self.config)
        ]
        checks.append(_base_image())
        free = shutil.disk_usage(self.config.state_dir).free
        checks.append(
            Check(
                "disk",
                free > 1 << 30,
                f"{free / (1 << 30):.1f} GiB free where the state folder is"
                + ("" if free > 1 << 30 else "; free some space: runs and outputs need it"),
            )
        )
        errors = [e for e in self.audit.entries() if e.get("event") in _ERROR_EVENTS]
        if errors:
            last = errors[-1]
            detail = f"{last.get('at')} {last.get('event')} train {last.get('train_id')} hop " + (
                f"{last.get('hop')}: {str(last.get('reason', ''))[:300]}"
            )
            checks.append(Check("last error", True, detail))
        else:
            checks.append(Check("last error", True, "none recorded"))
        return checks


def _base_image() -> Check:
    try:
        import docker

        image = docker.from_env(timeout=10).images.get("pht-base:latest")
    except Exception as exc:  # any failure: the image is not usable here
        return Check(
            "base image",
            False,
            f"pht-base:latest is not there ({type(exc).__name__}); build it with "
            "compose/base/build-base.sh",
        )
    return Check("base image", True, f"pht-base:latest {image.id}")


def manifest_of(record: HopRecord) -> Manifest | None:
    """The manifest of a hop record, or None when it cannot be read (a refused offer's
    manifest may be anything)."""
    try:
        return unverified_payload(record.manifest, Manifest)
    except (PhtError, ValueError):
        return None


def _expect(state: str, wanted: str, action: str) -> None:
    if state != wanted:
        raise ConfigError(f"only a {wanted} hop can be {action}d; this one is {state}")
