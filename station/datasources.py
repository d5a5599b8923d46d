"""Data sources by name: each is materialised afresh, for one run only, as one file.

A train sees ``/pht/data/<name>/data.csv`` or ``/pht/data/<name>/data.parquet``. Files are
copied (never linked), queries are run at materialisation time, so a run sees a snapshot
and nothing it does reaches the source.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from station.config import CsvSource, ParquetSource, SqlSource, StationConfig
from trains.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


def materialise(config: StationConfig, name: str, target: Path) -> Path:
    """Write dataset ``name`` into folder ``target``; return the file written."""
    source = _source(config, name)
    target.mkdir(parents=True, exist_ok=True)
    if isinstance(source, CsvSource | ParquetSource):
        path = config.resolve(source.path)
        out = target / f"data.{source.type}"
        try:
            shutil.copyfile(path, out)
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
