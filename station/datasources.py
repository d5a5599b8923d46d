"""Data sources by name: each is materialised afresh, for one run only, as one file.

A train sees ``/pht/data/<name>/data.csv`` or ``/pht/data/<name>/data.parquet``. Queries
are run at materialisation time. A file source is put into the hop's work folder without
a copy where the filesystem allows it, else copied (:func:`place_file`): a reflink (a
copy-on-write clone: a true snapshot), else a hard link when the source is read-only to
everyone (mode without write bits: it cannot change without its owner's chmod first),
else a copy. A linked file is the source itself: nothing may write or chmod it (the hop
leaves files with more than one link as they are). The train never sees this folder:
``station/input_volume.py`` copies it into a Docker volume the train mounts read-only,
so nothing it does reaches the source.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from station.config import CsvSource, ParquetSource, SqlSource, StationConfig
from trains.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
WRITABLE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
READABLE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH  # the container's user reads it as is


def materialise(config: StationConfig, name: str, target: Path) -> Path:
    """Write dataset ``name`` into folder ``target``; return the file written."""
    source = _source(config, name)
    target.mkdir(parents=True, exist_ok=True)
    if isinstance(source, CsvSource | ParquetSource):
        path = config.resolve(source.path)
        out = target / f"data.{source.type}"
        try:
            place_file(path, out)
        except OSError as exc:
            raise ConfigError(
                f"dataset {name!r}: cannot read {path} ({exc.strerror}); check the file "
                "and that the station's user may read it"
            ) from None
        return out
    frame = _query(name, source)
    out = target / f"data.{source.format}"
    if source.format == "csv":
        frame.to_csv(out, index=False)
    else:
        _to_parquet(name, frame, out)
    return out


def place_file(source: Path, target: Path) -> str:
    """Put ``source``'s bytes at ``target`` (a new name) the cheapest safe way; return how:
    ``reflink``, ``link`` (a source readable by all and writable by none) or ``copy``."""
    with source.open("rb") as src:
        if _reflink(src.fileno(), target):
            return "reflink"
        opened = os.fstat(src.fileno())
        if not opened.st_mode & WRITABLE and opened.st_mode & READABLE == READABLE:
            try:
                os.link(source, target)
            except OSError:  # another filesystem, protected_hardlinks: copy
                pass
            else:
                linked = target.stat()
                if (linked.st_dev, linked.st_ino) == (opened.st_dev, opened.st_ino):
                    return "link"
                target.unlink()  # the path now names another file than we checked: copy
        with target.open("xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return "copy"


def _reflink(source_fd: int, target: Path) -> bool:
    """Clone ``source_fd`` into a new ``target`` (FICLONE: btrfs, xfs, ...); False where
    the filesystem cannot (ext4, tmpfs, across filesystems), leaving no ``target``."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.ioctl(fd, FICLONE, source_fd)
    except OSError:
        os.close(fd)
        target.unlink()
        return False
    os.close(fd)
    return True


def check_readable(config: StationConfig, name: str) -> str:
    """A one-line description of dataset ``name`` if it can be read; raises ConfigError.

    Used by ``pht-station doctor``; says how many rows, never what is in them.
    """
    source = _source(config, name)
    if isinstance(source, SqlSource):
        return f"sql query returns {len(_query(name, source))} rows"
    path = config.resolve(source.path)
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ConfigError(
            f"dataset {name!r}: cannot read {path} ({exc.strerror}); check the path in "
            f"[datasets.{name}] and the file's permissions"
        ) from None
    return f"{source.type} file {path} ({path.stat().st_size} bytes)"


def _source(config: StationConfig, name: str) -> CsvSource | ParquetSource | SqlSource:
    try:
        return config.datasets[name]
    except KeyError:
        raise ConfigError(
            f"no dataset {name!r} in the station config; add a [datasets.{name}] table"
        ) from None


def _query(name: str, source: SqlSource) -> pd.DataFrame:
    import pandas as pd
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = sqlalchemy.create_engine(source.url)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(
            f"dataset {name!r}: the url is not usable ({type(exc).__name__}: {exc}); "
            f"fix [datasets.{name}].url (a SQLAlchemy URL)"
        ) from None
    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sqlalchemy.text(source.query), connection)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ConfigError(
            f"dataset {name!r}: the query failed ({type(exc).__name__}: {reason}); "
            f"check that the database is up and [datasets.{name}].query is valid"
        ) from None
    finally:
        engine.dispose()


def _to_parquet(name: str, frame: pd.DataFrame, out: Path) -> None:
    try:
        frame.to_parquet(out, index=False)
    except ImportError:
        raise ConfigError(
            f"dataset {name!r} asks for format = 'parquet' but pyarrow is not installed; "
            "pip install pyarrow, or use format = 'csv'"
        ) from None
