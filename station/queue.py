"""The station's own record of every hop it was offered, persisted as JSON files
(``station.hop_record`` says what a record holds and how its state moves), and the
outbox of sealed outputs not yet delivered.

Central knows a claimed hop only as ``running``; everything the station still owes it lives
here, so that a restart loses nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from central.messages import HopOffer
from station.hop_record import (
    OPEN,
    RECORD_ID,
    HopRecord,
    HopState,
    is_live,
    is_record_id,
    now,
    record_id,
    split_id,
    summary_line,
)
from trains.errors import ConfigError
from trains.signing import Envelope

# the record's names, where the station has always imported them from
__all__ = [
    "OPEN",
    "HopQueue",
    "HopRecord",
    "HopState",
    "is_live",
    "is_record_id",
    "now",
    "record_id",
    "summary_line",
]

log = logging.getLogger("pht.station")
_LOCK_FILE = ".queue.lock"
_PREFIX = re.compile(r"^[0-9a-f-]{1,43}$")  # what 'pending' prints, or the start of it


class HopQueue:
    """Hop records in ``<state_dir>/hops`` (those the daemon's loop still acts on) and
    ``<state_dir>/ended`` (the rest: read only to list or look up), sealed outputs and
    receipts in ``outbox``.

    A hop's record is in one of the two folders, chosen by :func:`is_live` at every save;
    the loop reads ``hops`` only, so a step costs O(open hops), never O(history). A save
    writes the new place first, then removes the old: a crash between leaves two copies,
    and the one saved last (``updated_at``; on a tie the live one) is the record. Every
    write holds the queue's lock (``.queue.lock``, fcntl: across processes, so the
    daemon, ``pht-station`` and the console never lose each other's change)."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir
        self.hops = state_dir / "hops"
        self.ended = state_dir / "ended"
        self.outbox = state_dir / "outbox"
        for folder in (state_dir, self.hops, self.ended, self.outbox):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._holding = threading.local()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the queue's lock (re-entrant in one thread): no other process or thread
        writes a record meanwhile. Held for a read-modify-write, never across a slow step."""
        if getattr(self._holding, "depth", 0):
            self._holding.depth += 1
            try:
                yield
            finally:
                self._holding.depth -= 1
            return
        fd = os.open(self.root / _LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._holding.depth = 1
            try:
                yield
            finally:
                self._holding.depth = 0
        finally:
            os.close(fd)  # releases the lock

    def _path(self, rid: str, ended: bool = False) -> Path:
        """The record's file; an id that is not ``<train id>-<hop>`` never becomes a path."""
        return (self.ended if ended else self.hops) / f"{record_id(*split_id(rid))}.json"

    def save(self, record: HopRecord) -> HopRecord:
        """Write the record whole. A caller that read it earlier and may race another
        writer (the admin's action, a pre-pull) uses :meth:`update` instead."""
        with self.locked():
            record.updated_at = now()
            self._place(record)
        return record

    def update(self, rid: str, change: Callable[[HopRecord], bool]) -> HopRecord:
        """Read the record afresh, ``change`` it and save it, all under the lock, so that
        no other writer's change in between is lost. ``change`` returns False to leave
        the record as it is, or raises to refuse (nothing is written)."""
        with self.locked():
            record = self.get(rid)
            return self.save(record) if change(record) else record

    def _place(self, record: HopRecord) -> None:
        live = is_live(record)
        _write_atomic(
            self._path(record.id, ended=not live), record.model_dump_json(indent=2).encode()
        )
        self._path(record.id, ended=live).unlink(missing_ok=True)

    def all(self) -> list[HopRecord]:
        """Every record, live and ended (for listing: it reads the whole history)."""
        with self.locked():  # no record moves between the folders while both are read
            found: dict[str, HopRecord] = {}
            for path in [*sorted(self.ended.glob("*.json")), *sorted(self.hops.glob("*.json"))]:
                record = _read(path)
                if record is not None:
                    found[record.id] = _later(found.get(record.id), record)
        return sorted(found.values(), key=lambda r: (r.received_at, r.hop))

    def live(self, *states: HopState) -> list[HopRecord]:
        """The records the daemon's loop still acts on (only ``hops`` is read), those in
        ``states`` if any are given, oldest first."""
        records = []
        for path in sorted(self.hops.glob("*.json")):
            record = _read(path)
            if record is not None and (
                (self.ended / path.name).exists() or not is_live(record)
            ):  # a crash left two copies, or an older layout: settle it, once
                record = self._settle(record.id)
            if record is not None and is_live(record) and (not states or record.state in states):
                records.append(record)
        return sorted(records, key=lambda r: (r.received_at, r.hop))

    def _settle(self, rid: str) -> HopRecord | None:
        """One copy of the record, in the folder it belongs in."""
        with self.locked():
            record = self._exact(rid)
            if record is not None:
                self._place(record)
            return record

    def in_state(self, *states: HopState) -> list[HopRecord]:
        """Every record in one of ``states``, live or ended (the loop uses :meth:`live`)."""
        return [r for r in self.all() if r.state in states]

    def _exact(self, rid: str) -> HopRecord | None:
        """The record of a whole id, wherever it is; two copies: the one saved last."""
        live = _read(self._path(rid))
        ended = _read(self._path(rid, ended=True))
        return _later(ended, live) if ended is not None and live is not None else live or ended

    def get(self, rid: str) -> HopRecord:
        """A record by its id or any unique prefix of it (as ``pending`` prints them)."""
        if not _PREFIX.fullmatch(rid):
            raise ConfigError(f"{rid[:80]!r} is not a hop id; 'pht-station pending' lists them")
        if RECORD_ID.fullmatch(rid):
            record = self._exact(rid)
            if record is not None:
                return record
        # the prefix is hex digits and dashes only (checked above): no glob pattern in it
        names = {p.stem for folder in (self.hops, self.ended) for p in folder.glob(f"{rid}*.json")}
        if len(names) == 1:
            record = self._exact(names.pop())
            if record is not None:
                return record
        if len(names) <= 1:
            raise ConfigError(f"no hop {rid!r} here; 'pht-station pending' lists them")
        raise ConfigError(f"{rid!r} names {len(names)} hops; give more of the id")

    def knows(self, offer: HopOffer) -> bool:
        rid = record_id(offer.train_id, offer.hop)
        return self._path(rid).exists() or self._path(rid, ended=True).exists()

    # -- the outbox: sealed output and signed receipt, kept until central accepts both --

    def sealed_path(self, record: HopRecord) -> Path:
        return self.outbox / f"{record.id}.sealed"

    def receipt_path(self, record: HopRecord) -> Path:
        return self.outbox / f"{record.id}.receipt.json"

    def store_output(self, record: HopRecord, sealed: Path, receipt: Envelope) -> None:
        """Keep the sealed output file (moved in, fsynced) and its receipt until delivered."""
        with sealed.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(sealed, self.sealed_path(record))
        _write_atomic(self.receipt_path(record), receipt.model_dump_json().encode())

    def load_output(self, record: HopRecord) -> tuple[Path, Envelope]:
        """The kept sealed output (a file: it may be large) and its receipt."""
        receipt = Envelope.model_validate_json(self.receipt_path(record).read_text())
        return self.sealed_path(record), receipt

    def clear_output(self, record: HopRecord) -> None:
        self.sealed_path(record).unlink(missing_ok=True)
        self.receipt_path(record).unlink(missing_ok=True)


def _read(path: Path) -> HopRecord | None:
    """The record in ``path``; None if it is gone (moved meanwhile) or unreadable."""
    try:
        return HopRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:  # a damaged file must not stop every other hop
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path.with_suffix(".unreadable"))
        log.error("hop record %s is unreadable (%s); set aside", path.name, type(exc).__name__)
        return None


def _later(first: HopRecord | None, second: HopRecord) -> HopRecord:
    """Of two copies of one record, the one saved last; on a tie the live one."""
    if first is None or second.updated_at > first.updated_at:
        return second
    if first.updated_at > second.updated_at:
        return first
    return second if is_live(second) else first


def _write_atomic(path: Path, data: bytes) -> None:
    """Write then rename, fsynced: a crash leaves the old file or the new, never half."""
    # a name of this writer's own: two processes saving one record must not share it
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
