"""Who may use central: stations, researchers and admins, each with an API token.

Tokens are random, shown once and stored as a sha256 hash (they carry 256 bits of entropy,
so a plain hash is enough); they may expire and may be revoked. Admins have no keys: they
manage identities and can neither open a state nor claim a hop.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from central.db import Party, as_utc, utcnow
from central.errors import ServiceError, not_found
from trains.keys import PublicIdentity

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


class Identities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def register(
        self,
        role: str,
        name: str,
        identity: PublicIdentity | None = None,
        expires_at: datetime | None = None,
    ) -> str:
        """Register a party; return its API token (shown once, stored hashed)."""
        if role not in ROLES:
            raise ServiceError(422, "bad_role", f"unknown role {role!r}; use one of {ROLES}")
        if role != "admin" and identity is None:
            raise ServiceError(422, "keys_required", f"a {role} is registered with its public keys")
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
                )
            )
        return token

    def authenticate(self, token: str) -> Caller | None:
        """The caller a token belongs to, unless it is unknown, revoked or expired."""
        with self.sessions() as db:
            party = db.scalar(
                select(Party).where(
                    Party.token_hash == hash_token(token),
                    Party.revoked_at.is_(None),
                    or_(Party.expires_at.is_(None), Party.expires_at > utcnow()),
                )
            )
            return None if party is None else Caller(party.id, party.role, party.name)

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
            return found[0].role

    def parties(self) -> list[dict[str, object]]:
        """Everyone registered, without token hashes."""
        with self.sessions() as db:
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

    def stations(self) -> list[PublicIdentity]:
        with self.sessions() as db:
            rows = db.scalars(
                select(Party)
                .where(Party.role == "station", Party.revoked_at.is_(None))
                .order_by(Party.name)
            )
            return [public_identity(row) for row in rows]
