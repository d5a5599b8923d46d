"""Schema migrations (Alembic), run by ``pht-central serve`` on start and ``pht-central db``.

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
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

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


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision``; cheap when it is already there."""
    if revision == "head" and current(engine) == head():
        return
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        config = _config(connection)
        tables = set(inspect(connection).get_table_names())
        if "alembic_version" not in tables and "parties" in tables:
            command.stamp(config, "0001")
        command.upgrade(config, revision)
