"""Central's tables (SQLAlchemy 2). Central keeps metadata and blob names, never a key that
opens a state.

The schema is owned by the Alembic migrations in ``central/migrations``; :func:`open_database`
brings a database to the newest revision before anything uses it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from central.pool_ping import ping_when_idle


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Datetimes come back naive from SQLite (and from PostgreSQL ``timestamp``): all are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Party(Base):
    """A registered station, researcher or admin, with its public keys and hashed token.

    Admins have no keys: they manage identities and never sign or open anything."""

    __tablename__ = "parties"
    __table_args__ = (UniqueConstraint("role", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    signing_key: Mapped[str | None] = mapped_column(String(64))
    sealing_key: Mapped[str | None] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # a station's enrolment statement signed by the network root (DSSE envelope, JSON), as
    # the operator handed it over; central can store and serve it, not make one
    enrolment: Mapped[str | None] = mapped_column(Text, default=None)
    # a station's newest poll and the version it reports (central.presence)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    version: Mapped[str | None] = mapped_column(String(32), default=None)


class RevocationListRow(Base):
    """The root-signed revocation lists the operator stored; the highest serial is served."""

    __tablename__ = "revocation_lists"

    serial: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    envelope: Mapped[str] = mapped_column(Text)
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainRow(Base):
    __tablename__ = "trains"
    __table_args__ = (Index("ix_trains_status_expires", "status", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    researcher_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    name: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[str] = mapped_column(Text)  # the signed envelope, JSON
    manifest_digest: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(32))  # "waiting_for_state" needs 17
    error: Mapped[str | None] = mapped_column(Text, default=None)
    initial_state_digest: Mapped[str | None] = mapped_column(String(80), default=None)
    final_state_digest: Mapped[str | None] = mapped_column(String(80), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)  # the manifest's
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    blobs_pruned_at: Mapped[datetime | None] = mapped_column(default=None)


class HopRow(Base):
    __tablename__ = "hops"
    __table_args__ = (
        UniqueConstraint("train_id", "index"),
        Index("ix_hops_station_status", "station", "status"),
        Index("ix_hops_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    train_id: Mapped[str] = mapped_column(ForeignKey("trains.id"))
    index: Mapped[int]
    round: Mapped[int]
    station: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="local")  # or "aggregate"
    # JSON list of {"hop": producing hop (null: the initial state), "digest": ...}, in the
    # order the hop reads them; set when the hop is queued
    inputs: Mapped[str | None] = mapped_column(Text, default=None)
    input_digest: Mapped[str | None] = mapped_column(String(80), default=None)  # the first
    output_digest: Mapped[str | None] = mapped_column(String(80), default=None)
    receipt: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    queued_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)


def make_engine(url: str, migrate: bool = True) -> Engine:
    """An engine for ``url``; with ``migrate`` the schema is upgraded to the newest revision."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself, below

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # a writer takes the write lock up front: two hops of one round finishing at the
            # same moment must see each other's status, or the aggregate hop is never queued;
            # a reader (read_sessions) takes none and never waits for a writer
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    else:
        # every timestamp central writes is UTC; make the server read them so
        engine = create_engine(
            url,
            pool_size=10,
            max_overflow=20,
            connect_args={"options": "-c timezone=UTC"},
        )
        ping_when_idle(engine)  # not pool_pre_ping: no round trip for a busy connection
    if migrate:
        from central.migrate import upgrade

        upgrade(engine)
    return engine


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


READ_ONLY = "pht_read_only"


def read_sessions(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions over the same database for work that only reads (on SQLite they take no
    write lock). Writing through one is a bug the database does not catch: use
    ``sessions.begin()`` for anything that changes a row."""
    engine: Engine = sessions.kw["bind"]
    options: dict[str, object] = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        # one snapshot for the whole read (a train and its hops as of one moment, never a
        # train still running beside its hop already done); a read-only transaction at
        # this level never fails to serialize. SQLite's read transaction is one snapshot.
        options["isolation_level"] = "REPEATABLE READ"
    return sessionmaker(engine.execution_options(**options), expire_on_commit=False)
