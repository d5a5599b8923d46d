"""Secure aggregation at the station: masks on ``secure.json``, outside the container.

A train with ``secure = true`` declares ``secure.json`` in its signed manifest's outputs; it
holds the additive parts of the state as fixed-point ring vectors
(``trains.runtime.masking``). The station adds and removes masks derived from X25519
agreements between its own sealing key and the sealing keys the manifest pins for the
other stops, through HKDF with the train id, the round and the pair of stops, so no
container ever holds a seed and every train, round and pair has fresh masks.

* Sequential round of n >= 2 stops: the first stop's station adds the mask of the pair
  (first, last) to its output; the stations in between add their contributions to a
  vector they cannot read; the last stop's station removes the mask from its input, checks
  the range, and only then runs its container (the release point of the round).
* Parallel round of n >= 2 stops: stop s adds, for every other stop t, the mask of the pair
  (s, t), plus if s < t and minus otherwise; in the aggregator's ring sum every mask meets
  its negative. The aggregator's station checks the range of the sum before its container
  runs, so a missing stop or an altered vector fails the round with a reason (no dropout
  recovery: a stop that fails or refuses fails the round).

A round of one stop is not masked: there is no other site to hide it from.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from trains.errors import StateInvalid
from trains.manifest import Hop, Manifest
from trains.runtime.masking import (
    SECURE_FILE,
    Ring,
    RingOverflow,
    SecureParts,
    decode_sum,
    derive_key,
    expand,
)

MAX_SECURE_BYTES = 64 * 1024 * 1024  # 32 hex digits an element: two million elements


def is_secure(manifest: Manifest) -> bool:
    """A train runs with secure = true when its signed outputs name the secure file."""
    return SECURE_FILE in manifest.outputs


def pair_key(me: X25519PrivateKey, manifest: Manifest, round_: int, mine: int, other: int) -> bytes:
    """The mask key of the pair (mine, other) of this round's stops, from the keys the
    manifest pins: only those two stations can compute it."""
    peer = manifest.route.stops[other].station.seal_key()
    return derive_key(me.exchange(peer), manifest.train_id, round_, (mine, other))


def mask(parts: SecureParts, key: bytes, sign: int) -> SecureParts:
    """Add (sign +1) or remove (-1) the mask ``key`` expands to, part by part."""

    def change(name: str, ring: Ring) -> Ring:
        m = expand(key, name, len(ring))
        return ring + m if sign > 0 else ring - m

    return parts.map(change)


def mask_output(manifest: Manifest, hop: Hop, me: X25519PrivateKey, output_dir: Path) -> None:
    """After a local hop's container: mask what it wrote (first stop, or every parallel stop)."""
    n = len(manifest.route.stops)
    if not is_secure(manifest) or hop.kind != "local" or n < 2:
        return
    sequential = manifest.route.mode == "sequential"
    if sequential and hop.position == n - 1:
        return  # the round's end: released here, nothing masked goes on
    parts = _read(output_dir / SECURE_FILE, "the train's secure output")
    if sequential and parts.contributions != 1:
        return  # an earlier stop's station masked the running sum already
    # the first stop that contributes (stop 0, or the next one if stop 0 was skipped)
    pairs = [n - 1] if sequential else [t for t in range(n) if t != hop.position]
    for other in pairs:
        key = pair_key(me, manifest, hop.round, hop.position, other)
        parts = mask(parts, key, +1 if hop.position < other else -1)
    if sequential:
        parts = SecureParts(parts.parts, parts.contributions, hop.position)
    _write(output_dir / SECURE_FILE, parts)


def unmask_input(manifest: Manifest, hop: Hop, me: X25519PrivateKey, input_dir: Path) -> None:
    """Before the container of a round's release point: remove the mask (sequential) or
    check the masks cancelled (parallel); either way a sum out of range fails the hop."""
    n = len(manifest.route.stops)
    if not is_secure(manifest) or n < 2:
        return
    if hop.kind == "aggregate":
        partials = [_read(input_dir / str(k) / SECURE_FILE, f"partial {k}") for k in range(n)]
        _check_range(_ring_sum(partials), hop)
        return
    if manifest.route.mode != "sequential" or hop.position != n - 1:
        return
    path = input_dir / SECURE_FILE
    parts = _read(path, "the input's secure sums")
    if parts.masked_by is None or not 0 <= parts.masked_by < n - 1:
        raise StateInvalid(
            f"the secure sums of round {hop.round} arrived without the mask of an earlier "
            "stop of the round; the round is refused"
        )
    parts = mask(parts, pair_key(me, manifest, hop.round, n - 1, parts.masked_by), -1)
    _check_range(parts, hop)
    _write(path, parts)


def _ring_sum(partials: list[SecureParts]) -> SecureParts:
    first = partials[0]
    for other in partials[1:]:
        if _layout(other) != _layout(first):
            raise StateInvalid(
                "the stops of this round sent secure parts of different names or shapes; "
                "the round is refused"
            )
        first = SecureParts(
            {k: (s, r + other.parts[k][1]) for k, (s, r) in first.parts.items()},
            first.contributions + other.contributions,
        )
    return first


def _layout(parts: SecureParts) -> dict[str, tuple[int, ...]]:
    return {name: shape for name, (shape, _) in parts.parts.items()}


def _check_range(parts: SecureParts, hop: Hop) -> None:
    try:
        for _, ring in parts.parts.values():
            decode_sum(ring, parts.contributions)
    except RingOverflow:
        raise StateInvalid(
            f"the secure sums of round {hop.round} did not unmask into their range: a stop's "
            "masked state was altered on the way, or a stop of the round was skipped or "
            "missing; the round is refused"
        ) from None


def _read(path: Path, what: str) -> SecureParts:
    """Parse a secure file with bounds; never follow a link a container planted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        raise StateInvalid(f"{what}: {SECURE_FILE} is missing or not a plain file") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise StateInvalid(f"{what}: {SECURE_FILE} is not a plain file")
        raw = handle.read(MAX_SECURE_BYTES + 1)
    if len(raw) > MAX_SECURE_BYTES:
        raise StateInvalid(f"{what}: {SECURE_FILE} is above {MAX_SECURE_BYTES} bytes")
    try:
        return SecureParts.loads(raw)
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise StateInvalid(f"{what}: {exc}") from None


def _write(path: Path, parts: SecureParts) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
    with os.fdopen(fd, "w") as handle:
        handle.write(parts.dumps())
