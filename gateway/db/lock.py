"""A transaction-long lock that orders the writers of one kind of rows across processes."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def serialize(session: AsyncSession, key: int, table: str) -> None:
    """Wait for the other writers holding `key` until the caller's transaction ends.

    PostgreSQL: an advisory transaction lock. SQLite: its one write lock, taken by a write
    to `table` that changes nothing (reads before a transaction's first write see no lock).
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    else:
        await session.execute(text(f"UPDATE {table} SET rowid = rowid WHERE 0"))
