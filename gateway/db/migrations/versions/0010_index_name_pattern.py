"""The key index's folded-name index usable by prefix searches in any collation

On PostgreSQL a plain B-tree on a text column serves `LIKE 'ABC%'` only in the `C`
collation; elsewhere (e.g. `C.UTF-8`, `en_US.UTF-8`) a rare name prefix read the whole
patient index. `varchar_pattern_ops` makes the prefix an index range in every collation.

Revision ID: 0010_index_name_pattern
Revises: 0009_job_input_digest
Create Date: 2026-12-02 20:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_index_name_pattern"
down_revision: str | None = "0009_job_input_digest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite's LIKE uses no index either way
    op.drop_index("ix_index_studies_name", "index_studies")
    op.create_index(
        "ix_index_studies_name",
        "index_studies",
        ["name_key"],
        postgresql_ops={"name_key": "varchar_pattern_ops"},
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_index_studies_name", "index_studies")
    op.create_index("ix_index_studies_name", "index_studies", ["name_key"])
