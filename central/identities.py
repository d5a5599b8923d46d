"""Who may use central: stations, researchers and admins, each with an API token.

Tokens are random, shown once and stored as a sha256 hash (they carry 256 bits of entropy,
so a plain hash is enough); they may expire and may be revoked. Admins have no keys: they
manage identities and can neither open a state nor claim a hop.

A station may come with its *enrolment*: the statement the network root signed for its keys
(``trains.enrolment``), stored as given and served with ``/api/v1/stations`` together with
the newest root-signed revocation list. Central checks that a statement is well formed and
endorses the keys it is stored with (to catch an operator's mix-up); whether its root is the
network's is for the researchers and stations that pin the root to decide.

A token that just worked is remembered for ``token_cache_s`` (1 s by default), so a station
asking several times a second is not looked up in the database each time. Revoking through
the process that serves (``/api/v1/admin/...``) forgets the party's tokens at once; a
revocation another process writes (``pht-central admin revoke``, a second central on the
same PostgreSQL) is heard within ``token_cache_s``. 0 turns the cache off.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from central.db import Party, RevocationListRow, as_utc, utcnow
from central.errors import ServiceError, not_found
from trains.enrolment import (
    StationDirectory,
    StationEntry,
    check_revocations,
    check_statement,
)
from trains.errors import NotEndorsed
from trains.keys import PublicIdentity, valid_name
from trains.signing import Envelope

ROLES = ("station", "researcher", "admin")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    id: int
    role: str
    name: str


def public_identity(row: Party) -> PublicIdentity:
    assert row.signing_key is not None and row.sealing_key is not None
    return PublicIdentity(name=row.name, signing_key=row.signing_key, sealing_key=row.sealing_key)


class TokenCache:
    """Tokens that just authenticated, by hash: each entry lives ``ttl_s`` at most and
    never past its token's expiry."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: dict[str, tuple[Caller, float]] = {}

    def get(self, token_hash: str) -> Caller | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if self.clock() >= entry[1]:
            self._entries.pop(token_hash, None)
            return None
        return entry[0]

    def put(self, token_hash: str, caller: Caller, expires_at: datetime | None) -> None:
        if self.ttl_s <= 0:
            return
        until = self.clock() + self.ttl_s
        if expires_at is not None:
            until = min(until, self.clock() + (as_utc(expires_at) - utcnow()).total_seconds())
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[token_hash] = (caller, until)

    def forget(self, party_id: int) -> None:
        for token_hash, (caller, _) in list(self._entries.items()):
            if caller.id == party_id:
                self._entries.pop(token_hash, None)


class Identities:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        reads: sessionmaker[Session] | None = None,
        token_cache_s: float = 1.0,
    ) -> None:
        self.sessions = sessions
        self.reads = reads or sessions
        self.cache = TokenCache(token_cache_s)

    def register(
        self,
        role: str,
        name: str,
        identity: PublicIdentity | None = None,
        expires_at: datetime | None = None,
        enrolment: Envelope | None = None,
    ) -> str:
        """Register a party; return its API token (shown once, stored hashed). A station
        may come with the network root's ``enrolment`` of exactly these keys."""
        if enrolment is not None:
            if role != "station" or identity is None:
                raise ServiceError(422, "enrolment_invalid", "only a station has an enrolment")
            _checked(enrolment, identity)
        if role not in ROLES:
            raise ServiceError(422, "bad_role", f"unknown role {role!r}; use one of {ROLES}")
        if role != "admin" and identity is None:
            raise ServiceError(422, "keys_required", f"a {role} is registered with its public keys")
        if not valid_name(name):
            raise ServiceError(
                422,
                "bad_name",
                f"{name[:80]!r} is not a valid name: lower-case letters, digits, '.', '_' and "
                "'-', starting with a letter or digit, at most 63 characters",
            )
        if expires_at is not None and as_utc(expires_at) <= utcnow():
            raise ServiceError(422, "expired", "the expiry lies in the past")
        token = f"pht_{role[:3]}_" + secrets.token_urlsafe(32)
        with self.sessions.begin() as db:
            exists = db.scalar(select(Party).where(Party.role == role, Party.name == name))
            if exists is not None:
                raise ServiceError(409, "exists", f"a {role} named {name!r} exists")
            db.add(
                Party(
                    role=role,
                    name=name,
                    signing_key=None if identity is None else identity.signing_key,
                    sealing_key=None if identity is None else identity.sealing_key,
                    token_hash=hash_token(token),
                    expires_at=expires_at,
                    enrolment=None if enrolment is None else enrolment.model_dump_json(),
                )
            )
        return token

    def cached(self, token: str) -> Caller | None:
        """The caller of a token that authenticated a moment ago (no database)."""
        return self.cache.get(hash_token(token))

    def authenticate(self, token: str) -> Caller | None:
        """The caller a token belongs to, unless it is unknown, revoked or expired."""
        return self.authenticate_hash(hash_token(token))

    def authenticate_hash(self, token_hash: str) -> Caller | None:
        """:meth:`authenticate` for a token known by its hash (a dashboard session)."""
        found = self.cache.get(token_hash)
        if found is not None:
            return found
        with self.reads() as db:
            row = db.execute(
                select(Party.id, Party.role, Party.name, Party.expires_at).where(
                    Party.token_hash == token_hash,
                    Party.revoked_at.is_(None),
                    or_(Party.expires_at.is_(None), Party.expires_at > utcnow()),
                )
            ).first()
        if row is None:
            return None
        caller = Caller(row.id, row.role, row.name)
        self.cache.put(token_hash, caller, row.expires_at)
        return caller

    def revoke(self, name: str, role: str | None = None) -> str:
        """Revoke a party's token at once; return its role. Its trains and hops stay."""
        with self.sessions.begin() as db:
            query = select(Party).where(Party.name == name, Party.revoked_at.is_(None))
            if role is not None:
                query = query.where(Party.role == role)
            found = list(db.scalars(query))
            if not found:
                raise not_found(f"an active party named {name!r}")
            if len(found) > 1:
                roles = ", ".join(sorted(p.role for p in found))
                raise ServiceError(
                    409, "ambiguous", f"{name!r} is a {roles}; say which role to revoke"
                )
            db.execute(update(Party).where(Party.id == found[0].id).values(revoked_at=utcnow()))
        self.cache.forget(found[0].id)
        return found[0].role

    def parties(self) -> list[dict[str, object]]:
        """Everyone registered, without token hashes."""
        with self.reads() as db:
            rows = db.scalars(select(Party).order_by(Party.role, Party.name))
            return [
                {
                    "role": p.role,
                    "name": p.name,
                    "signing_key": None
                    if p.signing_key is None
                    else public_identity(p).signing_fingerprint,
                    "created_at": as_utc(p.created_at).isoformat(),
                    "expires_at": None
                    if p.expires_at is None
                    else as_utc(p.expires_at).isoformat(),
                    "revoked": p.revoked_at is not None,
                }
                for p in rows
            ]

    def directory(self) -> StationDirectory:
        """Every active station with its enrolment, and the newest revocation list."""
        with self.reads() as db:
            rows = db.scalars(
                select(Party)
                .where(Party.role == "station", Party.revoked_at.is_(None))
                .order_by(Party.name)
            )
            stations = [
                StationEntry(
                    identity=public_identity(row),
                    enrolment=None
                    if row.enrolment is None
                    else Envelope.model_validate_json(row.enrolment),
                )
                for row in rows
            ]
            newest = db.scalar(select(RevocationListRow).order_by(RevocationListRow.serial.desc()))
        revocations = None if newest is None else Envelope.model_validate_json(newest.envelope)
        return StationDirectory(stations=stations, revocations=revocations)

    def set_enrolment(self, enrolment: Envelope) -> str:
        """Store a (renewed) enrolment for the active station it names; return the name."""
        with self.sessions.begin() as db:
            try:
                name = check_statement(enrolment, None).station.name
            except NotEndorsed as exc:
                raise ServiceError(422, "enrolment_invalid", str(exc)) from None
            row = db.scalar(
                select(Party).where(
                    Party.role == "station", Party.name == name, Party.revoked_at.is_(None)
                )
            )
            if row is None:
                raise not_found(f"an active station named {name!r}")
            _checked(enrolment, public_identity(row))
            row.enrolment = enrolment.model_dump_json()
        return name

    def set_revocations(self, revocations: Envelope) -> int:
        """Store a root-signed revocation list newer than every one stored; return its serial."""
        try:
            listing = check_revocations(revocations)
        except NotEndorsed as exc:
            raise ServiceError(422, "revocations_invalid", str(exc)) from None
        with self.sessions.begin() as db:
            newest = db.scalar(
                select(RevocationListRow.serial).order_by(RevocationListRow.serial.desc())
            )
            if newest is not None and listing.serial <= newest:
                raise ServiceError(
                    409,
                    "stale",
                    f"central holds revocation list {newest}; this is {listing.serial}",
                )
            db.add(RevocationListRow(serial=listing.serial, envelope=revocations.model_dump_json()))
        return listing.serial


def _checked(enrolment: Envelope, identity: PublicIdentity) -> None:
    try:
        check_statement(enrolment, identity)
    except NotEndorsed as exc:
        raise ServiceError(422, "enrolment_invalid", str(exc)) from None
