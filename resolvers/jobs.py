"""Job queries, mutations and subscriptions."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import strawberry

from gateway.jobs.events import Event, Listener
from gateway.jobs.service import JobService
from gateway.jobs.specs import parse_spec
from gateway.jobs.store import JobStore
from resolvers.common import PageInfo, bad_input, check_first, decode_cursor, encode_cursor
from resolvers.context import Context, Info
from resolvers.job_types import (
    AnonymizeInput,
    Job,
    JobConnection,
    JobEdge,
    JobEvent,
    JobKind,
    JobStatus,
    RtStructInput,
    RtStructResult,
    SyncInput,
)
from resolvers.rtstruct_results import rtstruct_results

IDLE_RECHECK_S = 5.0


def store_of(ctx: Context) -> JobStore:
    """The job store over this runtime's database."""
    return JobStore(ctx.runtime.sessions)


def service_of(ctx: Context) -> JobService:
    """Job operations for this runtime."""
    return ctx.runtime.job_service()


def _cursor(job: Any) -> str:
    return encode_cursor(f"{job.created_at.isoformat()}|{job.id}", "j")


def _after(cursor: str | None) -> tuple[str, str] | None:
    if cursor is None:
        return None
    at, sep, job_id = decode_cursor(cursor, "j").partition("|")
    if not sep:
        raise bad_input("invalid cursor")
    return at, job_id


@strawberry.type
class JobQuery:
    @strawberry.field
    async def job(self, info: Info, id: strawberry.ID) -> Job | None:
        row = await store_of(info.context).get(str(id))
        return Job(row=row) if row is not None else None

    @strawberry.field
    async def jobs(
        self,
        info: Info,
        kind: JobKind | None = None,
        status: JobStatus | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> JobConnection:
        first = 50 if first is None else first
        check_first(first)
        rows, more, total = await store_of(info.context).page(kind, status, first, _after(after))
        edges = [JobEdge(node=Job(row=r), cursor=_cursor(r)) for r in rows]
        return JobConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=more, end_cursor=edges[-1].cursor if edges else None),
            total_count=total,
        )

    @strawberry.field
    async def rt_struct_results(self, info: Info, study_instance_uid: str) -> list[RtStructResult]:
        return await rtstruct_results(store_of(info.context), study_instance_uid)


async def _submit(info: Info, kind: JobKind, body: dict[str, Any]) -> Job:
    ctx = info.context
    spec = parse_spec(kind, body, ctx.runtime.settings)
    return Job(row=await service_of(ctx).submit(spec, ctx.caller.id))


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def sync_studies(self, info: Info, input: SyncInput) -> Job:
        return await _submit(info, JobKind.SYNC, input.as_input())

    @strawberry.mutation
    async def anonymize_study(self, info: Info, input: AnonymizeInput) -> Job:
        return await _submit(info, JobKind.ANONYMIZE, input.as_input())

    @strawberry.mutation
    async def process_rt_struct(self, info: Info, input: RtStructInput) -> Job:
        return await _submit(info, JobKind.RTSTRUCT, input.as_input())

    @strawberry.mutation
    async def cancel_job(self, info: Info, id: strawberry.ID) -> Job:
        return Job(row=await service_of(info.context).cancel(str(id)))

    @strawberry.mutation
    async def retry_job(self, info: Info, id: strawberry.ID) -> Job:
        return Job(row=await service_of(info.context).retry(str(id)))


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Current state first, then every change; completes after the terminal event."
    )
    async def job_progress(self, info: Info, id: strawberry.ID) -> AsyncGenerator[JobEvent, None]:
        runtime, store = info.context.runtime, store_of(info.context)
        async with Listener(runtime.redis, runtime.keys.job_events(str(id))) as listener:
            current = await store.last_event(str(id))
            if current is None:
                raise bad_input(f"no job with id {str(id)!r}")
            yield JobEvent.of(current)
            last = current
            while not last.terminal:
                # pub/sub only wakes us: the recorded events are the truth, so one published
                # out of order (two writers) or lost (Redis away) is still delivered, in order
                await listener.next(IDLE_RECHECK_S)
                for ev in await store.events_after(str(id), last.seq):
                    yield JobEvent.of(ev)
                    last = ev
                    if last.terminal:
                        break

    @strawberry.subscription(description="Every job's events, for dashboards.")
    async def job_events(
        self, info: Info, kinds: list[JobKind] | None = None
    ) -> AsyncGenerator[JobEvent, None]:
        runtime = info.context.runtime
        wanted = {k.value for k in kinds or []}
        async with Listener(runtime.redis, runtime.keys.all_events) as listener:
            while True:
                ev: Event | None = await listener.next(IDLE_RECHECK_S)
                if ev is not None and (not wanted or ev.kind in wanted):
                    yield JobEvent.of(ev)
