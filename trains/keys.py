"""Identities: every party holds an Ed25519 signing key and an X25519 sealing key.

Private keys live in PEM files written 0600. Public keys travel as base64 of their raw
bytes, and are named by a fingerprint: ``sha256:`` + hex of the SHA-256 of those bytes.
``public.json`` carries both fingerprints too, so whoever receives it can compare them with
the ones its owner read out over another channel (phone, a signed letter).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from trains.errors import ConfigError, KeyFileError

SIGNING_KEY_FILE = "signing.key"
SEALING_KEY_FILE = "sealing.key"
PUBLIC_FILE = "public.json"
# the one pattern for every party's name (station, researcher, admin) and a train's name:
# lower-case, at most 63 characters, safe as a file name and in a URL path segment
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    """Does the whole of ``name`` match :data:`NAME_PATTERN` (a trailing newline too)?"""
    return _NAME.fullmatch(name) is not None


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def fingerprint(raw_public_key: bytes) -> str:
    """Stable name of a public key: ``sha256:<hex>`` of its raw bytes."""
    return "sha256:" + hashlib.sha256(raw_public_key).hexdigest()


def _raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _is_32_byte_key(value: str) -> str:
    try:
        raw = b64decode(value)
    except ValueError as exc:
        raise ValueError("a public key must be base64 of 32 raw bytes") from exc
    if len(raw) != 32:
        raise ValueError(f"a public key must be 32 bytes, got {len(raw)}")
    return value


RawPublicKey = Annotated[str, Field(max_length=64), AfterValidator(_is_32_byte_key)]
"""A raw 32-byte public key (Ed25519 or X25519), base64."""


class PublicIdentity(BaseModel):
    """What a party publishes: its name and its two public keys (base64, raw bytes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    signing_key: RawPublicKey
    sealing_key: RawPublicKey

    @property
    def signing_fingerprint(self) -> str:
        return fingerprint(b64decode(self.signing_key))

    @property
    def sealing_fingerprint(self) -> str:
        return fingerprint(b64decode(self.sealing_key))

    def verify_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(b64decode(self.signing_key))

    def seal_key(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(b64decode(self.sealing_key))


@dataclass(frozen=True)
class Identity:
    """A party's private keys. Never leaves the machine it was made on."""

    name: str
    signing: Ed25519PrivateKey
    sealing: X25519PrivateKey

    def __post_init__(self) -> None:
        if not valid_name(self.name):
            raise ConfigError(
                f"{self.name[:80]!r} is not a valid name: lower-case letters, digits, '.', "
                "'_' and '-', starting with a letter or digit, at most 63 characters"
            )

    @classmethod
    def generate(cls, name: str) -> Identity:
        return cls(name, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(
            name=self.name,
            signing_key=b64encode(_raw_public(self.signing.public_key())),
            sealing_key=b64encode(_raw_public(self.sealing.public_key())),
        )

    def save(self, directory: Path) -> None:
        """Write both private keys (0600) and the public block into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for filename, key in ((SIGNING_KEY_FILE, self.signing), (SEALING_KEY_FILE, self.sealing)):
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_private_key(directory / filename, pem)
        (directory / PUBLIC_FILE).write_text(public_json(self.public))

    @classmethod
    def load(cls, directory: Path) -> Identity:
        """Read the identity that :meth:`save` wrote; errors name the file and the fix."""
        public = load_public(directory / PUBLIC_FILE)
        signing = load_private_key(directory / SIGNING_KEY_FILE, Ed25519PrivateKey)
        sealing = load_private_key(directory / SEALING_KEY_FILE, X25519PrivateKey)
        identity = cls(public.name, signing, sealing)
        if identity.public != public:
            raise KeyFileError(
                f"{directory / PUBLIC_FILE} does not match the private keys beside it; "
                "restore the original files or create a new identity"
            )
        return identity


def public_json(public: PublicIdentity) -> str:
    """``public.json``: the name, both keys, and their fingerprints to compare out of band."""
    block = {
        **public.model_dump(),
        "signing_fingerprint": public.signing_fingerprint,
        "sealing_fingerprint": public.sealing_fingerprint,
    }
    return json.dumps(block, indent=2) + "\n"


def load_public(path: Path) -> PublicIdentity:
    """Read a ``public.json``; fingerprints in it must be those of the keys beside them."""
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        stated = {k: raw.pop(k) for k in ("signing_fingerprint", "sealing_fingerprint") if k in raw}
        public = PublicIdentity.model_validate(raw)
    except FileNotFoundError:
        raise KeyFileError(f"{path} is missing; create keys first (e.g. 'keys new')") from None
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a public identity block: {exc}") from None
    for key, value in stated.items():
        if value != getattr(public, key):
            raise KeyFileError(
                f"{path}: {key} {value} is not the fingerprint of the key in the file "
                f"({getattr(public, key)}); the file was edited: ask its owner for it again"
            )
    return public


def write_private_key(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def load_private_key(path: Path, kind: type) -> Any:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise KeyFileError(f"{path} is missing; create keys first (e.g. 'keys new')") from None
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a readable PEM private key: {exc}") from None
    if not isinstance(key, kind):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, expected {kind.__name__}")
    if os.stat(path).st_mode & 0o077:
        raise KeyFileError(f"{path} is readable by others; run: chmod 600 {path}")
    return key
