"""Job rows and their events in the SQL database: the source of truth for every job."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from gateway.core.errors import QuotaExceeded
from gateway.core.timing import as_utc
from gateway.db.models import Job, JobEvent, JobViewer, utcnow
from gateway.jobs.events import TERMINAL, Event
from gateway.metrics import record as metrics

ACTIVE = ("QUEUED", "RUNNING")
UNSET: Any = object()
_EVENTS = select(JobEvent, Job.kind).join(Job, JobEvent.job_id == Job.id)


@dataclass(frozen=True, slots=True)
class Change:
    """What one event changes on a job row; UNSET fields stay as they are."""

    status: str | None = None
    progress: float | None = None
    phase: str | None = UNSET
    message: str | None = UNSET
    result: dict[str, Any] | None = UNSET
    error: str | None = UNSET
    started: bool = False
    new_attempt: bool = False
    attempt: int | None = None  # apply only while the job is still on this attempt
    reopen: bool = False  # a retry: a final job back to QUEUED, its cancel request cleared


def canonical(input: dict[str, Any]) -> str:
    """A stable text form of a job input, for finding an identical active job."""
    return json.dumps(input, sort_keys=True, separators=(",", ":"))


class JobStore:
    """Reads and writes jobs; every write of state also appends one event."""

    def __init__(self, sessions: async_sessionmaker) -> None:
        self.sessions = sessions

    async def create(
        self,
        kind: str,
        input: dict[str, Any],
        requested_by: str,
        owner: str | None = None,
        viewers: Sequence[str] = (),
        max_queued: int = 0,
    ) -> tuple[Job, Event | None]:
        """A new QUEUED job and its first event, or the identical job of the same owner
        already queued or running and None. `viewers` (user ids) may see the new job too.
        `max_queued`: an owner with that many jobs queued gets QuotaExceeded (0: no quota)."""
        text = canonical(input)
        digest = hashlib.sha256(text.encode()).hexdigest()
        async with self.sessions() as session, session.begin():
            same_owner = Job.owner.is_(None) if owner is None else Job.owner == owner
            active = await session.scalars(  # by digest: 100 queued 10,000-UID inputs weigh
                select(Job).where(  # 50 MB (rows from before the digest: compared whole)
                    Job.kind == kind,
                    Job.status.in_(ACTIVE),
                    same_owner,
                    or_(Job.input_digest == digest, Job.input_digest.is_(None)),
                )
            )
            for job in active:
                if canonical(job.input) == text:
                    return job, None
            if max_queued and owner is not None:
                queued = await session.scalar(
                    select(func.count()).where(Job.owner == owner, Job.status == "QUEUED")
                )
                if int(queued or 0) >= max_queued:
                    raise QuotaExceeded(
                        f"at most {max_queued} queued jobs per user: wait for some to start, "
                        "or cancel some"
                    )
            job = Job(
                id=str(uuid.uuid4()),
                kind=kind,
                status="QUEUED",
                input=input,
                input_digest=digest,
                requested_by=requested_by,
                owner=owner,
            )
            session.add(job)
            await session.flush()
            session.add_all(JobViewer(job_id=job.id, user_id=u) for u in dict.fromkeys(viewers))
            event = as_event(job.kind, await _append(session, job, "queued"))
        metrics.job_submitted(kind)
        return job, event

    async def get(self, job_id: str) -> Job | None:
        """One job."""
        async with self.sessions() as session:
            return await session.get(Job, job_id)

    async def events_of(self, ids: Sequence[str]) -> dict[str, list[Event]]:
        """The events of several jobs, in order, one query."""
        out: dict[str, list[Event]] = {i: [] for i in ids}
        async with self.sessions() as session:
            rows = await session.execute(
                _EVENTS.where(JobEvent.job_id.in_(list(ids))).order_by(JobEvent.seq)
            )
            for ev, kind in rows:
                out[ev.job_id].append(as_event(kind, ev))
        return out

    async def events_after(self, job_id: str, seq: int) -> list[Event]:
        """A job's events recorded after the one numbered `seq`, in order."""
        async with self.sessions() as session:
            rows = await session.execute(
                _EVENTS.where(JobEvent.job_id == job_id, JobEvent.seq > seq).order_by(JobEvent.seq)
            )
            return [as_event(kind, ev) for ev, kind in rows]

    async def page(
        self,
        kind: str | None,
        status: str | None,
        first: int,
        after: tuple[str, str] | None,
        owner: str | None = None,
    ) -> tuple[list[Job], bool, int]:
        """Newest first, keyset on (created_at, id); (jobs, has_next, total); only the jobs
        `owner` submitted or is a viewer of, when given."""
        async with self.sessions() as session:
            stmt = select(Job)
            count = select(func.count()).select_from(Job)
            if owner is not None:
                viewed = select(JobViewer.job_id).where(JobViewer.user_id == owner)
                mine = (Job.owner == owner) | Job.id.in_(viewed)
                stmt, count = stmt.where(mine), count.where(mine)
            if kind:
                stmt, count = stmt.where(Job.kind == kind), count.where(Job.kind == kind)
            if status:
                stmt, count = stmt.where(Job.status == status), count.where(Job.status == status)
            total = int((await session.execute(count)).scalar_one())
            if after is not None:
                at, last_id = after
                stmt = stmt.where(
                    (Job.created_at < datetime.fromisoformat(at))
                    | ((Job.created_at == datetime.fromisoformat(at)) & (Job.id < last_id))
                )
            stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(first + 1)
            rows = list(await session.scalars(stmt))
        return rows[:first], len(rows) > first, total

    async def is_viewer(self, job_id: str, user_id: str | None) -> bool:
        """Whether `user_id` was named a viewer of the job (not its owner)."""
        if user_id is None:
            return False
        async with self.sessions() as session:
            found = await session.scalar(
                select(JobViewer.job_id).where(
                    JobViewer.job_id == job_id, JobViewer.user_id == user_id
                )
            )
        return found is not None

    async def of_kind(self, kind: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(status, input, result) of every job of a kind (e.g. to skip what was done)."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(Job.status, Job.input, Job.result).where(Job.kind == kind)
            )
            return [(st, i if isinstance(i, dict) else {}, r or {}) for st, i, r in rows]

    async def active(self) -> list[Job]:
        """Jobs the DB says are queued or running."""
        async with self.sessions() as session:
            return list(await session.scalars(select(Job).where(Job.status.in_(ACTIVE))))

    async def queued_by_kind(self) -> dict[str, int]:
        """How many jobs of each kind wait in the queue (kinds with none are absent)."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(Job.kind, func.count()).where(Job.status == "QUEUED").group_by(Job.kind)
            )
            return {kind: int(count) for kind, count in rows}

    async def succeeded_recently(
        self, kind: str, requested_by: str, limit: int = 100
    ) -> list[tuple[dict[str, Any], datetime]]:
        """(input, finished_at) of the newest succeeded jobs of a kind a requester submitted."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(Job.input, Job.finished_at)
                .where(
                    Job.kind == kind,
                    Job.status == "SUCCEEDED",
                    Job.requested_by == requested_by,
                    Job.finished_at.is_not(None),
                )
                .order_by(Job.finished_at.desc())
                .limit(limit)
            )
            return [(i if isinstance(i, dict) else {}, at) for i, at in rows]

    async def record(self, job_id: str, change: Change) -> Event | None:
        """Apply `change` and append its event; None when the job is unknown or already final.

        A terminal job is never changed again, except by a retry (`reopen`); a change
        made for an attempt that is no longer the job's current one is refused.
        """
        async with self.sessions() as session, session.begin():
            job = await session.get(Job, job_id, with_for_update=True)
            if job is None:
                return None
            if (job.status in TERMINAL) != (change.reopen and change.status == "QUEUED"):
                return None
            if change.attempt is not None and (job.attempts or 0) != change.attempt:
                return None
            was_running = job.status == "RUNNING"
            _apply(job, change)
            event = as_event(job.kind, await _append(session, job, None))
            final = job.status in TERMINAL
            started, finished = job.started_at, job.finished_at
        if final:  # counted once committed; timed only when it ended a run
            ran = (
                (as_utc(finished) - as_utc(started)).total_seconds()
                if was_running and started and finished
                else None
            )
            metrics.job_finished(event.kind, event.status, ran)
        return event

    async def redact_input(self, job_id: str, input: dict[str, Any]) -> bool:
        """Replace a job's stored input (e.g. an identifier by its keyed hash once the job
        is done); no event, the job's state is unchanged. False when the job is unknown."""
        async with self.sessions() as session, session.begin():
            done = await session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(input=input, input_digest=None)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(done, "rowcount", 0))

    async def request_cancel(self, job_id: str) -> None:
        """Mark a job for cancelling; the running worker stops at its next checkpoint."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(ACTIVE))
                .values(cancel_requested=True)
            )

    async def cancel_requested(self, job_id: str) -> bool:
        """Whether cancelling was asked for."""
        async with self.sessions() as session:
            value = await session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
            return bool(value)

    async def last_event(self, job_id: str) -> Event | None:
        """The newest event of a job, as published."""
        async with self.sessions() as session:
            row = (
                await session.execute(
                    _EVENTS.where(JobEvent.job_id == job_id).order_by(JobEvent.seq.desc()).limit(1)
                )
            ).first()
            return as_event(row[1], row[0]) if row is not None else None


async def _append(session: AsyncSession, job: Job, message: str | None) -> JobEvent:
    """Add the event of `job`'s current state, numbered after the job's last one.

    The number comes from one atomic increment of the job's counter in this
    transaction: a concurrent writer of the same job waits for its row (PostgreSQL)
    or for the database (SQLite) and takes the next number, never the same one.
    """
    seq = (
        await session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(last_event_seq=Job.last_event_seq + 1, updated_at=job.updated_at)
            .returning(Job.last_event_seq)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    set_committed_value(job, "last_event_seq", seq)
    ev = JobEvent(
        job_id=job.id,
        seq=seq,
        at=utcnow(),
        status=job.status,
        progress=job.progress or 0.0,
        phase=job.phase,
        message=message if message is not None else job.message,
    )
    session.add(ev)
    await session.flush()
    return ev


def _apply(job: Job, change: Change) -> None:
    now = utcnow()
    if change.new_attempt:
        job.attempts = (job.attempts or 0) + 1
    if change.started:
        job.started_at = now
    if change.status is not None:
        job.status = change.status
        if change.status in TERMINAL:
            job.finished_at = now
        elif change.status == "QUEUED":
            job.finished_at = None
    if change.reopen:
        job.cancel_requested = False
        job.attempts_before_retry = job.attempts or 0
    if change.progress is not None:
        job.progress = max(0.0, min(1.0, change.progress))
    for name in ("phase", "message", "result", "error"):
        value = getattr(change, name)
        if value is not UNSET:
            setattr(job, name, value)
    job.updated_at = now


def as_event(kind: str, ev: JobEvent) -> Event:
    """A recorded event (of a job of `kind`) in its published form."""
    return Event(
        job_id=ev.job_id,
        kind=kind,
        seq=ev.seq,
        at=ev.at,
        status=ev.status,
        progress=ev.progress,
        phase=ev.phase,
        message=ev.message,
    )
