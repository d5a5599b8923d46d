"""When each station last asked central for work, and the software version it reports
(shown on the operator's dashboard).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("parties") as table:
        table.add_column(sa.Column("last_seen_at", sa.DateTime(), nullable=True))
        table.add_column(sa.Column("version", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("parties") as table:
        table.drop_column("version")
        table.drop_column("last_seen_at")
