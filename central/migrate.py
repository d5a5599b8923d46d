"""Schema migrations (Alembic), run by ``pht-central serve`` on start and ``pht-central db``.

The database carries its schema revision (``alembic_version``). A newer central upgrades
an older database; an older central refuses a database a newer one has upgraded (a
revision it does not know), before touching anything: migrations only go forward.

Several central processes may start at once against one PostgreSQL: they take an advisory
lock so exactly one migrates while the others wait. A database created before migrations
existed (tables but no ``alembic_version``) is stamped at the first revision, then upgraded.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from trains.errors import PhtError

_MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x706874  # "pht"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    head_revision = ScriptDirectory(str(_MIGRATIONS)).get_current_head()
    assert head_revision is not None
    return head_revision


class DatabaseTooNew(PhtError):
    """The database was upgraded by a newer central than this one."""


def known(revision: str | None) -> str | None:
    """``revision`` if this code has it (or the database has none yet), else refuse."""
    if revision is None:
        return None
    try:
        if ScriptDirectory(str(_MIGRATIONS)).get_revision(revision) is not None:
            return revision
    except CommandError:
        pass
    raise DatabaseTooNew(
        f"the database is at schema revision {revision!r}, which this pht-central does not "
        f"know (its newest is {head()!r}): a newer pht-central has upgraded it. Run that "
        "newer pht-central (every process sharing this database), or restore the backup "
        "taken before the upgrade to run this one; a database is never migrated back"
    )


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision``; cheap when it is already there. Raises
    :class:`DatabaseTooNew` if a newer central has upgraded it."""
    if revision == "head" and known(current(engine)) == head():
        return
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        # again under the lock: a newer central may have migrated while we waited for it
        known(MigrationContext.configure(connection).get_current_revision())
        config = _config(connection)
        tables = set(inspect(connection).get_table_names())
        if "alembic_version" not in tables and "parties" in tables:
            command.stamp(config, "0001")
        command.upgrade(config, revision)
