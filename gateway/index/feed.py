"""What changed in an archive since a cursor: its change feed, else QIDO by date.

An archive with a change feed (`ChangeFeed`, e.g. Orthanc's /changes) answers from the
feed; one that matches its own receive times (`ReceiptWindow`, dcm4chee) is asked for the
studies it received from the last run's day on, which finds a study stored today with an
old date; any other is asked for studies dated from that day on. Either way an idle look
costs one upstream request. Used by the periodic sync and by the key index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.sources.base import (
    ChangeFeed,
    PacsSource,
    ReceiptWindow,
    StudyQuery,
    StudyRecord,
)


@dataclass(frozen=True, slots=True)
class Changes:
    """Studies to look at (None: every study), the cursor to store after success, and, from a
    feed, the UIDs it named (a named UID no longer found was deleted)."""

    studies: list[StudyRecord] | None
    cursor: str
    named: tuple[str, ...] | None = None


def since_mark() -> str:
    """The date window's start for the next look: yesterday (late arrivals of today)."""
    return (datetime.now(UTC) - timedelta(days=1)).strftime("%Y%m%d")


async def start_cursor(source: PacsSource) -> str:
    """The cursor of "now": the feed's end, or today's date window."""
    if isinstance(source, ChangeFeed):
        _, end = await source.study_changes(None)
        return f"feed:{end}"
    return f"date:{since_mark()}"


async def detect(source: PacsSource, cursor: str | None) -> Changes:
    """What changed in `source` since `cursor`; everything when there is no cursor yet."""
    if isinstance(source, ChangeFeed):
        if cursor is None or not cursor.startswith("feed:"):
            return Changes(None, await start_cursor(source))
        uids, end = await source.study_changes(cursor[5:])
        found = await source.find_studies(StudyQuery(study_uids=tuple(uids))) if uids else []
        return Changes(found, f"feed:{end}", tuple(uids))
    mark = f"date:{since_mark()}"
    if cursor is None or not cursor.startswith("date:"):
        if isinstance(source, ReceiptWindow):  # learnt with the full look, not the idle ones
            await source.matches_receipts()
        return Changes(None, mark)
    day = cursor[5:]
    received = await source.studies_received(day) if isinstance(source, ReceiptWindow) else None
    if received is not None:
        return Changes(received, mark)
    return Changes(await source.find_studies(StudyQuery(study_date=f"{day}-")), mark)
