"""An identical active job is found by its input's digest, not by reading every input."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.core.errors import QuotaExceeded
from gateway.db.models import Job
from gateway.jobs.store import JobStore


def _sync(n: int, first: int = 0) -> dict[str, object]:
    return {"from": "a", "to": "b", "studyInstanceUids": [f"1.2.{i}" for i in range(first, n)]}


async def test_an_identical_active_job_is_returned_and_others_are_not_read(
    sessions: async_sessionmaker,
) -> None:
    store = JobStore(sessions)
    big, _ = await store.create("SYNC", _sync(10_000), "u", "u1")
    other, first = await store.create("SYNC", _sync(10_000, 1), "u", "u1")
    assert first is not None and other.id != big.id
    again, first = await store.create("SYNC", dict(reversed(_sync(10_000).items())), "u", "u1")
    assert first is None and again.id == big.id  # key order does not matter
    mine, first = await store.create("SYNC", _sync(10_000), "u", "u2")
    assert first is not None and mine.id != big.id  # another owner's job is not theirs
    # only the rows with the same digest are read: a changed input under an old digest
    # is not found (reading every input would have found it)
    async with sessions() as session, session.begin():
        await session.execute(update(Job).where(Job.id == other.id).values(input=_sync(3)))
    fresh, first = await store.create("SYNC", _sync(3), "u", "u1")
    assert first is not None and fresh.id != other.id


async def test_rows_without_a_digest_are_compared_whole_and_the_quota_holds(
    sessions: async_sessionmaker,
) -> None:
    store = JobStore(sessions)
    old, _ = await store.create("SYNC", _sync(5), "u", "u1")
    async with sessions() as session, session.begin():  # as a row from before the digest
        await session.execute(update(Job).where(Job.id == old.id).values(input_digest=None))
    same, first = await store.create("SYNC", _sync(5), "u", "u1", max_queued=1)
    assert first is None and same.id == old.id  # identical: returned even at the quota
    with pytest.raises(QuotaExceeded):
        await store.create("SYNC", _sync(6), "u", "u1", max_queued=1)
    assert await store.redact_input(old.id, {"redacted": True})
    async with sessions() as session:
        row = await session.get(Job, old.id)
        assert row is not None and row.input_digest is None
