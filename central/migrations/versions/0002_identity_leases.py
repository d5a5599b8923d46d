"""Token expiry and revocation, keyless admins, hop leases, blob retention; trains.status
widened (PostgreSQL refused "waiting_for_state" in 16 characters; SQLite never checked).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("parties") as table:
        table.alter_column("signing_key", existing_type=sa.String(64), nullable=True)
        table.alter_column("sealing_key", existing_type=sa.String(64), nullable=True)
        table.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
        table.add_column(sa.Column("revoked_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("trains") as table:
        table.alter_column("status", existing_type=sa.String(16), type_=sa.String(32))
        table.add_column(sa.Column("blobs_pruned_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("hops") as table:
        table.add_column(sa.Column("queued_at", sa.DateTime(), nullable=True))
        table.add_column(sa.Column("lease_expires_at", sa.DateTime(), nullable=True))
        table.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    op.create_index("ix_hops_station_status", "hops", ["station", "status"])
    op.create_index("ix_hops_status_lease", "hops", ["status", "lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_hops_status_lease", "hops")
    op.drop_index("ix_hops_station_status", "hops")
    with op.batch_alter_table("hops") as table:
        table.drop_column("attempts")
        table.drop_column("lease_expires_at")
        table.drop_column("queued_at")
    with op.batch_alter_table("trains") as table:
        table.drop_column("blobs_pruned_at")
        table.alter_column("status", existing_type=sa.String(32), type_=sa.String(16))
    with op.batch_alter_table("parties") as table:
        table.drop_column("revoked_at")
        table.drop_column("expires_at")
