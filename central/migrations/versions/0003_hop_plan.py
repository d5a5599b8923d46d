"""Parallel rounds: each hop's kind and its inputs (a JSON list of the producing hop and the
digest of each state it reads); each train's expiry, for the expiry sweep.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hops") as table:
        table.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default=sa.text("'local'"))
        )
        table.add_column(sa.Column("inputs", sa.Text(), nullable=True))
    with op.batch_alter_table("trains") as table:
        table.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
    op.create_index("ix_trains_status_expires", "trains", ["status", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_trains_status_expires", "trains")
    with op.batch_alter_table("trains") as table:
        table.drop_column("expires_at")
    with op.batch_alter_table("hops") as table:
        table.drop_column("inputs")
        table.drop_column("kind")
