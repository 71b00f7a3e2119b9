"""A job's events are numbered 1, 2, 3, ... per job, on SQLite (PostgreSQL: integration)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.db.engine import make_engine, migrate, sessionmaker
from gateway.jobs.store import JobStore
from tests import job_event_seq_scenarios as scenarios


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    url = f"sqlite+aiosqlite:///{tmp_path}/gw.db"
    await migrate(url)
    engine = make_engine(url)
    try:
        yield JobStore(sessionmaker(engine))
    finally:
        await engine.dispose()


async def test_events_of_a_job_come_back_numbered_in_order(store: JobStore) -> None:
    await scenarios.numbered_in_order(store)


async def test_two_jobs_have_independent_sequences(store: JobStore) -> None:
    await scenarios.independent_per_job(store)


async def test_concurrent_writers_of_one_job_get_distinct_numbers(store: JobStore) -> None:
    await scenarios.concurrent_writers(store)


async def test_migration_numbers_existing_events(tmp_path: Path) -> None:
    await scenarios.migration_numbers_existing_events(f"sqlite+aiosqlite:///{tmp_path}/old.db")
