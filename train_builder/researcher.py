"""The researcher's Python API (the CLI is a thin layer over it; notebooks use it directly).

r = Researcher.from_profile()
train_id = r.submit(Path("mytrain"), image, route=["hospital-a", "hospital-b"])
r.wait(train_id)
result = r.result(train_id, Path("out"))
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central.client import CentralClient
from trains import state_codec
from trains.errors import CentralError, PhtError, RouteMismatch
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE, Image, Manifest, Route, Stop, expiry_from_now
from trains.receipt import HopPredicate, verify_chain
from trains.sealing import digest_bytes, open_sealed, seal_context
from trains.signing import open_envelope, sign
from trains.train_spec import load_train_spec

MAX_RESULT_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class Result:
    train_id: str
    out_dir: Path
    files: list[str]
    hops: list[HopPredicate]

    @property
    def state(self) -> dict[str, Any] | None:
        path = self.out_dir / "state.json"
        return json.loads(path.read_text()) if path.is_file() else None


class Researcher:
    def __init__(self, identity: Identity, central: CentralClient) -> None:
        self.identity = identity
        self.central = central

    def route_stops(self, names: list[str]) -> list[Stop]:
        """Look up each station's keys at central, to be pinned in the manifest."""
        known = {s.name: s for s in self.central.stations()}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise RouteMismatch(
                f"central knows no station {unknown}; known stations: {sorted(known)}"
            )
        return [Stop(station=known[n]) for n in names]

    def make_manifest(
        self, folder: Path, image: Image, stops: list[Stop], rounds: int = 1, days: float = 7
    ) -> Manifest:
        spec = load_train_spec(folder)
        created, expires = expiry_from_now(days)
        return Manifest(
            name=spec.train.name,
            version=spec.train.version,
            researcher=self.identity.public,
            image=image,
            route=Route(rounds=rounds, stops=stops),
            datasets=spec.datasets,
            outputs=spec.outputs,
            resources=spec.resources,
            created_at=created,
            expires_at=expires,
        )

    def submit_manifest(self, manifest: Manifest) -> str:
        """Sign and submit; the manifest pins every key, so central cannot swap one."""
        return self.central.submit(sign(manifest, MANIFEST_TYPE, self.identity.signing))

    def submit(
        self, folder: Path, image: Image, route: list[str], rounds: int = 1, days: float = 7
    ) -> str:
        manifest = self.make_manifest(folder, image, self.route_stops(route), rounds, days)
        return self.submit_manifest(manifest)

    def status(self, train_id: str) -> dict[str, Any]:
        return self.central.status(train_id)

    def wait(self, train_id: str, timeout_s: float = 3600, poll_s: float = 0.5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.central.status(train_id)
            if status["status"] in ("done", "failed", "cancelled"):
                return status
            if time.monotonic() > deadline:
                raise PhtError(f"train {train_id} still {status['status']} after {timeout_s}s")
            time.sleep(poll_s)

    def result(self, train_id: str, out_dir: Path) -> Result:
        """Download, verify the whole receipt chain, then open the final state."""
        status = self.central.status(train_id)
        if status["status"] != "done":
            detail = f": {status['error']}" if status.get("error") else ""
            raise CentralError(f"train {train_id} is {status['status']}{detail}")
        envelope = self.central.manifest(train_id)
        manifest = open_envelope(
            envelope,
            MANIFEST_TYPE,
            self.identity.public,
            Manifest,
            "manifest (as central holds it)",
        )
        receipts = self.central.receipts(train_id)
        sealed = self.central.result(train_id)
        hops = verify_chain(
            manifest, envelope.digest, manifest.initial_state_digest, receipts, digest_bytes(sealed)
        )
        archive = open_sealed(
            sealed, self.identity.sealing, seal_context(train_id, len(manifest.hops()))
        )
        files = state_codec.unpack(archive, out_dir, MAX_RESULT_BYTES)
        return Result(train_id, out_dir, files, hops)
