"""Signatures: canonical JSON (RFC 8785) wrapped in a DSSE envelope, signed with Ed25519.

DSSE signs ``PAE(payloadType, payload)`` so that a signature over a manifest can never be
replayed as a signature over a receipt, and the signed bytes are exactly the bytes stored.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, TypeVar

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from trains.errors import PayloadInvalid, SignatureInvalid
from trains.keys import b64decode, b64encode, fingerprint

M = TypeVar("M", bound=BaseModel)


class Signer(Protocol):
    """Whoever signs: a party's :class:`~trains.keys.PublicIdentity`, or a network root."""

    @property
    def name(self) -> str: ...

    @property
    def signing_fingerprint(self) -> str: ...

    def verify_key(self) -> Ed25519PublicKey: ...


def canonical_json(model: BaseModel) -> bytes:
    """RFC 8785 canonical bytes of a model: same content, same bytes, on every machine."""
    return rfc8785.dumps(model.model_dump(mode="json", by_alias=True))


def sha256_hex(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


class Signature(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    keyid: str
    sig: str


class Envelope(BaseModel):
    """A DSSE envelope: the payload bytes travel base64-encoded next to their signatures."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payloadType: str
    payload: str
    signatures: list[Signature]

    @property
    def payload_bytes(self) -> bytes:
        try:
            return b64decode(self.payload)
        except ValueError:  # whoever sent the envelope chose these bytes
            raise PayloadInvalid("a signed envelope's payload is not base64") from None

    @property
    def digest(self) -> str:
        """Digest that names this signed artifact (over its canonical JSON)."""
        return sha256_hex(canonical_json(self))


def sign(model: BaseModel, payload_type: str, key: Ed25519PrivateKey) -> Envelope:
    payload = canonical_json(model)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sig = key.sign(pae(payload_type, payload))
    return Envelope(
        payloadType=payload_type,
        payload=b64encode(payload),
        signatures=[Signature(keyid=fingerprint(raw), sig=b64encode(sig))],
    )


def verify(envelope: Envelope, payload_type: str, signer: Signer, what: str) -> bytes:
    """Check that ``signer`` signed ``envelope`` as ``payload_type``; return the payload.

    ``what`` names the artifact in error messages ("manifest", "receipt of hop 3").
    """
    if envelope.payloadType != payload_type:
        raise SignatureInvalid(
            f"{what}: payload type is {envelope.payloadType!r}, expected {payload_type!r}"
        )
    payload = envelope.payload_bytes
    wanted = signer.signing_fingerprint
    for signature in envelope.signatures:
        if signature.keyid != wanted:
            continue
        try:
            signer.verify_key().verify(b64decode(signature.sig), pae(payload_type, payload))
        except (InvalidSignature, ValueError):
            raise SignatureInvalid(
                f"{what}: the signature by {signer.name} ({wanted}) does not verify; "
                "the content was changed after signing"
            ) from None
        return payload
    found = ", ".join(s.keyid for s in envelope.signatures) or "none"
    raise SignatureInvalid(f"{what}: no signature by {signer.name} ({wanted}); signed by: {found}")


def open_envelope(
    envelope: Envelope, payload_type: str, signer: Signer, model: type[M], what: str
) -> M:
    """Verify, then parse the payload; and insist the payload is in canonical form."""
    payload = verify(envelope, payload_type, signer, what)
    try:
        parsed = model.model_validate_json(payload)
    except ValidationError as exc:
        raise SignatureInvalid(
            f"{what}: signed payload is not a valid {model.__name__}: {exc}"
        ) from None
    if canonical_json(parsed) != payload:
        raise SignatureInvalid(f"{what}: signed payload is not in canonical form")
    return parsed


def unverified_payload(envelope: Envelope, model: type[M]) -> M:
    """Parse without verifying: only to learn *who* should have signed, then verify."""
    try:
        return model.model_validate_json(envelope.payload_bytes)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the payload"
        # the message, never the input: pydantic keeps the offending value apart
        said = (
            first["msg"]
            .removeprefix("Value error, ")[:300]
            .encode("unicode_escape")
            .decode("ascii")
        )
        raise PayloadInvalid(
            f"a signed payload is not a valid {model.__name__} ({where}: {said}; "
            f"{exc.error_count()} problem(s))"
        ) from None
