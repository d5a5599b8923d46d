"""Secure sums: the additive parts of a train's state, masked between stations.

With ``secure = true`` in ``train.toml`` a train's additive parts (counts, sums, X'X, score
and information, event tables, n-weighted model weights...) do not travel in
``state.json``: each stop's contribution is encoded into the fixed-point ring of
``trains.runtime.masking`` and added to the running sum in ``secure.json``. The station
(outside the container) masks that file after the first stop of a round (sequential) or
after every stop (parallel), so stations on the way see only uniform ring elements; the
release point (the round's last stop, whose station removes the mask from its input, or
the aggregator, where the pairwise masks cancel) reads the totals.

A train uses one call for both settings::

    sums = sum_parts(ctx, state, {"n": len(y), "xtx": x.T @ x})   # in local()
    sums = sum_partials(ctx, states, ["n", "weighted"])            # in aggregate()

With ``secure = false`` ``sum_parts`` returns the running sums (the state's plus this
stop's) to put in the state as before. With ``secure = true`` it returns the totals at
the round's end and ``None`` elsewhere: the train then leaves them out of its state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trains.runtime.masking import SECURE_FILE, Ring, RingOverflow, SecureParts, decode_sum, encode
from trains.runtime.refusal import Refusal

NOT_ADDITIVE = (
    "secure = true, but this train put no additive part into its state at a stop in the "
    "middle of a round: what it passes on (e.g. a sequential model trained stop after stop) "
    "is not a sum, so it cannot be masked and would reach the next station in the clear; "
    "use a train whose state is sums (declare them with sum_parts), or set secure = false"
)


class SecureStateError(ValueError):
    """The secure parts do not follow the contract (names or shapes differ between stops)."""


@dataclass
class SecureSums:
    """One hop's view of the secure parts: what came in, and this stop's contribution."""

    enabled: bool
    release: bool  # the round's last stop or the aggregator: the totals are unmasked here
    inputs: list[SecureParts] = field(default_factory=list)
    mine: dict[str, tuple[tuple[int, ...], Ring]] = field(default_factory=dict)

    def add(self, name: str, value: Any) -> None:
        """This stop's contribution to the part ``name`` (a number or an array)."""
        if name in self.mine:
            raise SecureStateError(f"the secure part {name!r} was added twice at this stop")
        array = np.asarray(value, dtype=np.float64)
        try:
            self.mine[name] = (array.shape, encode(array))
        except RingOverflow as exc:
            raise Refusal("invalid_values", f"secure part {name!r}: {exc}") from None

    def _incoming(self) -> SecureParts:
        """The inputs summed in the ring (one input on a local hop, n at an aggregator)."""
        present = [p for p in self.inputs if p.parts]
        if not present:
            return SecureParts({}, 0)
        total = dict(present[0].parts)
        for other in present[1:]:
            _same_layout(total, other.parts, "the partial states of this round")
            total = {n: (s, r + other.parts[n][1]) for n, (s, r) in total.items()}
        return SecureParts(total, sum(p.contributions for p in present), present[0].masked_by)

    def combined(self) -> SecureParts:
        """Incoming sums plus this stop's contribution."""
        incoming = self._incoming()
        if not incoming.parts:
            return SecureParts(dict(self.mine), 1 if self.mine else 0)
        if not self.mine:
            return incoming
        _same_layout(incoming.parts, self.mine, "this stop's and the previous stops'")
        parts = {n: (s, r + self.mine[n][1]) for n, (s, r) in incoming.parts.items()}
        return SecureParts(parts, incoming.contributions + 1, incoming.masked_by)

    def totals(self) -> dict[str, Any]:
        """The summed parts as reals; only at the release point (elsewhere they are masked)."""
        if not self.release:
            raise SecureStateError(
                "the secure sums are masked at this stop; read them at the round's end"
            )
        summed = self.combined()
        out: dict[str, Any] = {}
        for name, (shape, ring) in summed.parts.items():
            try:
                values = decode_sum(ring, summed.contributions)
            except RingOverflow as exc:  # the station checks this before; a second line
                raise SecureStateError(f"secure part {name!r}: {exc}") from None
            out[name] = float(values[0]) if shape == () else values.reshape(shape)
        return out

    def output(self) -> SecureParts:
        """What goes on: the running sums, or nothing after the release point."""
        return SecureParts({}, 0) if self.release else self.combined()


def _same_layout(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    if {n: s for n, (s, _) in a.items()} != {n: s for n, (s, _) in b.items()}:
        raise SecureStateError(
            f"{what} secure parts differ in names or shapes ({sorted(a)} vs {sorted(b)}); "
            "every stop must add the same parts with the same shapes"
        )


def start(enabled: bool, release: bool, mode: str, input_dir: Path) -> SecureSums:
    """Read the incoming secure file(s) of a hop."""
    sums = SecureSums(enabled, release)
    if not enabled:
        return sums
    folders = [input_dir]
    if mode == "aggregate":
        folders = sorted(
            (p for p in input_dir.iterdir() if p.is_dir() and p.name.isdigit()),
            key=lambda p: int(p.name),
        )
    for folder in folders:
        path = folder / SECURE_FILE
        if path.is_file():
            sums.inputs.append(SecureParts.loads(path.read_bytes()))
    return sums


def finish(sums: SecureSums, mode: str, output_dir: Path) -> None:
    """Write ``secure.json``; refuse a secure train that passes on no sums mid-round."""
    if not sums.enabled:
        return
    if mode == "local" and not sums.release and not sums.mine:
        raise SecureStateError(NOT_ADDITIVE)
    (output_dir / SECURE_FILE).write_text(sums.output().dumps())


def sum_parts(
    ctx: Any, state: dict[str, Any] | None, mine: dict[str, Any]
) -> dict[str, Any] | None:
    """Add this stop's additive parts to the route's sums (see the module docstring)."""
    sums: SecureSums | None = getattr(ctx, "sums", None)
    if sums is not None and sums.enabled:
        for name, value in mine.items():
            sums.add(name, value)
        if not sums.release:
            return None
        totals = sums.totals()
        return {name: _like(totals[name], mine[name]) for name in mine}
    if state is None:
        return dict(mine)
    return {name: _plus(state[name], value) for name, value in mine.items()}


def sum_partials(ctx: Any, states: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """At the aggregator: the sum over the round's partial states of each part in ``names``."""
    sums: SecureSums | None = getattr(ctx, "sums", None)
    if sums is not None and sums.enabled:
        totals = sums.totals()
        if sorted(totals) != sorted(names):
            raise SecureStateError(f"the round's secure parts are {sorted(totals)}, not {names}")
        return totals
    out: dict[str, Any] = {}
    for name in names:
        total: Any = states[0][name]
        for state in states[1:]:
            total = _plus(total, state[name])
        out[name] = total
    return out


def _plus(a: Any, b: Any) -> Any:
    if np.ndim(a) == 0 and np.ndim(b) == 0:
        return a + b  # plain numbers stay plain (an int count stays an int)
    return np.asarray(a) + np.asarray(b)


def _like(total: Any, contribution: Any) -> Any:
    """Counts come back as integers (exact: a whole number is exact in the ring)."""
    if np.asarray(contribution).dtype.kind not in "iub":
        return total
    return round(total) if np.ndim(total) == 0 else np.rint(total).astype(np.int64)


def is_secure(ctx: Any) -> bool:
    """True when this train runs with ``secure = true``."""
    sums: SecureSums | None = getattr(ctx, "sums", None)
    return sums is not None and sums.enabled
