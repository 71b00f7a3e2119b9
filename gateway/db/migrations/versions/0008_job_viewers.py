"""Recipients of de-identified studies: job_viewers

Revision ID: 0008_job_viewers
Revises: 0007_key_index
Create Date: 2026-12-02 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_job_viewers"
down_revision: str | None = "0007_key_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_viewers",
        sa.Column(
            "job_id",
            sa.String(64),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user_id", sa.String(128), primary_key=True),
    )
    op.create_index("ix_job_viewers_user_id", "job_viewers", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_job_viewers_user_id", table_name="job_viewers")
    op.drop_table("job_viewers")
