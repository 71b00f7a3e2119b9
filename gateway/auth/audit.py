"""The audit trail: append-only, hash-chained events; opaque references, never patient data.

Each event's `hash` is SHA-256 over the previous event's hash and the event's own fields,
so editing, inserting or deleting a row breaks the chain from there on (`verify`).
Writers take a lock before reading the last hash (PostgreSQL: an advisory lock; SQLite:
the database's write lock, taken by a write that changes nothing) so the chain stays linear
with several gateways and workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.errors import AuditUnavailable
from gateway.core.timing import as_utc
from gateway.db.lock import serialize
from gateway.db.models import AuditEvent, utcnow

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_LOCK_KEY = 0x5047_4155  # "PGAU": the advisory lock that orders chain writers


@dataclass(frozen=True, slots=True)
class Entry:
    """One event to record."""

    actor: str | None
    action: str
    outcome: str = "ok"
    object_type: str | None = None
    object_ref: str | None = None
    address: str | None = None
    details: dict[str, Any] | None = None


def chain_hash(prev: str, at: datetime, entry: Entry) -> str:
    """The hash of an event given its predecessor's."""
    body = json.dumps(
        [
            prev,
            as_utc(at).isoformat(timespec="microseconds"),
            entry.actor,
            entry.action,
            entry.outcome,
            entry.object_type,
            entry.object_ref,
            entry.address,
            entry.details,
        ],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _entry(row: AuditEvent) -> Entry:
    return Entry(
        actor=row.actor,
        action=row.action,
        outcome=row.outcome or "ok",
        object_type=row.object_type,
        object_ref=row.object_ref,
        address=row.address,
        details=row.detail,
    )


async def append(session: AsyncSession, entry: Entry) -> AuditEvent:
    """Add `entry` to the chain inside the caller's transaction."""
    await serialize(session, _LOCK_KEY, "audit_events")
    last = await session.scalar(
        select(AuditEvent.hash)
        .where(AuditEvent.hash.is_not(None))
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    at = utcnow()
    row = AuditEvent(
        at=at,
        actor=entry.actor,
        action=entry.action,
        outcome=entry.outcome,
        object_type=entry.object_type,
        object_ref=entry.object_ref,
        address=entry.address,
        detail=entry.details,
        prev_hash=last or GENESIS,
        hash=chain_hash(last or GENESIS, at, entry),
    )
    session.add(row)
    await session.flush()
    return row


async def record(sessions: async_sessionmaker, entry: Entry) -> None:
    """Append `entry` in a transaction of its own."""
    async with sessions() as session, session.begin():
        await append(session, entry)


async def rows(sessions: async_sessionmaker, batch: int = 1000) -> AsyncIterator[AuditEvent]:
    """Every event, oldest first, read in batches."""
    after = 0
    while True:
        async with sessions() as session:
            found = (
                await session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.id > after)
                    .order_by(AuditEvent.id)
                    .limit(batch)
                )
            ).all()
        if not found:
            return
        for row in found:
            yield row
        after = found[-1].id


async def verify(sessions: async_sessionmaker) -> tuple[int, int | None]:
    """(events checked, id of the first broken link or None)."""
    prev, count = GENESIS, 0
    async for row in rows(sessions):
        if row.hash is None:  # written before the chain existed
            continue
        count += 1
        if row.prev_hash != prev or row.hash != chain_hash(prev, row.at, _entry(row)):
            return count, row.id
        prev = row.hash
    return count, None


class AuditWriter:
    """Writes events in the background so that auditing never blocks a request.

    Events wait in a bounded in-memory queue; a writer task appends them to the chain.
    When the queue is full (the database is slow or away) `saturated` is true and the
    API refuses identity reads rather than serve them unaudited; `submit` then raises.
    """

    def __init__(self, sessions: async_sessionmaker, bound: int = 10_000) -> None:
        self.sessions = sessions
        self.queue: asyncio.Queue[Entry] = asyncio.Queue(maxsize=bound)
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    @property
    def saturated(self) -> bool:
        """True when no further event can be queued."""
        return self.queue.full()

    def submit(self, entry: Entry) -> None:
        """Queue `entry`; `AuditUnavailable` when the queue is full."""
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            raise AuditUnavailable("the audit trail is not keeping up") from None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while not self.queue.empty():
            batch = [self.queue.get_nowait() for _ in range(min(self.queue.qsize(), 100))]
            while True:
                try:
                    async with self.sessions() as session, session.begin():
                        for entry in batch:
                            await append(session, entry)
                    break
                except Exception as exc:  # the database is away: keep the events, retry
                    self.failures += 1
                    log.warning("audit events not written yet: %s", type(exc).__name__)
                    await asyncio.sleep(min(5.0, 0.2 * self.failures))
            self.failures = 0
            for _ in batch:
                self.queue.task_done()

    async def flush(self, within_s: float = 10.0) -> None:
        """Wait until every queued event is written (at most `within_s`), those already
        taken from the queue and being written included."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self.queue.join()

    async def aclose(self) -> None:
        """Write what is queued, then stop."""
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
