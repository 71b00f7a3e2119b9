"""Per-archive key index for pages at scale: index_studies, index_state

Revision ID: 0007_key_index
Revises: 0006_identity
Create Date: 2026-12-01 23:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_key_index"
down_revision: str | None = "0006_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "index_studies",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("study_uid", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("issuer", sa.String(64), nullable=False),
        sa.Column("patient_name", sa.String(256)),
        sa.Column("name_key", sa.String(256), nullable=False),
        sa.Column("birth_date", sa.String(8)),
        sa.Column("sex", sa.String(16)),
        sa.Column("study_date", sa.String(8), nullable=False),
        sa.Column("study_time", sa.String(16), nullable=False),
        sa.Column("accession_number", sa.String(64)),
        sa.Column("modalities", sa.String(128), nullable=False),
        sa.Column("description", sa.String(256)),
        sa.Column("series_count", sa.Integer()),
        sa.Column("instance_count", sa.Integer()),
        sa.Column("seen_at", WHEN, nullable=False),
    )
    op.create_index("ix_index_studies_patient", "index_studies", ["patient_id", "issuer"])
    op.create_index(
        "ix_index_studies_date", "index_studies", ["study_date", "study_time", "study_uid"]
    )
    op.create_index("ix_index_studies_name", "index_studies", ["name_key"])
    op.create_index("ix_index_studies_uid", "index_studies", ["study_uid"])
    op.create_table(
        "index_state",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("cursor", sa.String(128)),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("studies", sa.Integer(), nullable=False),
        sa.Column("built_at", WHEN),
        sa.Column("refreshed_at", WHEN),
        sa.Column("reconciled_at", WHEN),
    )


def downgrade() -> None:
    op.drop_table("index_state")
    for name in ("uid", "name", "date", "patient"):
        op.drop_index(f"ix_index_studies_{name}", "index_studies")
    op.drop_table("index_studies")
