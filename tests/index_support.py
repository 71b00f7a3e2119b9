"""An archive in memory for the key index's unit tests (the adapter protocol's study
listing and change feed)."""

from __future__ import annotations

from typing import cast

from gateway.core.uids import is_uid
from gateway.sources.base import PacsSource, StudyQuery, StudyRecord


class Archive:
    """An archive in memory with a change feed (as Orthanc's: a deleted study is not named)."""

    def __init__(self, records: list[StudyRecord]) -> None:
        self.studies = {r.study_uid: r for r in records}
        self.changes: list[str] = []
        self.config = None

    @property
    def id(self) -> str:
        return "mem"

    def add(self, record: StudyRecord) -> None:
        self.studies[record.study_uid] = record
        self.changes.append(record.study_uid)

    async def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        found = [r for r in self.studies.values() if is_uid(r.study_uid) or not query.study_uids]
        if query.study_uids:
            found = [r for r in found if r.study_uid in query.study_uids]
        if query.study_date:
            low = query.study_date.rstrip("-")
            found = [r for r in found if (r.study_date or "") >= low]
        return sorted(found, key=lambda r: r.study_uid)

    async def study_changes(self, cursor: str | None) -> tuple[list[str], str]:
        if cursor is None:
            return [], str(len(self.changes))
        return self.changes[int(cursor) :], str(len(self.changes))


def as_source(archive: Archive) -> PacsSource:
    """The archive as the adapter protocol's type."""
    return cast(PacsSource, archive)
