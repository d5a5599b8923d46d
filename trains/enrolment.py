"""Enrolment: an offline network root vouches for each station's keys, so nobody has to
trust central for them.

The root holder (``pht-network``) keeps an Ed25519 key offline and signs, for each station,
an *enrolment statement*: the station's name and both public keys, issued and expiry
times. Central stores the statement the operator hands it and serves it with
``/api/v1/stations``; it cannot forge one. Researchers (profile ``network_root``) and
stations (``[policy] network_root``) pin the root's fingerprint and accept a station's keys
only with a valid, unexpired, unrevoked statement for that name and exactly those keys.

Revocation is a *revocation list* the root signs (a serial number that only grows, and
entries ``name`` + optional signing-key fingerprint + time): a statement for that name (and
key) issued at or before the entry's time is revoked. Central serves the newest list it was
given; a researcher remembers the newest one it has seen and never goes back to an older
one. Central can withhold a newer list, so a revocation is certain to take effect only
when the statement expires: keep lifetimes short (``pht-network enrol --days``).

Everything here is pure: make and verify. Signatures are DSSE envelopes (trains.signing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from trains.errors import KeyFileError, NotEndorsed, PhtError
from trains.keys import (
    PublicIdentity,
    RawPublicKey,
    b64decode,
    b64encode,
    fingerprint,
    load_private_key,
    write_private_key,
)
from trains.manifest import CLOCK_SKEW, DIGEST_RE, NAME_RE
from trains.signing import Envelope, open_envelope, sign, unverified_payload

ENROLMENT_TYPE = "application/vnd.pht.enrolment+json"
REVOCATIONS_TYPE = "application/vnd.pht.revocations+json"
ROOT_KEY_FILE = "root.key"
ROOT_PUBLIC_FILE = "root.public.json"
REVOCATIONS_FILE = "revocations.json"


class RootKey(BaseModel):
    """The network root's public key (base64 of 32 raw Ed25519 bytes) and the network's name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_RE)
    signing_key: RawPublicKey

    @property
    def signing_fingerprint(self) -> str:
        return fingerprint(b64decode(self.signing_key))

    def verify_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(b64decode(self.signing_key))


class EnrolmentStatement(BaseModel):
    """What the root signs for one station."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: RootKey
    role: str = Field("station", pattern="^station$")
    station: PublicIdentity
    issued_at: AwareDatetime
    expires_at: AwareDatetime


class Revoked(BaseModel):
    """Statements for ``name`` (only for this signing key, when given) issued at or before
    ``revoked_at`` are revoked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_RE)
    signing_fingerprint: str | None = Field(None, pattern=DIGEST_RE.pattern)
    revoked_at: AwareDatetime
    reason: str = Field("", max_length=200)


class RevocationList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    root: RootKey
    serial: int = Field(ge=1)
    issued_at: AwareDatetime
    revoked: list[Revoked] = Field(default_factory=list, max_length=100_000)

    def revokes(self, statement: EnrolmentStatement) -> Revoked | None:
        for entry in self.revoked:
            if (
                entry.name == statement.station.name
                and entry.signing_fingerprint in (None, statement.station.signing_fingerprint)
                and statement.issued_at <= entry.revoked_at
            ):
                return entry
        return None


@dataclass(frozen=True)
class NetworkRoot:
    """The root's private key. It belongs offline, with the consortium's key holder."""

    name: str
    signing: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> NetworkRoot:
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def public(self) -> RootKey:
        raw = self.signing.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return RootKey(name=self.name, signing_key=b64encode(raw))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = self.signing.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_key(directory / ROOT_KEY_FILE, pem)
        (directory / ROOT_PUBLIC_FILE).write_text(self.public.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> NetworkRoot:
        try:
            public = RootKey.model_validate_json((directory / ROOT_PUBLIC_FILE).read_text())
        except FileNotFoundError:
            raise KeyFileError(
                f"no network root in {directory}; create one with 'pht-network root new'"
            ) from None
        except ValueError as exc:
            raise KeyFileError(f"{directory / ROOT_PUBLIC_FILE} is not a root key: {exc}") from None
        root = cls(public.name, load_private_key(directory / ROOT_KEY_FILE, Ed25519PrivateKey))
        if root.public != public:
            raise KeyFileError(f"{directory / ROOT_PUBLIC_FILE} does not match {ROOT_KEY_FILE}")
        return root


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def enrol(root: NetworkRoot, station: PublicIdentity, days: float) -> Envelope:
    """The root's signed statement that ``station``'s keys are the network's for ``days``."""
    if not 0 < days <= 3650:
        raise PhtError(f"an enrolment lasts between 0 and 3650 days, not {days}")
    issued = now_utc()
    statement = EnrolmentStatement(
        root=root.public,
        station=station,
        issued_at=issued,
        expires_at=issued + timedelta(days=days),
    )
    return sign(statement, ENROLMENT_TYPE, root.signing)


def revoke(
    root: NetworkRoot,
    previous: RevocationList | None,
    name: str,
    signing_fingerprint: str | None = None,
    reason: str = "",
) -> Envelope:
    """The next revocation list: ``previous``'s entries plus this one, serial + 1."""
    entries = list(previous.revoked) if previous is not None else []
    when = now_utc()
    entries.append(
        Revoked(name=name, signing_fingerprint=signing_fingerprint, revoked_at=when, reason=reason)
    )
    serial = previous.serial + 1 if previous is not None else 1
    listing = RevocationList(root=root.public, serial=serial, issued_at=when, revoked=entries)
    return sign(listing, REVOCATIONS_TYPE, root.signing)


def _signed_by_pinned(
    envelope: Envelope,
    payload_type: str,
    model: type[EnrolmentStatement] | type[RevocationList],
    pinned_root: str,
    what: str,
) -> EnrolmentStatement | RevocationList:
    try:
        claimed = unverified_payload(envelope, model)
    except (ValidationError, ValueError) as exc:
        raise NotEndorsed(f"{what} is not a valid statement: {exc}") from None
    if claimed.root.signing_fingerprint != pinned_root:
        raise NotEndorsed(
            f"{what} is signed by root {claimed.root.name} ({claimed.root.signing_fingerprint}), "
            f"not by the network root you pinned ({pinned_root}); it belongs to another "
            "network, or your pinned root is wrong: check it with the consortium"
        )
    try:
        return open_envelope(envelope, payload_type, claimed.root, model, what)
    except PhtError as exc:
        raise NotEndorsed(str(exc)) from None


def open_revocations(envelope: Envelope, pinned_root: str) -> RevocationList:
    listing = _signed_by_pinned(
        envelope, REVOCATIONS_TYPE, RevocationList, pinned_root, "the revocation list"
    )
    assert isinstance(listing, RevocationList)
    return listing


def verify_enrolment(
    envelope: Envelope | None,
    pinned_root: str,
    served: PublicIdentity,
    revocations: RevocationList | None = None,
    now: datetime | None = None,
) -> EnrolmentStatement:
    """Check that the pinned root endorses exactly ``served`` (name and both keys), now,
    and has not revoked it. Raises :class:`NotEndorsed` saying why and what to do."""
    name = served.name
    if envelope is None:
        raise NotEndorsed(
            f"station {name} is not enrolled in the network: no enrolment statement signed "
            "by the network root comes with it (the root holder enrols it with 'pht-network "
            "enrol', central's operator stores that with 'pht-central admin set-enrolment')"
        )
    what = f"the enrolment of station {name}"
    statement = _signed_by_pinned(envelope, ENROLMENT_TYPE, EnrolmentStatement, pinned_root, what)
    assert isinstance(statement, EnrolmentStatement)
    endorsed = statement.station
    if endorsed.name != name:
        raise NotEndorsed(
            f"{what} is a statement for station {endorsed.name}, not for {name}: refusing it"
        )
    for key in ("signing_fingerprint", "sealing_fingerprint"):
        if getattr(endorsed, key) != getattr(served, key):
            raise NotEndorsed(
                f"central serves {key.split('_')[0]} key {getattr(served, key)} for station "
                f"{name}, but the network root endorsed {getattr(endorsed, key)}: the keys "
                "were replaced outside the network's enrolment; nothing was submitted. Ask "
                f"the station's admin which key is theirs"
            )
    moment = now or datetime.now(UTC)
    if statement.expires_at <= moment:
        raise NotEndorsed(
            f"{what} expired at {statement.expires_at.isoformat()}; the root holder must "
            "enrol the station again ('pht-network enrol')"
        )
    if statement.issued_at > moment + CLOCK_SKEW:
        raise NotEndorsed(f"{what} is issued in the future ({statement.issued_at.isoformat()})")
    entry = revocations.revokes(statement) if revocations is not None else None
    if entry is not None:
        why = f": {entry.reason}" if entry.reason else ""
        raise NotEndorsed(
            f"station {name} was revoked by the network root at "
            f"{entry.revoked_at.isoformat()}{why}; it may not be on a route"
        )
    return statement


def check_statement(envelope: Envelope, identity: PublicIdentity | None) -> EnrolmentStatement:
    """What central can check when its operator stores a statement: it is well formed,
    signed by the root it names, and endorses exactly ``identity`` (when given). Whether
    that root is *the* network's root only the parties that pin it can say."""
    try:
        claimed = unverified_payload(envelope, EnrolmentStatement)
    except (ValidationError, ValueError) as exc:
        raise NotEndorsed(f"not an enrolment statement: {exc}") from None
    try:
        statement = open_envelope(
            envelope, ENROLMENT_TYPE, claimed.root, EnrolmentStatement, "the enrolment"
        )
    except PhtError as exc:
        raise NotEndorsed(str(exc)) from None
    if identity is not None and statement.station != identity:
        raise NotEndorsed(
            f"the enrolment endorses station {statement.station.name} with signing key "
            f"{statement.station.signing_fingerprint}, not {identity.name} with "
            f"{identity.signing_fingerprint}: ask the root holder to enrol this public.json"
        )
    return statement


def check_revocations(envelope: Envelope) -> RevocationList:
    """Well formed and signed by the root it names (central's check before storing)."""
    try:
        claimed = unverified_payload(envelope, RevocationList)
        return open_envelope(
            envelope, REVOCATIONS_TYPE, claimed.root, RevocationList, "the revocation list"
        )
    except (ValidationError, ValueError) as exc:
        raise NotEndorsed(f"not a revocation list: {exc}") from None
    except PhtError as exc:
        raise NotEndorsed(str(exc)) from None


class StationEntry(BaseModel):
    """One station as central serves it: its keys and the root's statement, if given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identity: PublicIdentity
    enrolment: Envelope | None = None


class StationDirectory(BaseModel):
    """``GET /api/v1/stations``: every active station, and the newest revocation list."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stations: list[StationEntry] = Field(max_length=100_000)
    revocations: Envelope | None = None
