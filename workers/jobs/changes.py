"""Change detection for periodic sync: what changed in a source since the last run.

An archive with a change feed (`ChangeFeed`, e.g. Orthanc's /changes) answers
from the feed; any other is asked by QIDO for studies dated from the last run's
day on. Either way an idle run costs one upstream request. Date matching finds
new acquisitions; a study with an old StudyDate arriving late is caught by the
next full run (`all` without `periodic`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from gateway.db.models import SyncCursor
from gateway.runtime import Runtime
from gateway.sources.base import ChangeFeed, PacsSource, StudyQuery, StudyRecord


@dataclass(frozen=True, slots=True)
class Changes:
    """Studies to look at (None: every study) and the cursor to store after success."""

    studies: list[StudyRecord] | None
    cursor: str


def _since_mark() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).strftime("%Y%m%d")


async def detect(source: PacsSource, cursor: str | None) -> Changes:
    """What changed in `source` since `cursor`; everything when there is no cursor yet."""
    if isinstance(source, ChangeFeed):
        if cursor is None or not cursor.startswith("feed:"):
            _, end = await source.study_changes(None)
            return Changes(None, f"feed:{end}")
        uids, end = await source.study_changes(cursor[5:])
        found = await source.find_studies(StudyQuery(study_uids=tuple(uids))) if uids else []
        return Changes(found, f"feed:{end}")
    mark = f"date:{_since_mark()}"
    if cursor is None or not cursor.startswith("date:"):
        return Changes(None, mark)
    found = await source.find_studies(StudyQuery(study_date=f"{cursor[5:]}-"))
    return Changes(found, mark)


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
