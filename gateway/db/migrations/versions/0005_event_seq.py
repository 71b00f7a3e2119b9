"""job_events.seq numbered per job (1, 2, 3, ...), unique per job; jobs.last_event_seq

Events recorded before this revision all have seq 0: they are numbered per job in
the order (at, id), and each job's counter starts after its last event.

Revision ID: 0005_event_seq
Revises: 0004_attempts_before_retry
Create Date: 2026-11-23 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_event_seq"
down_revision: str | None = "0004_attempts_before_retry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# UPDATE ... FROM: PostgreSQL, and SQLite from 3.33
NUMBER_EVENTS = """
UPDATE job_events SET seq = numbered.n
FROM (
    SELECT id, row_number() OVER (PARTITION BY job_id ORDER BY at, id) AS n FROM job_events
) AS numbered
WHERE job_events.id = numbered.id
"""
COUNT_EVENTS = """
UPDATE jobs SET last_event_seq = coalesce(
    (SELECT max(job_events.seq) FROM job_events WHERE job_events.job_id = jobs.id), 0
)
"""


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("last_event_seq", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(NUMBER_EVENTS)
    op.execute(COUNT_EVENTS)
    op.drop_index("ix_job_events_job_seq", table_name="job_events")
    op.create_index("ux_job_events_job_seq", "job_events", ["job_id", "seq"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_job_events_job_seq", table_name="job_events")
    op.create_index("ix_job_events_job_seq", "job_events", ["job_id", "seq"], unique=False)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("last_event_seq")
