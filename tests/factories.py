"""Small builders shared by the unit tests (real keys, real signatures)."""

from __future__ import annotations

from trains.keys import Identity
from trains.manifest import Image, Manifest, Route, Stop, expiry_from_now

DIGEST = "sha256:" + "ab" * 32


def make_manifest(
    researcher: Identity, stations: list[Identity], rounds: int = 1, **overrides: object
) -> Manifest:
    created, expires = expiry_from_now(1)
    fields: dict[str, object] = {
        "name": "cohort",
        "version": "0.1.0",
        "researcher": researcher.public,
        "image": Image(repository="127.0.0.1:5000/pht/cohort", digest=DIGEST),
        "route": Route(rounds=rounds, stops=[Stop(station=s.public) for s in stations]),
        "datasets": ["cohort"],
        "outputs": ["state.json"],
        "created_at": created,
        "expires_at": expires,
    }
    fields.update(overrides)
    return Manifest.model_validate(fields)
