"""The ring of secure aggregation: fixed-point numbers in Z_2^128, and the masks on them.

Pure (stdlib + numpy), so the runtime inside a train's image and the station share it; the
station alone derives masks (it holds the X25519 keys, see ``station.secure_masking``), so
no seed ever enters a container.

Encoding. A real ``x`` becomes the integer ``round(x * 2**FRACTION_BITS)`` modulo 2**128,
kept as two uint64 limbs (``lo``, ``hi``) so numpy adds whole arrays with a carry.

* Precision: one contribution is off by at most 2**-33 (half a unit of 2**-32 ~ 2.3e-10),
  so a sum of ``m`` contributions is off by at most ``m * 2**-33`` absolute, plus one
  float64 rounding (relative 2**-53) when decoded.
* Range: each contribution must satisfy ``|x| < 2**VALUE_BITS`` (2**48 ~ 2.8e14), checked
  at encoding (``RingOverflow``, never a silent wrap). A sum of up to 2**40 such
  contributions stays below 2**120 in absolute value, far from 2**127, so it decodes exactly.
* Range check after unmasking: a correctly unmasked sum of ``m`` contributions is below
  ``m * 2**(VALUE_BITS + FRACTION_BITS)``; anything else (a mask not removed, a masked
  vector tampered with) is uniform in the ring and falls in that range with probability
  about ``m * 2**-47`` per element: ``decode_sum`` refuses it (``RingOverflow``).

Masks. ``expand(key, name, n)`` stretches a 32-byte key into ``n`` ring elements with
SHAKE-256; keys come from ``derive_key`` (HKDF-SHA256, RFC 5869) over a DH secret with the
train id, the round and the pair of stops in the info, so every train, round and pair has
its own mask. A value plus a uniform mask is uniform: the masked vector says nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FRACTION_BITS = 32
VALUE_BITS = 48
SCALE = float(2**FRACTION_BITS)
MAX_ELEMENTS = 1_000_000  # per part; bounds what a station parses and masks
U64 = npt.NDArray[np.uint64]


class RingOverflow(ValueError):
    """A value does not fit the fixed-point range, or a sum did not unmask into it."""


@dataclass(frozen=True)
class Ring:
    """Elements of Z_2^128 as two uint64 limbs of equal length; value = hi * 2**64 + lo."""

    lo: U64
    hi: U64

    def __len__(self) -> int:
        return int(self.lo.size)

    def __add__(self, other: Ring) -> Ring:
        _same_size(self, other)
        lo = self.lo + other.lo  # uint64 wraps modulo 2**64
        carry = (lo < self.lo).astype(np.uint64)
        return Ring(lo, self.hi + other.hi + carry)

    def __neg__(self) -> Ring:
        lo = ~self.lo + np.uint64(1)
        carry = (lo == 0).astype(np.uint64)  # ~0 + 1 wrapped: carry into hi
        return Ring(lo, ~self.hi + carry)

    def __sub__(self, other: Ring) -> Ring:
        return self + (-other)

    def to_bytes(self) -> bytes:
        """Little-endian 16 bytes per element (lo then hi)."""
        return np.column_stack([self.lo, self.hi]).astype("<u8").tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Ring:
        if len(raw) % 16:
            raise ValueError("ring bytes are not a whole number of 16-byte elements")
        pairs = np.frombuffer(raw, dtype="<u8").reshape(-1, 2).astype(np.uint64)
        return cls(pairs[:, 0].copy(), pairs[:, 1].copy())

    @classmethod
    def zeros(cls, n: int) -> Ring:
        return cls(np.zeros(n, np.uint64), np.zeros(n, np.uint64))


def _same_size(a: Ring, b: Ring) -> None:
    if len(a) != len(b):
        raise ValueError(f"ring vectors of {len(a)} and {len(b)} elements cannot be added")


def encode(values: Any) -> Ring:
    """Fixed-point encode reals (any shape, flattened); RingOverflow outside the range."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(x).all():
        raise RingOverflow("a value to sum securely is NaN or infinite")
    if x.size and float(np.abs(x).max()) >= 2.0**VALUE_BITS:
        raise RingOverflow(
            f"a value to sum securely is {float(np.abs(x).max()):.3g}, beyond the fixed-point "
            f"range |x| < 2^{VALUE_BITS}; rescale it (e.g. other units) before summing"
        )
    scaled = np.rint(np.abs(x) * SCALE)  # exact: a power-of-two scale, below 2**80
    hi = np.floor(scaled / 2.0**64)
    lo = scaled - hi * 2.0**64  # exact: a multiple of scaled's ulp, below 2**64
    ring = Ring(lo.astype(np.uint64), hi.astype(np.uint64))
    negative = x < 0
    if negative.any():
        flipped = -ring
        lo, hi = np.where(negative, flipped.lo, ring.lo), np.where(negative, flipped.hi, ring.hi)
        ring = Ring(lo.astype(np.uint64), hi.astype(np.uint64))
    return ring


def decode_sum(ring: Ring, contributions: int) -> npt.NDArray[np.float64]:
    """The reals a sum of ``contributions`` encoded values stands for; RingOverflow if an
    element is outside what such a sum can be (a mask left on, or tampering)."""
    negative = (ring.hi >> np.uint64(63)).astype(bool)
    flipped = -ring
    lo = np.where(negative, flipped.lo, ring.lo)
    hi = np.where(negative, flipped.hi, ring.hi)
    bound_bits = VALUE_BITS + FRACTION_BITS - 64 + max(contributions, 1).bit_length()
    if (hi >= np.uint64(2**bound_bits)).any():
        raise RingOverflow(
            f"{int((hi >= np.uint64(2**bound_bits)).sum())} securely summed value(s) are "
            f"outside the range a sum of {contributions} contribution(s) can reach: a mask "
            "was not removed or the masked state was altered on the way; the result is refused"
        )
    magnitude = hi.astype(np.float64) * 2.0**64 + lo.astype(np.float64)
    decoded: npt.NDArray[np.float64] = np.where(negative, -magnitude, magnitude) / SCALE
    return decoded


def hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869) with a fixed salt naming this protocol."""
    prk = hmac.new(b"pht secure aggregation v1", secret, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def derive_key(secret: bytes, train_id: str, round_: int, pair: tuple[int, int]) -> bytes:
    """One mask key per train, round and (unordered) pair of stops."""
    a, b = sorted(pair)
    info = f"mask|{train_id}|round {round_}|stops {a} {b}".encode()
    return hkdf(secret, info)


def expand(key: bytes, name: str, n: int) -> Ring:
    """``n`` uniform ring elements from ``key`` for the part called ``name``."""
    if not 0 <= n <= MAX_ELEMENTS:
        raise ValueError(f"a securely summed part has at most {MAX_ELEMENTS} elements")
    label = name.encode()
    stream = hashlib.shake_256(key + len(label).to_bytes(4, "big") + label).digest(16 * n)
    return Ring.from_bytes(stream)


# ---------------------------------------------------------------- the secure file

SECURE_FILE = "secure.json"
MAX_PARTS = 256
MAX_NAME = 128


@dataclass(frozen=True)
class SecureParts:
    """What ``secure.json`` holds: named ring vectors (with their array shapes) and how
    many stops' contributions they sum (for the range check at the release point)."""

    parts: dict[str, tuple[tuple[int, ...], Ring]]
    contributions: int
    masked_by: int | None = None  # sequential: the stop whose station added the mask

    def map(self, change: Any) -> SecureParts:
        """The same parts with ``change(name, ring)`` applied to every vector."""
        return SecureParts(
            {n: (shape, change(n, ring)) for n, (shape, ring) in self.parts.items()},
            self.contributions,
            self.masked_by,
        )

    def dumps(self) -> str:
        import json

        return json.dumps(
            {
                "format": 1,
                "contributions": self.contributions,
                "masked_by": self.masked_by,
                "parts": {
                    n: {"shape": list(shape), "ring": ring.to_bytes().hex()}
                    for n, (shape, ring) in sorted(self.parts.items())
                },
            },
            sort_keys=True,
        )

    @classmethod
    def loads(cls, text: str | bytes) -> SecureParts:
        """Parse with bounds; ValueError says what is wrong (untrusted bytes)."""
        import json

        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("format") != 1:
            raise ValueError(f"{SECURE_FILE} is not a format-1 object")
        count, parts = raw.get("contributions"), raw.get("parts")
        if not isinstance(count, int) or not 0 <= count <= 2**40 or not isinstance(parts, dict):
            raise ValueError(f"{SECURE_FILE} needs an integer 'contributions' and 'parts'")
        masked_by = raw.get("masked_by")
        if masked_by is not None and (not isinstance(masked_by, int) or not 0 <= masked_by < 2**16):
            raise ValueError(f"{SECURE_FILE}: 'masked_by' is not a stop's position")
        if len(parts) > MAX_PARTS:
            raise ValueError(f"{SECURE_FILE} holds more than {MAX_PARTS} parts")
        out: dict[str, tuple[tuple[int, ...], Ring]] = {}
        for name, part in parts.items():
            part = part if isinstance(part, dict) else {}
            shape, hexed = part.get("shape"), part.get("ring")
            if len(name) > MAX_NAME or not isinstance(shape, list) or not isinstance(hexed, str):
                raise ValueError(f"{SECURE_FILE}: part {name[:MAX_NAME]!r} is malformed")
            if len(shape) > 8 or not all(
                isinstance(d, int) and 0 <= d <= MAX_ELEMENTS for d in shape
            ):
                raise ValueError(f"{SECURE_FILE}: part {name!r} has a bad shape")
            n = int(np.prod(shape)) if shape else 1
            if n > MAX_ELEMENTS or len(hexed) != 32 * n:
                raise ValueError(f"{SECURE_FILE}: part {name!r} does not hold {n} elements")
            out[name] = (tuple(shape), Ring.from_bytes(bytes.fromhex(hexed)))
        return cls(out, count, masked_by)
