"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from gateway.db.engine import migrate
from gateway.db.models import Base


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    db = tmp_path / "schema.db"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{db}"))
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
