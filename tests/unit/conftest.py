"""Fixtures shared by unit tests: a migrated SQLite database, fresh for each test."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.db.engine import make_engine, migrate, sessionmaker


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database file, copied for each test (migrating costs seconds)."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
async def sessions(tmp_path: Path, migrated: Path) -> AsyncIterator[async_sessionmaker]:
    """Sessions on a copy of the migrated database."""
    shutil.copyfile(migrated, tmp_path / "i.db")
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/i.db")
    try:
        yield sessionmaker(engine)
    finally:
        await engine.dispose()
