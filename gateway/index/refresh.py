"""Building and refreshing one archive's key index."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.core.errors import SourceError
from gateway.core.timing import as_utc
from gateway.core.uids import is_uid
from gateway.db.models import utcnow
from gateway.index import store
from gateway.index.feed import detect, start_cursor
from gateway.sources.base import PacsSource, StudyCensus, StudyQuery

log = logging.getLogger(__name__)
Progress = Callable[[float, str], Awaitable[None]]
WRITE_BATCH = 1000
PAUSE_S = 0.05  # between write batches: the archive and the database serve others too


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What one refresh did."""

    source: str
    upserted: int
    removed: int
    full: bool


async def build(
    sessions: async_sessionmaker, source: PacsSource, progress: Progress | None = None
) -> Refreshed:
    """List every study of `source` once and make the index hold exactly those.

    Idempotent and resumable: a crashed build is simply run again (rows are replaced, and
    rows not seen in the last complete listing are dropped at its end). The feed cursor is
    taken before the listing, so what changes meanwhile is picked up by the next refresh.
    """
    cursor = await start_cursor(source)
    started = utcnow()
    if progress is not None:
        await progress(0.0, "listing")
    records = await source.find_studies(StudyQuery())
    for done in range(0, len(records), WRITE_BATCH):
        await store.upsert(sessions, source.id, records[done : done + WRITE_BATCH])
        if progress is not None:
            await progress(0.1 + 0.85 * (done / max(len(records), 1)), "writing")
        await asyncio.sleep(PAUSE_S)
    removed = await store.remove_unseen(sessions, source.id, started)
    await store.analyze(sessions)  # the page queries' plans depend on the table's size
    now = utcnow()
    await store.save_state(
        sessions,
        source.id,
        recount=True,
        cursor=cursor,
        complete=True,
        built_at=now,
        refreshed_at=now,
        reconciled_at=now,
    )
    return Refreshed(source.id, len(records), removed, True)


async def refresh(
    sessions: async_sessionmaker, source: PacsSource, reconcile_s: float | None = None
) -> Refreshed | None:
    """Bring a built index up to date from the archive's changes (None: never built).

    A full listing again when the last one is older than `reconcile_s` (how deletions in
    archives without a change feed leave the index); an archive whose feed names no
    deletion but that can count its studies (`StudyCensus`) is checked each time.
    """
    st = await store.state(sessions, source.id)
    if st is None or not st.complete:
        return None
    last = st.reconciled_at or st.built_at
    if reconcile_s and (last is None or (utcnow() - as_utc(last)).total_seconds() > reconcile_s):
        return await build(sessions, source)
    changes = await detect(source, st.cursor)
    if changes.studies is None:
        return await build(sessions, source)
    added = await store.upsert(sessions, source.id, changes.studies)
    gone: set[str] = set()
    if changes.named is not None:
        # a named UID that breaks the UID rules cannot be asked for: not found is no proof
        gone = {u for u in changes.named if is_uid(u)} - {r.study_uid for r in changes.studies}
    removed = await store.remove(sessions, source.id, gone)
    held = st.studies + added - removed  # the index's count, kept without reading its rows
    census = await forget_deleted(sessions, source, held)
    # a census that had to look (the counts differed) counts the rows again: a kept count
    # that drifted (two refreshes of one archive at once) is set right by the next one
    await store.save_state(
        sessions,
        source.id,
        recount=census is not None,
        cursor=changes.cursor,
        refreshed_at=utcnow(),
    )
    return Refreshed(source.id, len(changes.studies), removed + (census or 0), False)


async def forget_deleted(sessions: async_sessionmaker, source: PacsSource, held: int) -> int | None:
    """Forget the studies `source` no longer holds, when it can tell (`StudyCensus`); how
    many rows went, or None when it was not checked.

    Its count of studies first (one small request); only when that differs from `held`,
    the index's count, the index's studies it lacks. An archive failing here leaves the
    index as it is: the deletions are found by the next refresh, or the reconcile.
    """
    if not isinstance(source, StudyCensus):
        return None
    try:
        if await source.study_count() == held:
            return None
        absent = await source.absent_studies(await store.keys(sessions, source.id))
    except SourceError as exc:
        log.warning("index of %s: deletions not checked: %s", source.id, type(exc).__name__)
        return None
    return await store.remove(sessions, source.id, absent)
