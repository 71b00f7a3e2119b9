"""Change detection for periodic sync: the cursor of each (source, destination) pair.

What changed is found by `gateway.index.feed.detect` (the archive's change feed, else
QIDO by date), shared with the key index. Date matching finds new acquisitions; a study
with an old StudyDate arriving late is caught by the next full run (`all` without
`periodic`).
"""

from __future__ import annotations

from sqlalchemy import select

from gateway.db.models import SyncCursor
from gateway.runtime import Runtime


async def load_cursor(runtime: Runtime, source: str, destination: str) -> str | None:
    """The stored cursor of a sync pair."""
    async with runtime.sessions() as session:
        return await session.scalar(
            select(SyncCursor.cursor).where(
                SyncCursor.source == source, SyncCursor.destination == destination
            )
        )


async def save_cursor(runtime: Runtime, source: str, destination: str, cursor: str) -> None:
    """Store a sync pair's cursor after a successful run."""
    async with runtime.sessions() as session, session.begin():
        row = await session.get(SyncCursor, (source, destination))
        if row is None:
            session.add(SyncCursor(source=source, destination=destination, cursor=cursor))
        else:
            row.cursor = cursor
