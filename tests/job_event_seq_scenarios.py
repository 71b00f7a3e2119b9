"""Job event numbering, as scenarios run on SQLite (unit) and PostgreSQL (integration)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command

from gateway.core.enums import JobKind, JobStatus
from gateway.db.engine import alembic_config, make_engine, sessionmaker
from gateway.jobs.events import Event
from gateway.jobs.store import Change, JobStore

BEFORE_SEQ = "0004_attempts_before_retry"


def seqs(events: list[Event]) -> list[int]:
    """The numbers of `events`, as listed."""
    return [e.seq for e in events]


async def numbered_in_order(store: JobStore) -> None:
    """A job's events come back numbered 1..n in the order they were recorded."""
    job, first = await store.create(JobKind.SYNC, {"seq-test": "order"}, "test")
    assert first is not None and first.seq == 1
    changes = [
        Change(status=JobStatus.RUNNING, started=True, new_attempt=True),
        Change(progress=0.25, phase="fetch"),
        Change(progress=0.75, phase="store"),
        Change(status=JobStatus.SUCCEEDED, progress=1.0, result={"ok": 1}),
    ]
    recorded = [await store.record(job.id, change) for change in changes]
    assert [e.seq if e else None for e in recorded] == [2, 3, 4, 5]
    events = (await store.events_of([job.id]))[job.id]
    assert seqs(events) == [1, 2, 3, 4, 5]
    assert [e.status for e in events] == ["QUEUED", "RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"]
    assert [e.progress for e in events] == [0.0, 0.0, 0.25, 0.75, 1.0]
    assert seqs(await store.events_after(job.id, 2)) == [3, 4, 5]
    assert await store.events_after(job.id, 5) == []
    last = await store.last_event(job.id)
    assert last is not None and (last.seq, last.status) == (5, "SUCCEEDED")
    row = await store.get(job.id)
    assert row is not None and row.last_event_seq == 5
    # a refused change (the job is final) takes no number; a retry goes on from the last
    assert await store.record(job.id, Change(progress=0.1)) is None
    again = await store.record(job.id, Change(status=JobStatus.QUEUED, reopen=True))
    assert again is not None and again.seq == 6


async def independent_per_job(store: JobStore) -> None:
    """Two jobs written in turns each count from 1."""
    a, _ = await store.create(JobKind.SYNC, {"seq-test": "a"}, "test")
    b, _ = await store.create(JobKind.ANONYMIZE, {"seq-test": "b"}, "test")
    start = Change(status=JobStatus.RUNNING, started=True, new_attempt=True)
    for job_id, change in [
        (a.id, start),
        (b.id, start),
        (a.id, Change(progress=0.5)),
        (a.id, Change(progress=0.6)),
        (b.id, Change(progress=0.1)),
    ]:
        assert await store.record(job_id, change) is not None
    events = await store.events_of([a.id, b.id])
    assert seqs(events[a.id]) == [1, 2, 3, 4]
    assert seqs(events[b.id]) == [1, 2, 3]
    assert {e.job_id for e in events[a.id]} == {a.id}
    assert [e.progress for e in events[b.id]] == [0.0, 0.0, 0.1]


async def concurrent_writers(store: JobStore, writers: int = 20) -> None:
    """Writers of one job at the same time never share a number and leave no gap."""
    job, _ = await store.create(JobKind.SYNC, {"seq-test": "concurrent"}, "test")
    await store.record(job.id, Change(status=JobStatus.RUNNING, started=True, new_attempt=True))
    changes = [Change(progress=i / writers, message=f"w{i}") for i in range(writers)]
    recorded = await asyncio.gather(*(store.record(job.id, c) for c in changes))
    assert sorted(e.seq for e in recorded if e is not None) == list(range(3, writers + 3))
    events = (await store.events_of([job.id]))[job.id]
    assert seqs(events) == list(range(1, writers + 3))
    # each event is the state its own writer left: the message a writer set is in its event
    by_message = {e.message: e.seq for e in events[2:]}
    assert {r.message: r.seq for r in recorded if r is not None} == by_message


JOBS = sa.table(
    "jobs",
    sa.column("id", sa.String),
    sa.column("kind", sa.String),
    sa.column("status", sa.String),
    sa.column("progress", sa.Float),
    sa.column("attempts", sa.Integer),
    sa.column("input", sa.JSON),
    sa.column("requested_by", sa.String),
    sa.column("cancel_requested", sa.Boolean),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
EVENTS = sa.table(
    "job_events",
    sa.column("id", sa.Integer),
    sa.column("job_id", sa.String),
    sa.column("seq", sa.Integer),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("status", sa.String),
    sa.column("progress", sa.Float),
)


async def migration_numbers_existing_events(url: str) -> None:
    """0005 numbers the events recorded before it per job by (at, id); the counter goes on."""
    cfg = alembic_config(url)
    await asyncio.to_thread(command.upgrade, cfg, BEFORE_SEQ)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            for job_id in ("job-a", "job-b", "job-quiet"):
                await conn.execute(
                    JOBS.insert().values(
                        id=job_id,
                        kind="SYNC",
                        status="RUNNING",
                        progress=0.0,
                        attempts=1,
                        input={"job": job_id},
                        requested_by="test",
                        cancel_requested=False,
                        created_at=t0,
                        updated_at=t0,
                    )
                )
            # (name, job, seconds after t0) inserted in this order, every seq 0 as the old code
            # wrote it: ids out of time order (a2 before a1), a tie on `at` broken by id (b2, b3)
            rows = [("a0", "job-a", 0), ("a2", "job-a", 30), ("b0", "job-b", 5)]
            rows += [("a1", "job-a", 10), ("b2", "job-b", 20), ("b3", "job-b", 20)]
            rows += [("a3", "job-a", 40)]
            ids: dict[int, str] = {}
            for name, job_id, s in rows:
                new = EVENTS.insert().values(
                    job_id=job_id,
                    seq=0,
                    at=t0 + timedelta(seconds=s),
                    status="RUNNING",
                    progress=0.0,
                )
                ids[(await conn.execute(new.returning(EVENTS.c.id))).scalar_one()] = name
        await asyncio.to_thread(command.upgrade, cfg, "head")
        async with engine.connect() as conn:
            numbered = (
                await conn.execute(sa.text("SELECT id, seq FROM job_events ORDER BY id"))
            ).all()
            counters = dict(
                (await conn.execute(sa.text("SELECT id, last_event_seq FROM jobs"))).all()
            )
        assert {ids[i]: seq for i, seq in numbered} == {
            "a0": 1,
            "a1": 2,
            "a2": 3,
            "a3": 4,
            "b0": 1,
            "b2": 2,
            "b3": 3,
        }
        assert counters == {"job-a": 4, "job-b": 3, "job-quiet": 0}
        store = JobStore(sessionmaker(engine))
        after = await store.record("job-a", Change(progress=0.5))
        assert after is not None and after.seq == 5
        quiet = await store.record("job-quiet", Change(progress=0.5))
        assert quiet is not None and quiet.seq == 1
        assert seqs((await store.events_of(["job-b"]))["job-b"]) == [1, 2, 3]
    finally:
        await engine.dispose()
