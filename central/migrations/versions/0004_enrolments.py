"""Network enrolment: each station's statement signed by the network root (as the operator
gave it), and the newest revocation list the root signed. Central stores and serves both;
it cannot make either.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("parties") as table:
        table.add_column(sa.Column("enrolment", sa.Text(), nullable=True))
    op.create_table(
        "revocation_lists",
        sa.Column("serial", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("stored_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("revocation_lists")
    with op.batch_alter_table("parties") as table:
        table.drop_column("enrolment")
