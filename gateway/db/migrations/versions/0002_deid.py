"""de-identification mapping table

Revision ID: 0002_deid
Revises: 0001
Create Date: 2026-11-22 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_deid"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deid_mappings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project", sa.String(length=128), nullable=False),
        sa.Column("lookup", sa.String(length=64), nullable=False),
        sa.Column("study_ref", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_deid_mappings_lookup"), "deid_mappings", ["lookup"], unique=False)
    op.create_index(
        "ux_deid_mappings_row", "deid_mappings", ["project", "lookup", "study_ref"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_deid_mappings_row", table_name="deid_mappings")
    op.drop_index(op.f("ix_deid_mappings_lookup"), table_name="deid_mappings")
    op.drop_table("deid_mappings")
