"""Counts of the key index's studies and patients per set of holding archives

A `totalCount` summed from them instead of counting distinct keys over the whole index
(seconds at millions of rows). Filled here from the rows already indexed.

Revision ID: 0011_index_counts
Revises: 0010_index_name_pattern
Create Date: 2026-12-03 08:00:00
"""

from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_index_counts"
down_revision: str | None = "0010_index_name_pattern"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "index_counts",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("holders", sa.Text(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    bind = op.get_bind()
    counts: Counter[tuple[str, str]] = Counter()
    for kind, column in (("study", "study_uid"), ("patient", "patient_id")):
        query = f"SELECT DISTINCT {column}, source FROM index_studies ORDER BY {column}, source"
        rows = bind.execute(sa.text(query).execution_options(yield_per=10_000))
        key, held = None, list[str]()
        for value, source in rows:
            if value != key and held:
                counts[(kind, "\n".join(sorted(held)))] += 1
                held = []
            key = value
            held.append(source)
        if held:
            counts[(kind, "\n".join(sorted(held)))] += 1
    if counts:
        op.bulk_insert(table, [{"kind": k, "holders": h, "n": n} for (k, h), n in counts.items()])


def downgrade() -> None:
    op.drop_table("index_counts")
