"""How central's transactions lock, so that racing requests leave one consistent state.

The order, everywhere (``central.hop_desk`` and ``central.service``): a transaction that
changes a train or the status of its hops first locks the train's row
(:func:`lock_train`), then reads and locks the hops it changes, afresh. On PostgreSQL that
is ``SELECT ... FOR UPDATE``; on SQLite every writing transaction already holds the
database's write lock from its ``BEGIN IMMEDIATE`` (``central.db``). A claim locks only
the one queued hop it takes (skipping locked ones) and never waits for a train, so no two
transactions wait for each other. The first writer wins; the other is told so (409).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.db import HopRow, TrainRow


def lock_train(db: Session, train_id: str) -> TrainRow | None:
    """The train's row, locked until the transaction ends and read afresh (whatever this
    session saw before): one change of a train at a time."""
    return db.get(TrainRow, train_id, with_for_update=True, populate_existing=True)


def locked_hops(db: Session, train_id: str) -> list[HopRow]:
    """Every hop of a train, locked (after its train) and read afresh, so that a claim
    cannot turn one from queued into running unseen while they are changed."""
    query = (
        select(HopRow)
        .where(HopRow.train_id == train_id)
        .order_by(HopRow.index)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(db.scalars(query))
