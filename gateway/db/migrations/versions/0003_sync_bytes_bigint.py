"""sync_runs.bytes as a 64-bit integer (a study can hold more than 2 GiB)

Revision ID: 0003_sync_bytes_bigint
Revises: 0002_deid
Create Date: 2026-11-22 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_sync_bytes_bigint"
down_revision: str | None = "0002_deid"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.alter_column("bytes", existing_type=sa.Integer(), type_=sa.BigInteger())


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.alter_column("bytes", existing_type=sa.BigInteger(), type_=sa.Integer())
