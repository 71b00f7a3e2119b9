"""Job queries, mutations and subscriptions."""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from aiodataloader import DataLoader

from gateway.core.errors import InvalidInput
from gateway.jobs.events import Event, Listener
from gateway.jobs.service import JobService
from gateway.jobs.store import JobStore
from resolvers.common import PageInfo, bad_input
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
from workers.jobs import KINDS

MAX_JOBS_PAGE = 500
IDLE_RECHECK_S = 5.0


def store_of(ctx: Context) -> JobStore:
    """The job store over this runtime's database."""
    return JobStore(ctx.runtime.sessions)


def service_of(ctx: Context) -> JobService:
    """Job operations for this runtime."""
    return ctx.runtime.job_service()


class JobEventsLoader(DataLoader[str, list[JobEvent]]):
    """Every requested job's events in one query."""

    def __init__(self, store: JobStore) -> None:
        super().__init__()
        self.store = store

    async def batch_load_fn(self, keys: list[str]) -> list[list[JobEvent]]:
        """Events of each job, oldest first."""
        events = await self.store.events_of(keys)
        return [[JobEvent.of(ev) for ev in events[k]] for k in keys]


def events_loader(ctx: Context) -> JobEventsLoader:
    """This request's events loader."""
    loader = ctx.extras.get("job_events")
    if loader is None:
        loader = ctx.extras["job_events"] = JobEventsLoader(store_of(ctx))
    return loader


def _cursor(job: Any) -> str:
    return base64.urlsafe_b64encode(f"j:{job.created_at.isoformat()}|{job.id}".encode()).decode()


def _after(cursor: str | None) -> tuple[str, str] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        at, job_id = raw[2:].split("|", 1)
    except (ValueError, UnicodeDecodeError):
        raise bad_input("invalid cursor") from None
    if not raw.startswith("j:"):
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
        if first < 0 or first > MAX_JOBS_PAGE:
            raise bad_input(f"first must be between 0 and {MAX_JOBS_PAGE}", "PAGE_SIZE_EXCEEDED")
        rows, more, total = await store_of(info.context).page(
            kind.value if kind else None, status.value if status else None, first, _after(after)
        )
        edges = [JobEdge(node=Job(row=r), cursor=_cursor(r)) for r in rows]
        return JobConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=more, end_cursor=edges[-1].cursor if edges else None),
            total_count=total,
        )

    @strawberry.field
    async def rt_struct_results(self, info: Info, study_instance_uid: str) -> list[RtStructResult]:
        return await rtstruct_results(store_of(info.context), study_instance_uid)


async def _submit(info: Info, kind: str, body: dict[str, Any]) -> Job:
    ctx = info.context
    spec = KINDS.get(kind)
    if spec is None:
        raise InvalidInput(f"{kind} jobs are not available in this version")
    spec.validate(body, ctx.runtime.settings)
    row = await service_of(ctx).submit(kind, body, ctx.caller.id)
    return Job(row=row)


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def sync_studies(self, info: Info, input: SyncInput) -> Job:
        return await _submit(info, "SYNC", input.as_input())

    @strawberry.mutation
    async def anonymize_study(self, info: Info, input: AnonymizeInput) -> Job:
        return await _submit(info, "ANONYMIZE", input.as_input())

    @strawberry.mutation
    async def process_rt_struct(self, info: Info, input: RtStructInput) -> Job:
        return await _submit(info, "RTSTRUCT", input.as_input())

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
