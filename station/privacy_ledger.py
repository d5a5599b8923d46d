"""The privacy budget ledger: how much ε (and δ) each researcher key has spent on each dataset.

Kept in ``<state_dir>/privacy/ledger.json`` (written atomically, so a restart finds the last
charge or the one before, never half of one) and every charge and refusal appended to the
audit log. Amounts are decimals (``Decimal(str(ε))``): ten charges of 0.1 are exactly 1.0,
so a budget is never overrun, or refused early, by binary rounding.

Check and charge happen under one lock (``flock`` on ``ledger.lock``, held per call on its
own open file, so it excludes other threads and other processes alike): two releases at
once cannot both pass on the last of a budget. The ledger is written before the audit line
(a crash between them over-counts, never under-counts), and a hop that is run again after
a crash is charged again (conservative: the first run's output never left).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from station.audit import AuditLog
from trains.errors import BudgetExceeded, ConfigError

LEDGER_DIR = "privacy"
LEDGER_FILE = "ledger.json"
FORMAT = 1


@dataclass(frozen=True)
class Account:
    """What one researcher key has spent on one dataset here."""

    signer: str
    dataset: str
    epsilon: Decimal
    delta: Decimal
    releases: int


class BudgetLedger:
    """The station's ledger in ``<state_dir>/privacy``; charges are audited in ``audit``."""

    def __init__(self, state_dir: Path, audit: AuditLog) -> None:
        self.folder = state_dir / LEDGER_DIR
        self.path = self.folder / LEDGER_FILE
        self.audit = audit

    def accounts(self) -> list[Account]:
        """Every account, by signer then dataset (read under the lock: never a torn view)."""
        with self._locked():
            raw = self._read()
        found = [_account(s, d, entry) for s, by in raw.items() for d, entry in by.items()]
        return sorted(found, key=lambda a: (a.signer, a.dataset))

    def account(self, signer: str, dataset: str) -> Account:
        with self._locked():
            return _account(signer, dataset, self._read().get(signer, {}).get(dataset, {}))

    def charge(
        self,
        *,
        signer: str,
        datasets: list[str],
        epsilon: float,
        delta: float,
        budget: float,
        train_id: str,
        hop: int,
    ) -> None:
        """Spend ``epsilon`` (and ``delta``) of ``signer``'s budget on every one of ``datasets``,
        or raise BudgetExceeded with the numbers and charge nothing at all."""
        asked, total = _decimal(epsilon), _decimal(budget)
        with self._locked():
            raw = self._read()
            mine = raw.setdefault(signer, {})
            for dataset in sorted(set(datasets)):
                spent = _account(signer, dataset, mine.get(dataset, {})).epsilon
                if spent + asked > total:
                    remaining = max(total - spent, Decimal(0))
                    self.audit.append(
                        "privacy_refused",
                        train_id=train_id,
                        hop=hop,
                        signer=signer,
                        dataset=dataset,
                        epsilon=str(asked),
                        spent=str(spent),
                        budget=str(total),
                    )
                    raise BudgetExceeded(
                        f"this release asks ε = {asked} of the privacy budget on dataset "
                        f"{dataset!r}; this researcher key has spent {spent} of {total}, "
                        f"{remaining} remains. Nothing was released or charged; ask the "
                        "station's admin for more budget, or release less often"
                    )
            for dataset in sorted(set(datasets)):
                account = _account(signer, dataset, mine.get(dataset, {}))
                mine[dataset] = {
                    "epsilon": str(account.epsilon + asked),
                    "delta": str(account.delta + _decimal(delta)),
                    "releases": account.releases + 1,
                }
            self._write(raw)
            for dataset in sorted(set(datasets)):
                self.audit.append(
                    "privacy_charged",
                    train_id=train_id,
                    hop=hop,
                    signer=signer,
                    dataset=dataset,
                    epsilon=str(asked),
                    delta=str(_decimal(delta)),
                    spent=mine[dataset]["epsilon"],
                    budget=str(total),
                )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.folder / "ledger.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the file releases the lock

    def _read(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise ConfigError(
                f"{self.path} is not readable JSON; restore it from the backup of the state "
                "folder (the audit log's privacy_charged lines say what was spent)"
            ) from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ConfigError(f"{self.path} is not a privacy ledger of format {FORMAT}")
        accounts: dict[str, dict[str, dict[str, Any]]] = document["accounts"]
        return accounts

    def _write(self, accounts: dict[str, dict[str, dict[str, Any]]]) -> None:
        data = json.dumps({"format": FORMAT, "accounts": accounts}, indent=2, sort_keys=True)
        # a name of its own per writer: the lock makes this one writer, but a tmp file
        # name that cannot collide keeps a broken lock from corrupting the ledger too
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(data + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


def _decimal(value: float) -> Decimal:
    # str() of a float is its shortest repr: 0.1 -> Decimal("0.1"), not 0.1000000000000000055
    return Decimal(str(value))


def _account(signer: str, dataset: str, entry: dict[str, Any]) -> Account:
    try:
        return Account(
            signer,
            dataset,
            Decimal(str(entry.get("epsilon", "0"))),
            Decimal(str(entry.get("delta", "0"))),
            int(entry.get("releases", 0)),
        )
    except (ArithmeticError, TypeError, ValueError):
        raise ConfigError(
            f"the privacy ledger's account of {signer} on {dataset!r} is damaged; restore the "
            "state folder from its backup"
        ) from None
