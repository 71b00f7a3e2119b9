"""Job queries, mutations and subscriptions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from typing import Any

import strawberry

from gateway.auth import policy
from gateway.auth.audit import Entry
from gateway.auth.principal import Principal
from gateway.core.errors import Forbidden, InvalidInput, TooManySubscriptions, shown
from gateway.core.uids import is_uid
from gateway.db.models import Job as JobRow
from gateway.jobs.events import Event, HubListener
from gateway.jobs.service import JobService
from gateway.jobs.specs import parse_spec
from gateway.jobs.store import JobStore
from resolvers.common import PageInfo, bad_input, check_first
from resolvers.context import Context, Info
from resolvers.cursors import decode_cursor, encode_cursor
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


def job_id(value: object) -> str:
    """A job id as the API takes it (a UUID); BAD_USER_INPUT for anything else."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise bad_input("id: not a job id") from None


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
        caller = info.context.require_caller()
        store = store_of(info.context)
        row = await store.get(job_id(id))
        if row is None:
            return None
        if policy.may_see_job(caller, row.owner):
            return Job(row=row)
        if await store.is_viewer(row.id, caller.user_id):
            return Job(row=row, recipient=True)
        return None  # another's job is as unknown as a job that does not exist

    @strawberry.field
    async def jobs(
        self,
        info: Info,
        kind: JobKind | None = None,
        status: JobStatus | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> JobConnection:
        caller = info.context.require_caller()
        first = 50 if first is None else first
        check_first(first)
        owner = None if caller.is_admin else caller.user_id
        rows, more, total = await store_of(info.context).page(
            kind, status, first, _after(after), owner
        )
        edges = [  # a job the caller did not submit is listed because they are its recipient
            JobEdge(
                node=Job(row=r, recipient=not caller.is_admin and r.owner != owner),
                cursor=_cursor(r),
            )
            for r in rows
        ]
        return JobConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=more, end_cursor=edges[-1].cursor if edges else None),
            total_count=total,
        )

    @strawberry.field
    async def rt_struct_results(self, info: Info, study_instance_uid: str) -> list[RtStructResult]:
        caller = info.context.require_caller()
        # clinical users see every structure set's results (the watcher's too); others their own
        owner = None if policy.sees_identity(caller) else caller.user_id
        if not is_uid(study_instance_uid):
            raise bad_input("studyInstanceUid: a DICOM UID is required")
        return await rtstruct_results(store_of(info.context), study_instance_uid, owner)


async def _submit(info: Info, kind: JobKind, body: dict[str, Any]) -> Job:
    ctx = info.context
    caller = ctx.require_caller()
    spec = parse_spec(kind, body, ctx.runtime.settings)
    clinical = bool(getattr(spec, "allow_clinical_destination", False))
    try:
        policy.check_submit(
            caller, kind, spec.sources, ctx.runtime.settings, clinical_destination=clinical
        )
    except Forbidden:
        _audit(ctx, "job-submit", None, "refused", {"kind": kind.value})
        raise
    recipients: tuple[str, ...] = getattr(spec, "recipients", ())
    viewers = await ctx.runtime.auth.recipients(recipients) if recipients else []
    row = await service_of(ctx).submit(spec, caller.actor, caller.user_id, viewers)
    details: dict[str, Any] = {"kind": kind.value}
    if clinical:
        details["allowClinicalDestination"] = True
    if viewers:
        details["recipients"] = viewers  # user ids
    _audit(ctx, "job-submit", row.id, "ok", details)
    return Job(row=row)


async def _own_job(info: Info, job_id: str, what: str) -> None:
    ctx = info.context
    caller = ctx.require_caller()
    row = await store_of(ctx).get(job_id)
    if row is None:
        raise InvalidInput(f"no job with id {shown(job_id)}")
    try:
        policy.require_job(caller, row.owner, what)
    except Forbidden:
        _audit(ctx, f"job-{what}", job_id, "refused", None)
        raise


MAX_SUBSCRIPTIONS_PER_CALLER = 50


def _listen(ctx: Context, caller: Principal, job_id: str | None) -> HubListener:
    """A listener on this process's event hub; a caller holds at most
    MAX_SUBSCRIPTIONS_PER_CALLER of them at once."""
    if ctx.runtime.events.open_for(caller.actor) >= MAX_SUBSCRIPTIONS_PER_CALLER:
        raise TooManySubscriptions(
            f"at most {MAX_SUBSCRIPTIONS_PER_CALLER} open subscriptions per caller"
        )
    return ctx.runtime.events.listen(job_id, owner=caller.actor)


async def _may_see(store: JobStore, caller: Principal, row: JobRow) -> bool:
    """Whether the caller may follow the job: owner, admin, or a named recipient."""
    return policy.may_see_job(caller, row.owner) or await store.is_viewer(row.id, caller.user_id)


def _audit(ctx: Context, action: str, job_id: str | None, outcome: str, details: Any) -> None:
    ctx.runtime.audit.submit(
        Entry(
            actor=ctx.caller.actor if ctx.caller else None,
            action=action,
            outcome=outcome,
            object_type="job",
            object_ref=job_id,
            address=ctx.address,
            details=details,
        )
    )


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

    @strawberry.mutation(description="Admins: build an archive's key index (a full listing).")
    async def build_index(self, info: Info, source: strawberry.ID) -> Job:
        return await _submit(info, JobKind.INDEX, {"source": str(source)})

    @strawberry.mutation
    async def cancel_job(self, info: Info, id: strawberry.ID) -> Job:
        await _own_job(info, job_id(id), "cancel")
        row = await service_of(info.context).cancel(str(id))
        _audit(info.context, "job-cancel", row.id, "ok", None)
        return Job(row=row)

    @strawberry.mutation
    async def retry_job(self, info: Info, id: strawberry.ID) -> Job:
        await _own_job(info, job_id(id), "retry")
        stored = await store_of(info.context).get(str(id))
        try:  # a finished job's input may have been redacted (its identifiers hashed)
            if stored is not None:
                parse_spec(stored.kind, dict(stored.input or {}), info.context.runtime.settings)
        except InvalidInput:
            raise InvalidInput(
                "this job's input can no longer run (its identifiers were redacted when it "
                "ended): submit the job again"
            ) from None
        row = await service_of(info.context).retry(str(id))
        _audit(info.context, "job-retry", row.id, "ok", None)
        return Job(row=row)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Current state first, then every change; completes after the terminal event."
    )
    async def job_progress(self, info: Info, id: strawberry.ID) -> AsyncGenerator[JobEvent, None]:
        ctx = info.context
        caller = ctx.require_caller()
        store = store_of(ctx)
        row = await store.get(job_id(id))
        if row is None or not await _may_see(store, caller, row):
            raise bad_input(f"no job with id {shown(str(id))}")
        async with _listen(ctx, caller, str(id)) as listener:
            current = await store.last_event(str(id))
            if current is None:
                raise bad_input(f"no job with id {shown(str(id))}")
            yield JobEvent.of(current)
            last = current
            while not last.terminal:
                # pub/sub only wakes us: the recorded events are the truth, so one published
                # out of order (two writers) or lost (Redis away) is still delivered, in order
                await listener.next(IDLE_RECHECK_S)
                await ctx.still_authenticated()
                if not await _may_see(store, ctx.require_caller(), row):
                    raise Forbidden("jobProgress: not your job")  # rights changed meanwhile
                for ev in await store.events_after(str(id), last.seq):
                    yield JobEvent.of(ev)
                    last = ev
                    if last.terminal:
                        break

    @strawberry.subscription(description="Every job's events, for dashboards.")
    async def job_events(
        self, info: Info, kinds: list[JobKind] | None = None
    ) -> AsyncGenerator[JobEvent, None]:
        ctx = info.context
        ctx.require_caller()
        store = store_of(ctx)
        wanted = {k.value for k in kinds or []}
        seen: dict[tuple[str, str | None], bool] = {}  # (job, user) -> visible, once each
        async with _listen(ctx, ctx.require_caller(), None) as listener:
            while True:
                ev: Event | None = await listener.next(IDLE_RECHECK_S)
                await ctx.still_authenticated()
                caller = ctx.require_caller()  # as of now: rights may have changed
                if ev is None or (wanted and ev.kind not in wanted):
                    continue
                if not caller.is_admin:
                    key = (ev.job_id, caller.user_id)
                    if key not in seen:
                        row = await store.get(ev.job_id)
                        seen[key] = row is not None and await _may_see(store, caller, row)
                    if not seen[key]:
                        continue
                yield JobEvent.of(ev)
