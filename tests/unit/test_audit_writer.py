"""The background audit writer: flush waits for events already taken off the queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.auth import audit
from gateway.auth.audit import AuditWriter, Entry
from gateway.db.engine import make_engine, migrate, sessionmaker
from gateway.db.models import AuditEvent


async def test_flush_waits_for_the_batch_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/a.db"
    await migrate(url)
    engine = make_engine(url)
    sessions = sessionmaker(engine)
    writing = asyncio.Event()
    append = audit.append

    async def slow_append(session, entry):  # type: ignore[no-untyped-def]
        writing.set()
        await asyncio.sleep(0.3)  # the database is slow: the batch is off the queue meanwhile
        return await append(session, entry)

    monkeypatch.setattr(audit, "append", slow_append)
    writer = AuditWriter(sessions)
    try:
        writer.submit(Entry(actor="user:1", action="phi-read"))
        await writing.wait()
        assert writer.queue.empty(), "taken from the queue, not written yet"
        await writer.aclose()
        async with sessions() as session:
            count = await session.scalar(select(func.count()).select_from(AuditEvent))
        assert count == 1, "closing waited for the event being written"
    finally:
        await engine.dispose()


async def test_two_writers_of_one_sqlite_file_keep_one_chain(tmp_path: Path) -> None:
    """Two engines on one SQLite file (two gateway processes): the chain stays linear."""
    url = f"sqlite+aiosqlite:///{tmp_path}/a.db"
    await migrate(url)
    engines = [make_engine(url), make_engine(url)]
    makers = [sessionmaker(e) for e in engines]

    async def write(k: int) -> None:
        for i in range(40):
            await audit.record(makers[k], Entry(actor=f"user:{k}", action=f"phi-read-{i}"))

    try:
        await asyncio.gather(write(0), write(1))
        assert await audit.verify(makers[0]) == (80, None)
    finally:
        for engine in engines:
            await engine.dispose()
