"""A refresh forgets studies deleted from an archive whose feed names no deletion.

The archive (in memory, as Orthanc: its change feed names new studies only) counts its
studies and says which of the index's it lacks (`StudyCensus`). The refresh asks for the
count each time and for the listing only when the counts differ; a census that fails
leaves the index as it is and the refresh goes on. The real Orthanc adapter's census is
tested against a real Orthanc in `tests/integration/test_index_pages.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.core.errors import SourceTimeout, SourceUnavailable
from gateway.db.models import IndexState
from gateway.index import store
from gateway.index.refresh import build, refresh
from gateway.sources.base import ChangeFeed, StudyCensus, StudyRecord
from tests.index_support import Archive, as_source


def rec(uid: str, pid: str) -> StudyRecord:
    return StudyRecord(study_uid=uid, patient_id=pid, study_date="20200101")


class CensusArchive(Archive):
    """An archive in memory whose feed names no deletion, with a census of its studies."""

    def __init__(self, records: list[StudyRecord]) -> None:
        super().__init__(records)
        self.counted = 0
        self.listed = 0
        self.count_fails: Exception | None = None
        self.listing_fails: Exception | None = None
        self.stored_after_count: StudyRecord | None = None

    async def study_count(self) -> int:
        self.counted += 1
        if self.count_fails is not None:
            raise self.count_fails
        count = len(self.studies)
        if self.stored_after_count is not None:  # arrives between the count and the listing
            self.add(self.stored_after_count)
        return count

    async def absent_studies(self, known: Sequence[tuple[str, str]]) -> list[str]:
        self.listed += 1
        if self.listing_fails is not None:
            raise self.listing_fails
        return [uid for uid, pid in known if self.studies.get(uid, rec("", "")).patient_id != pid]


async def uids(sessions: async_sessionmaker) -> set[str]:
    return {uid for uid, _ in await store.keys(sessions, "mem")}


async def built(sessions: async_sessionmaker, n: int = 5) -> CensusArchive:
    archive = CensusArchive([rec(f"1.{k}", f"P{k}") for k in range(n)])
    assert isinstance(archive, ChangeFeed) and isinstance(archive, StudyCensus)
    await build(sessions, as_source(archive))
    return archive


async def test_a_refresh_forgets_a_deleted_study(sessions: async_sessionmaker) -> None:
    archive = await built(sessions)
    del archive.studies["1.2"]  # the feed does not name it
    done = await refresh(sessions, as_source(archive), reconcile_s=3600)
    assert done is not None and not done.full and (done.upserted, done.removed) == (0, 1)
    assert await uids(sessions) == {"1.0", "1.1", "1.3", "1.4"}
    st = await store.state(sessions, "mem")
    assert st is not None and st.studies == 4
    assert (archive.counted, archive.listed) == (1, 1)


async def test_equal_counts_cost_one_count_and_no_listing(sessions: async_sessionmaker) -> None:
    archive = await built(sessions)
    archive.add(rec("1.7", "P7"))
    done = await refresh(sessions, as_source(archive))
    assert done is not None and (done.upserted, done.removed) == (1, 0)
    assert (archive.counted, archive.listed) == (1, 0)


async def test_a_deletion_hidden_by_a_new_study_is_found(sessions: async_sessionmaker) -> None:
    """One study deleted, one added: the archive's count is unchanged, but the index has
    counted the new study from the feed before it compares."""
    archive = await built(sessions)
    del archive.studies["1.0"]
    archive.add(rec("1.8", "P8"))
    done = await refresh(sessions, as_source(archive))
    assert done is not None and (done.upserted, done.removed) == (1, 1)
    assert await uids(sessions) == {"1.1", "1.2", "1.3", "1.4", "1.8"}


async def test_a_study_stored_after_the_count_is_kept(sessions: async_sessionmaker) -> None:
    archive = await built(sessions)
    del archive.studies["1.1"]
    archive.stored_after_count = rec("1.9", "P9")
    done = await refresh(sessions, as_source(archive))
    assert done is not None and done.removed == 1
    assert await uids(sessions) == {"1.0", "1.2", "1.3", "1.4"}
    archive.stored_after_count = None
    done = await refresh(sessions, as_source(archive))  # the feed names it now
    assert done is not None and (done.upserted, done.removed) == (1, 0)
    assert await uids(sessions) == {"1.0", "1.2", "1.3", "1.4", "1.9"}


@pytest.mark.parametrize("where", ["count", "listing"])
async def test_a_failing_census_leaves_the_refresh_going(
    sessions: async_sessionmaker, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    archive = await built(sessions)
    del archive.studies["1.3"]
    archive.add(rec("1.6", "P6"))
    archive.add(rec("1.7", "P7"))
    fault = SourceUnavailable("mem", "refused") if where == "count" else SourceTimeout("mem", "t")
    setattr(archive, f"{where}_fails", fault)
    with caplog.at_level(logging.WARNING, logger="gateway.index.refresh"):
        done = await refresh(sessions, as_source(archive))
    assert done is not None and (done.upserted, done.removed) == (2, 0)
    assert await uids(sessions) == {"1.0", "1.1", "1.2", "1.3", "1.4", "1.6", "1.7"}
    assert "index of mem: deletions not checked: " + type(fault).__name__ in caplog.text
    st = await store.state(sessions, "mem")
    assert st is not None and st.cursor == "feed:2", "the feed's cursor moved on"
    setattr(archive, f"{where}_fails", None)
    done = await refresh(sessions, as_source(archive))  # the next refresh finds it
    assert done is not None and (done.upserted, done.removed) == (0, 1)
    assert "1.3" not in await uids(sessions)


async def drift(sessions: async_sessionmaker, by: int) -> None:
    """Make the kept count wrong, as two refreshes of one archive at once could."""
    async with sessions() as session, session.begin():
        row = await session.get(IndexState, "mem")
        assert row is not None
        row.studies += by


async def test_a_refresh_keeps_the_count_without_reading_the_rows(
    sessions: async_sessionmaker,
) -> None:
    """The index's count moves by what a refresh added and removed (a count of the rows at
    each refresh grew with the archive); a study written again is not counted twice. Here
    the archive has no census: a count made wrong on purpose stays off by as much until
    the next full listing counts the rows."""
    archive = Archive([rec(f"1.{k}", f"P{k}") for k in range(5)])
    await build(sessions, as_source(archive))
    await drift(sessions, 3)
    archive.add(rec("1.7", "P7"))
    archive.changes.append("1.1")  # named again: written again, already counted
    await refresh(sessions, as_source(archive))
    st = await store.state(sessions, "mem")
    assert st is not None and st.studies == 3 + 6, "moved by one, not counted again"
    await build(sessions, as_source(archive))
    st = await store.state(sessions, "mem")
    assert st is not None and st.studies == 6 == len(await uids(sessions))


async def test_a_count_that_drifted_is_set_right_by_the_census(
    sessions: async_sessionmaker,
) -> None:
    archive = await built(sessions)
    await drift(sessions, 3)
    st = await store.state(sessions, "mem")
    assert st is not None and st.studies == 8
    done = await refresh(sessions, as_source(archive))
    assert done is not None and done.removed == 0, "nothing is absent"
    assert archive.listed == 1, "the counts differed: the census looked"
    st = await store.state(sessions, "mem")
    assert st is not None and st.studies == 5
    await refresh(sessions, as_source(archive))
    assert archive.listed == 1, "set right: the next refresh only counts"
