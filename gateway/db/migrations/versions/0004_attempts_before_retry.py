"""jobs.attempts_before_retry: automatic retries count from the last retryJob

Revision ID: 0004_attempts_before_retry
Revises: 0003_sync_bytes_bigint
Create Date: 2026-11-22 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_attempts_before_retry"
down_revision: str | None = "0003_sync_bytes_bigint"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("attempts_before_retry", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("attempts_before_retry")
