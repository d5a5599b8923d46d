"""Sealed state: the payload is encrypted once, its key wrapped for each recipient.

* payload: AES-256-GCM under a fresh random data key;
* data key: wrapped per recipient with HPKE (RFC 9180, base mode,
  DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM) from ``cryptography``;
* the header (recipients, nonce, context) is the payload's associated data, and the
  context (train id and hop) is HPKE's ``info``, so a sealed state can be opened only
  for the train and hop it was sealed for, and no byte of it can change unnoticed.

File layout: ``PHTSEAL1`` | header length (4 bytes, big endian) | header JSON | ciphertext.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, ValidationError

from trains.errors import SealError
from trains.keys import PublicIdentity, b64decode, b64encode, fingerprint

MAGIC = b"PHTSEAL1"
SUITE_NAME = "HPKE(X25519,HKDF-SHA256,AES-256-GCM)+AES-256-GCM"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_MAX_HEADER = 1 << 20


class WrappedKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    recipient: str  # sealing-key fingerprint
    wrapped: str  # HPKE ciphertext (encapsulated key + sealed data key), base64


class SealHeader(BaseModel):
    """The envelope of a sealed state; readable by anyone, including central."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    suite: str = SUITE_NAME
    context: str
    nonce: str
    recipients: list[WrappedKey]


def seal_context(train_id: str, hop_index: int) -> str:
    """The context of the state that hop ``hop_index`` reads.

    The initial state is sealed for hop 0; the final state, for the researcher, is sealed
    for the index one past the last hop.
    """
    return f"pht/{train_id}/state-for-hop/{hop_index}"


def _info(context: str) -> bytes:
    return b"pht sealed state v1|" + context.encode()


def seal(plaintext: bytes, recipients: Sequence[PublicIdentity], context: str) -> bytes:
    """Encrypt ``plaintext`` so that each recipient (and no one else) can open it."""
    if not recipients:
        raise SealError("a state must be sealed to at least one recipient")
    data_key = AESGCM.generate_key(bit_length=256)
    wrapped = [
        WrappedKey(
            recipient=r.sealing_fingerprint,
            wrapped=b64encode(_SUITE.encrypt(data_key, r.seal_key(), info=_info(context))),
        )
        for r in recipients
    ]
    header = SealHeader(context=context, nonce=b64encode(os.urandom(12)), recipients=wrapped)
    header_bytes = header.model_dump_json().encode()
    prefix = MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes
    ciphertext = AESGCM(data_key).encrypt(b64decode(header.nonce), plaintext, prefix)
    return prefix + ciphertext


def read_header(sealed: bytes) -> tuple[SealHeader, bytes, bytes]:
    """Split a sealed blob into its parsed header, the associated data and the ciphertext."""
    if sealed[: len(MAGIC)] != MAGIC or len(sealed) < len(MAGIC) + 4:
        raise SealError("not a sealed pht state (bad magic); was the file truncated or swapped?")
    (length,) = struct.unpack(">I", sealed[len(MAGIC) : len(MAGIC) + 4])
    if length > _MAX_HEADER or len(MAGIC) + 4 + length > len(sealed):
        raise SealError("sealed state header is truncated or oversized")
    end = len(MAGIC) + 4 + length
    try:
        header = SealHeader.model_validate(json.loads(sealed[len(MAGIC) + 4 : end]))
    except (ValueError, ValidationError) as exc:
        raise SealError(f"sealed state header is corrupt: {exc}") from None
    return header, sealed[:end], sealed[end:]


def open_sealed(sealed: bytes, key: X25519PrivateKey, context: str) -> bytes:
    """Decrypt a sealed state with our sealing key, insisting on the expected context."""
    header, prefix, ciphertext = read_header(sealed)
    if header.version != 1 or header.suite != SUITE_NAME:
        raise SealError(f"unsupported sealed state version {header.version} / {header.suite}")
    if header.context != context:
        raise SealError(
            f"this state was sealed for {header.context!r}, not {context!r}; "
            "it belongs to another train or hop"
        )
    mine = fingerprint(
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    entry = next((w for w in header.recipients if w.recipient == mine), None)
    if entry is None:
        raise SealError(
            f"this state is not sealed to our key {mine}; it is sealed to "
            + ", ".join(w.recipient for w in header.recipients)
        )
    try:
        data_key = _SUITE.decrypt(b64decode(entry.wrapped), key, info=_info(context))
        return AESGCM(data_key).decrypt(b64decode(header.nonce), ciphertext, prefix)
    except (InvalidTag, ValueError):
        raise SealError(
            "sealed state failed authentication: it was tampered with or is damaged"
        ) from None


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
