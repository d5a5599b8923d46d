"""Sealed state: the payload is encrypted once, its key wrapped for each recipient.

* file key: 32 random bytes, wrapped per recipient with HPKE (RFC 9180, base mode,
  DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM, from ``cryptography``); the
  context (train id and the hop that wrote the state, :func:`output_context`) is HPKE's
  ``info``, so a state opens only for the train and hop it was sealed for;
* payload: the STREAM construction exactly as the age format specifies it (C2SP age,
  "payload"): ChaCha20-Poly1305 over 64 KiB chunks, nonce = 11-byte big-endian chunk
  counter || last-chunk flag, under a payload key = HKDF-SHA256(file key, salt = a random
  16-byte nonce). We add the SHA-256 of the header to HKDF's ``info``, so no byte of the
  header (recipients, context) can change without the payload failing to open. Streaming
  keeps memory flat for a state of any size; truncation and reordering are detected.
  The chunks are moved in batches, digests taken on the way (:mod:`trains.sealstream`).

File layout: ``PHTSEAL2`` | header length (4 bytes, big endian) | header JSON | chunks.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, ValidationError

from trains.errors import SealedToOthers, SealError
from trains.keys import PublicIdentity, b64decode, b64encode, fingerprint
from trains.sealstream import CHUNK, TAG, OpenReader, SealWriter, sha256, sha256_if_wanted

MAGIC = b"PHTSEAL2"
SUITE_NAME = "HPKE(X25519,HKDF-SHA256,AES-256-GCM)+age-STREAM(ChaCha20-Poly1305,64KiB)"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_MAX_HEADER = 1 << 20


def sealed_size_bound(payload_bytes: int) -> int:
    """The most bytes a sealed file of a payload of at most ``payload_bytes`` can take:
    the largest header, plus a tag per chunk (and one for an empty last chunk). A download
    past this bound is not a state we can open, whoever sends it."""
    return len(MAGIC) + 8 + _MAX_HEADER + payload_bytes + (payload_bytes // CHUNK + 2) * TAG


class WrappedKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    recipient: str  # sealing-key fingerprint
    wrapped: str  # HPKE ciphertext (encapsulated key + sealed file key), base64


class SealHeader(BaseModel):
    """The envelope of a sealed state; readable by anyone, including central."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 2
    suite: str = SUITE_NAME
    context: str
    nonce: str
    recipients: list[WrappedKey]


def output_context(train_id: str, producing_hop: int | None) -> str:
    """The context a state is sealed under: the train and the hop that wrote it (``None``:
    the researcher's initial state).

    It names the output rather than its reader because one output may have several
    readers (a parallel round's aggregate goes to every stop of the next round)."""
    if producing_hop is None:
        return f"pht/{train_id}/initial-state"
    return f"pht/{train_id}/output-of-hop/{producing_hop}"


def seal_context(train_id: str, hop_index: int) -> str:
    """A context naming the hop that reads the state (the first format; states are now
    sealed under :func:`output_context`)."""
    return f"pht/{train_id}/state-for-hop/{hop_index}"


def _info(context: str) -> bytes:
    return b"pht sealed state v2|" + context.encode()


def _payload_cipher(file_key: bytes, header: SealHeader, prefix: bytes) -> ChaCha20Poly1305:
    payload_key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b64decode(header.nonce),
        info=b"payload|" + hashlib.sha256(prefix).digest(),
    ).derive(file_key)
    return ChaCha20Poly1305(payload_key)


@dataclass(frozen=True)
class Digests:
    """The digests of a payload sealed, taken while it streamed (no second read)."""

    plain: str  # sha256 of the plaintext (a state's archive: the receipt's commitment)
    sealed: str  # sha256 of the whole sealed file (the state digest central records)


@dataclass(frozen=True)
class Opened:
    """The digests of a payload opened, taken while it streamed."""

    plain: str  # sha256 of the plaintext
    sealed: str | None  # of the sealed file; None where the caller took it (downloading)


def start_seal(
    target: BinaryIO,
    recipients: Sequence[PublicIdentity],
    context: str,
    hash_plain: bool = True,
) -> SealWriter:
    """Write the header to ``target`` and return the writer of the payload; its
    ``close()`` writes the last chunk. Memory use is one batch, whatever the size.
    ``hash_plain`` False: the writer takes no digest of the plaintext (the caller has it)."""
    if not recipients:
        raise SealError("a state must be sealed to at least one recipient")
    file_key = os.urandom(32)
    wrapped = [
        WrappedKey(
            recipient=r.sealing_fingerprint,
            wrapped=b64encode(_SUITE.encrypt(file_key, r.seal_key(), info=_info(context))),
        )
        for r in recipients
    ]
    header = SealHeader(context=context, nonce=b64encode(os.urandom(16)), recipients=wrapped)
    header_bytes = header.model_dump_json().encode()
    prefix = MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes
    return SealWriter(target, _payload_cipher(file_key, header, prefix), prefix, hash_plain)


def seal_stream(
    source: BinaryIO, target: BinaryIO, recipients: Sequence[PublicIdentity], context: str
) -> Digests:
    """Encrypt ``source`` into ``target`` so that each recipient (and no one else) can open
    it; return the digests of both. Memory use is one batch, whatever the size."""
    writer = start_seal(target, recipients, context)
    buffer = memoryview(bytearray(1 << 20))
    while got := source.readinto(buffer):  # type: ignore[attr-defined]
        writer.write(buffer[:got])
    writer.close()
    return Digests(sha256(writer.plain), sha256(writer.sealed))


def read_header_from(source: BinaryIO) -> tuple[SealHeader, bytes]:
    """Read and parse the header; return it with its raw bytes (magic and length included)."""
    start = source.read(len(MAGIC) + 4)
    if start[: len(MAGIC)] != MAGIC or len(start) < len(MAGIC) + 4:
        raise SealError(
            "not a sealed pht state (bad magic): the file is damaged, truncated or not a state"
        )
    (length,) = struct.unpack(">I", start[len(MAGIC) :])
    raw = source.read(length) if length <= _MAX_HEADER else b""
    if len(raw) != length:
        raise SealError("sealed state header is truncated or oversized")
    try:
        header = SealHeader.model_validate(json.loads(raw))
    except (ValueError, ValidationError, RecursionError) as exc:
        raise SealError(f"sealed state header is corrupt: {type(exc).__name__}") from None
    return header, start + raw


def sealed_recipients(path: Path) -> list[str]:
    """The sealing-key fingerprints a sealed file's key is wrapped for, read from its header
    without decrypting anything (the header is readable by anyone, and bounded)."""
    with path.open("rb") as source:
        header, _ = read_header_from(source)
    return [w.recipient for w in header.recipients]


def check_sealed_to(path: Path, required: Sequence[PublicIdentity], what: str) -> None:
    """Refuse a sealed file whose header is not wrapped for exactly ``required``.

    A receipt only *says* whom its station sealed the output to; the header is what decides
    who can open it. A key wrapped for anyone else means someone else can read the state
    too (an extra recipient), so it is refused before it is opened."""
    check_recipients(sealed_recipients(path), required, what)


def check_recipients(found: list[str], required: Sequence[PublicIdentity], what: str) -> None:
    """:func:`check_sealed_to` on the recipients read from a header (``found``)."""
    wanted = [r.sealing_fingerprint for r in required]
    if sorted(found) == sorted(wanted):
        return
    extra = sorted(set(found) - set(wanted))
    missing = sorted(set(wanted) - set(found))
    problems = [f"also sealed to {', '.join(extra)}"] if extra else []
    problems += [f"not sealed to {', '.join(missing)}"] if missing else []
    problems += [] if problems else ["sealed to a recipient more than once"]
    raise SealedToOthers(
        f"{what} is not sealed to exactly the keys the manifest names "
        f"({'; '.join(problems)}): someone else may be able to open it, so it is refused "
        "unopened; tell the station that sealed it"
    )


def start_open(
    source: BinaryIO, key: X25519PrivateKey, context: str, hash_sealed: bool = True
) -> OpenReader:
    """Check a sealed state's header (version, context, that it is sealed to ``key``)
    and return the reader of its plaintext. Each chunk is authenticated before any of
    its bytes are read; a truncated or reordered stream fails (SealError) when reached,
    so what was read of a stream that then fails must be thrown away."""
    header, prefix = read_header_from(source)
    if header.version != 2 or header.suite != SUITE_NAME:
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
    try:  # a damaged base64 field is a ValueError: the same refusal as a bad tag
        file_key = _SUITE.decrypt(b64decode(entry.wrapped), key, info=_info(context))
        cipher = _payload_cipher(file_key, header, prefix)
    except (InvalidTag, ValueError):
        raise SealError(
            "sealed state failed authentication: it was tampered with, truncated or damaged"
        ) from None
    return OpenReader(source, cipher, prefix, hash_sealed)


def open_stream(source: BinaryIO, target: BinaryIO, key: X25519PrivateKey, context: str) -> Opened:
    """Decrypt a sealed state with our sealing key, insisting on the expected context;
    return the digests of the plaintext and the sealed bytes.

    Each chunk is authenticated before it is written; a truncated or reordered stream
    fails. On failure ``target`` may hold a prefix: write to a temporary file and keep it
    only on success (:func:`open_file` does).
    """
    reader = start_open(source, key, context)
    reader.copy_to(target)
    return Opened(sha256(reader.plain), sha256_if_wanted(reader.sealed))


def seal_file(
    source: Path, target: Path, recipients: Sequence[PublicIdentity], context: str
) -> str:
    """Seal a file into another; return the sealed file's digest."""
    with source.open("rb") as src, target.open("wb") as dst:
        digests = seal_stream(src, dst, recipients, context)
    return digests.sealed


def open_file(source: Path, target: Path, key: X25519PrivateKey, context: str) -> Opened:
    """Open a sealed file; ``target`` appears only if every byte authenticated. Returns
    the digests of both files, taken while they streamed."""
    partial = target.with_name(target.name + ".partial")
    try:
        with source.open("rb") as src, partial.open("wb") as dst:
            digests = open_stream(src, dst, key, context)
        os.replace(partial, target)
        return digests
    finally:
        partial.unlink(missing_ok=True)


def seal(plaintext: bytes, recipients: Sequence[PublicIdentity], context: str) -> bytes:
    """In-memory form of :func:`seal_stream`, for small states and tests."""
    out = io.BytesIO()
    seal_stream(io.BytesIO(plaintext), out, recipients, context)
    return out.getvalue()


def open_sealed(sealed: bytes, key: X25519PrivateKey, context: str) -> bytes:
    """In-memory form of :func:`open_stream`."""
    out = io.BytesIO()
    open_stream(io.BytesIO(sealed), out, key, context)
    return out.getvalue()


def read_header(sealed: bytes) -> tuple[SealHeader, bytes, bytes]:
    """Split a sealed blob into its parsed header, the header bytes and the chunks."""
    header, prefix = read_header_from(io.BytesIO(sealed))
    return header, prefix, sealed[len(prefix) :]


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_file(path: Path) -> str:
    h = hashlib.sha256()
    buffer = memoryview(bytearray(1 << 20))
    with path.open("rb", buffering=0) as handle:
        while got := handle.readinto(buffer):
            h.update(buffer[:got])
    return "sha256:" + h.hexdigest()
