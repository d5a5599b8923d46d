"""A throwaway PostgreSQL cluster for tests and benchmarks (real server, 127.0.0.1 only).

``shared_cluster()`` starts one cluster per process on a free port (``initdb`` as the
``postgres`` user when run as root), stops it at exit, and ``fresh_database()`` gives each
test its own empty database. Set ``PHT_REQUIRE_POSTGRES=1`` to make a missing PostgreSQL an
error instead of a reason to skip (CI does).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from trains.errors import PhtError


class PostgresUnavailable(PhtError):
    """PostgreSQL binaries are missing or the throwaway cluster did not start."""


def _bin_dir() -> Path:
    if found := shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (no pg_ctl); install it with "
            "'apt-get install -y postgresql'"
        )
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One ``initdb``-made cluster in a temporary folder, trusting local connections."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="pht-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "postgres"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{args[0]} failed ({done.returncode}): {done.stderr.strip()[-800:]}"
            )

    def start(self) -> PgCluster:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        else:
            self.user = os.environ.get("USER", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.root / "server.log"),
            "start",
        )
        return self

    def stop(self) -> None:
        if self.data.exists():
            with contextlib.suppress(PostgresUnavailable):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database; return its SQLAlchemy URL."""
        import psycopg

        name = name or f"pht_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


_shared: PgCluster | None = None


def shared_cluster() -> PgCluster:
    """The process's one throwaway cluster, started on first use and stopped at exit."""
    global _shared
    if _shared is None:
        cluster = PgCluster()
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        atexit.register(cluster.stop)
        _shared = cluster
    return _shared


def fresh_database() -> str:
    return shared_cluster().create_database()


def postgres_or_skip() -> str:
    """For tests: a fresh database URL, else skip (or fail with PHT_REQUIRE_POSTGRES=1)."""
    import pytest

    try:
        return fresh_database()
    except PostgresUnavailable as exc:
        if os.environ.get("PHT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL tests must run here but cannot: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")


def database_url_for(kind: str, tmp_path: Path) -> str:
    """For a fixture parametrised over ``sqlite`` and ``postgresql``: the URL to use."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return postgres_or_skip()
