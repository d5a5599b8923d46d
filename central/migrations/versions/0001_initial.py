"""The first schema: parties, trains, hops (as central shipped it before migrations).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parties",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("signing_key", sa.String(64), nullable=False),
        sa.Column("sealing_key", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("role", "name"),
    )
    op.create_table(
        "trains",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("researcher_id", sa.Integer(), sa.ForeignKey("parties.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
        sa.Column("manifest_digest", sa.String(80), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("initial_state_digest", sa.String(80), nullable=True),
        sa.Column("final_state_digest", sa.String(80), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "hops",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("train_id", sa.String(64), sa.ForeignKey("trains.id"), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input_digest", sa.String(80), nullable=True),
        sa.Column("output_digest", sa.String(80), nullable=True),
        sa.Column("receipt", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("train_id", "index"),
    )


def downgrade() -> None:
    op.drop_table("hops")
    op.drop_table("trains")
    op.drop_table("parties")
