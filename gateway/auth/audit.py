"""The audit trail: append-only, hash-chained events; opaque references, never patient data.

Each event's `hash` is SHA-256 over the previous event's hash and the event's own fields,
so editing, inserting or deleting a row breaks the chain from there on (`verify`).
Writers take a lock (PostgreSQL advisory lock; SQLite serialises writers anyway) so the
chain stays linear with several gateways and workers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.db.models import AuditEvent, utcnow

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
            _utc(at).isoformat(timespec="microseconds"),
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


def _utc(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


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
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
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
