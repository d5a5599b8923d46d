"""Standing approvals: the admin approved a whole train, so its later hops here run unasked.

``pht-station approve TRAIN`` (or the console's "approve the train") covers every hop of
that train at this station until its manifest expires: one 8-round train needs one
approval, not eight. An approval is bound to three things read from the manifest the admin
was shown: the train id, the manifest's digest and its signer's key. A hop that arrives
under the same train id with any other manifest (a changed route, image, dataset or
signer) is not covered and waits for the admin as before.

Kept as one JSON file in the state folder (written atomically), next to the hop records;
every change is also in the audit log.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

APPROVALS_FILE = "approvals.json"


class StandingApproval(BaseModel):
    """One train approved at this station."""

    model_config = ConfigDict(extra="forbid")

    train_id: str
    manifest_digest: str  # the exact signed manifest the admin approved
    signer_key: str  # the researcher's signing-key fingerprint in that manifest
    expires_at: datetime  # the manifest's own expiry: the approval ends with it
    by: str
    at: datetime


class StandingApprovals:
    """The standing approvals of one station, in ``<state_dir>/approvals.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / APPROVALS_FILE

    def all(self) -> list[StandingApproval]:
        if not self.path.exists():
            return []
        raw = json.loads(self.path.read_text())
        return [StandingApproval.model_validate(item) for item in raw]

    def add(self, approval: StandingApproval) -> None:
        """Keep ``approval``; one for the same train and manifest replaces the old one, and
        expired ones are dropped (they cover nothing)."""
        now = datetime.now(UTC)
        kept = [
            a
            for a in self.all()
            if a.expires_at > now
            and (a.train_id, a.manifest_digest) != (approval.train_id, approval.manifest_digest)
        ]
        self._write([*kept, approval])

    def covering(
        self, train_id: str, manifest_digest: str, signer_key: str
    ) -> StandingApproval | None:
        """The approval that covers a hop of this train with exactly this manifest and
        signer, if one is in force."""
        now = datetime.now(UTC)
        for approval in self.all():
            if (
                approval.train_id == train_id
                and approval.manifest_digest == manifest_digest
                and approval.signer_key == signer_key
                and approval.expires_at > now
            ):
                return approval
        return None

    def _write(self, approvals: list[StandingApproval]) -> None:
        data = json.dumps([a.model_dump(mode="json") for a in approvals], indent=2).encode()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
