"""Job events numbered 1, 2, 3, ... per job on PostgreSQL; the migration numbers old ones."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.db.engine import make_engine, sessionmaker
from gateway.jobs.store import JobStore
from tests import job_event_seq_scenarios as scenarios
from tests.conftest import JobEnv
from tests.jobs_support import drop_database, replace_path

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(job_env: JobEnv) -> AsyncIterator[JobStore]:
    engine = make_engine(job_env.settings.database_url)
    try:
        yield JobStore(sessionmaker(engine))
    finally:
        await engine.dispose()


@pytest.fixture
def empty_database(job_env: JobEnv) -> Iterator[str]:
    """The URL of a new, empty database on the module's PostgreSQL (dropped after)."""
    url = replace_path(job_env.settings.database_url, f"pacs_gw_jobs_seqmig_{os.getpid()}")
    drop_database(url)
    admin = replace_path(url.replace("+asyncpg", ""), "postgres")
    name = url.rsplit("/", 1)[1]
    subprocess.run(["psql", admin, "-tAc", f'CREATE DATABASE "{name}"'], check=True)
    try:
        yield url
    finally:
        drop_database(url)


async def test_events_of_a_job_come_back_numbered_in_order(store: JobStore) -> None:
    await scenarios.numbered_in_order(store)


async def test_two_jobs_have_independent_sequences(store: JobStore) -> None:
    await scenarios.independent_per_job(store)


async def test_concurrent_writers_of_one_job_get_distinct_numbers(store: JobStore) -> None:
    await scenarios.concurrent_writers(store)


async def test_migration_numbers_existing_events(empty_database: str) -> None:
    await scenarios.migration_numbers_existing_events(empty_database)
