"""A digest of each active job's input, to find an identical one without reading inputs

Revision ID: 0009_job_input_digest
Revises: 0008_job_viewers
Create Date: 2026-12-02 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_job_input_digest"
down_revision: str | None = "0008_job_viewers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("input_digest", sa.String(64), nullable=True))
    op.create_index("ix_jobs_input_digest", "jobs", ["input_digest"])


def downgrade() -> None:
    op.drop_index("ix_jobs_input_digest", table_name="jobs")
    op.drop_column("jobs", "input_digest")
