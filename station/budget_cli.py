"""``pht-station budget``: what each researcher key has spent of its privacy budget here."""

from __future__ import annotations

import argparse
from pathlib import Path

from station.audit import AUDIT_FILE, AuditLog
from station.config import load_config
from station.privacy_ledger import BudgetLedger
from trains.text import printable


def budget(args: argparse.Namespace) -> int:
    """Print the ledger: per researcher key and dataset, ε spent, left and releases."""
    config = load_config(Path(args.config))
    privacy = config.policy.privacy
    ledger = BudgetLedger(config.state_dir, AuditLog(config.state_dir / AUDIT_FILE))
    accounts = ledger.accounts()
    print(
        f"differential privacy: mode {privacy.mode}, {privacy.mechanism}, "
        f"ε {privacy.epsilon_per_release} per release, budget {privacy.budget} "
        "per researcher key and dataset"
        + (f", δ {privacy.delta} per release" if privacy.mechanism == "gaussian" else "")
    )
    if not accounts:
        print("no privacy budget spent yet")
        return 0
    names = {fp: s.name for fp, s in config.policy.signers.items() if s.name}
    print(f"{'researcher key':24} {'dataset':16} {'spent':>8} {'left':>8} releases")
    for a in accounts:
        left = max(privacy.budget - float(a.epsilon), 0.0)
        who = names.get(a.signer, a.signer[:23])
        print(
            f"{printable(who)[:24]:24} {printable(a.dataset)[:16]:16} {a.epsilon!s:>8} "
            f"{left:>8g} {a.releases}"
        )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``budget`` subcommand, hooked into ``station.cli``'s parser."""
    p = sub.add_parser("budget", help="the privacy budget each researcher key has spent here")
    p.add_argument("--config", default="station.toml")
    p.set_defaults(func=budget)
