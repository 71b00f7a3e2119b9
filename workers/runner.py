"""The one arq function: run a job from its DB row, under a lease, reporting progress."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from redis.exceptions import RedisError

from gateway.core.enums import JobStatus
from gateway.core.errors import (
    InvalidInput,
    JobCancelled,
    JobError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.jobs import queue
from gateway.jobs.service import JobService
from gateway.jobs.specs import JobSpec, parse_spec
from gateway.jobs.store import ACTIVE, Change
from gateway.metrics import record as metrics
from gateway.metrics import tracing
from gateway.runtime import Runtime
from workers.jobs.base import Runner

log = logging.getLogger(__name__)

Watch = Callable[[float, str | None, str | None], None]
MAX_ATTEMPTS = 3
RETRY_DELAY_S = 2.0
PUBLISH_EVERY_S = 0.2
CHECK_EVERY_S = 0.2
# a lease lives LEASE_TTL_MS (6 s); renewed every second, so after a Redis restart it is
# back well before reconciliation (2 passes, 2 s apart) would call the worker lost
RENEW_EVERY_S = 1.0


class LeaseLost(Exception):
    """Another worker took over the job (this one was presumed dead)."""


class DbJobHandle:
    """A running job's handle: events recorded in the DB and published on Redis."""

    def __init__(
        self, service: JobService, job_id: str, attempt: int, watch: Watch | None = None
    ) -> None:
        self._service = service
        self._watch = watch
        self._id = job_id
        self._attempt = attempt
        self._last: tuple[float, str | None, str | None] = (-1.0, None, None)
        self._last_at = 0.0
        self._checked_at = 0.0
        self.lease_lost = False
        self._trace_parent = tracing.current_context()  # the job's span
        self._phase: tuple[str, Any] | None = None  # (phase, its span)

    @property
    def id(self) -> str:
        """The job id."""
        return self._id

    @property
    def attempt(self) -> int:
        """1 on the first run."""
        return self._attempt

    async def progress(
        self, fraction: float, phase: str | None = None, message: str | None = None
    ) -> None:
        """Record and publish, coalesced: a new phase at once, other changes every 0.2 s."""
        fraction = max(0.0, min(1.0, fraction))
        if phase is not None and (self._phase is None or self._phase[0] != phase):
            self._next_phase(phase)
        if self._watch is not None:
            self._watch(fraction, phase, message)
        last_fraction, last_phase, last_message = self._last
        now = time.monotonic()
        if phase == last_phase and (
            now - self._last_at < PUBLISH_EVERY_S
            or (fraction == last_fraction and message == last_message)
        ):
            return
        self._last, self._last_at = (fraction, phase, message), now
        change = Change(progress=fraction, phase=phase, message=message, attempt=self._attempt)
        if await self._service.record(self._id, change) is None:
            self.lease_lost = True  # final, or taken over by a newer attempt: stop soon

    def _next_phase(self, phase: str | None) -> None:
        """End the current phase's span; start `phase`'s (None: the job ended)."""
        if self._phase is not None:
            self._phase[1].end()
            self._phase = None
        if phase is not None and tracing.enabled():
            label = metrics.operation_label(phase)
            span = tracing.start(f"phase {label}", self._trace_parent, {"pacs.job.phase": label})
            self._phase = (phase, span)

    def close(self) -> None:
        """The job ended here: its last phase too."""
        self._next_phase(None)

    async def checkpoint(self) -> None:
        """Raise `JobCancelled` when cancelling was requested, `LeaseLost` when taken over."""
        if self.lease_lost:
            raise LeaseLost(self._id)
        now = time.monotonic()
        if now - self._checked_at < CHECK_EVERY_S:
            return
        self._checked_at = now
        service = self._service
        try:
            flagged = bool(await service.redis.exists(service.keys.cancel(self._id)))
        except (RedisError, OSError):  # Redis away: the database still knows
            flagged = False
        if flagged or await service.store.cancel_requested(self._id):
            raise JobCancelled("cancelled on request")


@contextlib.asynccontextmanager
async def _leased(
    service: JobService, job_id: str, token: str, attempt: int, watch: Watch | None = None
) -> AsyncIterator[DbJobHandle | None]:
    """The job's handle while this process holds its lease (renewed meanwhile); None when
    another live worker holds it."""
    if not await queue.take_lease(service.redis, service.keys, job_id, token):
        yield None
        return
    handle = DbJobHandle(service, job_id, attempt, watch)
    renewer = asyncio.create_task(_renew(service, handle, token))
    try:
        yield handle
    finally:
        handle.close()
        renewer.cancel()
        with contextlib.suppress(BaseException):
            await renewer
        with contextlib.suppress(Exception):
            await queue.drop_lease(service.redis, service.keys, job_id, token)


async def run_job(ctx: dict[str, Any], job_id: str) -> str:
    """Run one job to a final state; a duplicate run of a live or finished job does nothing."""
    runtime: Runtime = ctx["runtime"]
    runners: dict[str, Runner] = ctx["runners"]
    service = runtime.job_service()
    job = await service.store.get(job_id)
    if job is None or job.status not in ACTIVE:
        return "not active"
    attempt = (job.attempts or 0) + 1
    kind = metrics.kind_label(job.kind)
    attributes = {"pacs.job.kind": kind, "pacs.job.id": job_id, "pacs.job.attempt": attempt}
    with tracing.span(f"job {kind}", attributes) as span:
        async with _leased(service, job_id, ctx["worker_token"], attempt) as handle:
            if handle is None:
                return "held by another worker"
            runner = runners.get(job.kind)
            metrics.job_running(job.kind, 1)
            try:
                outcome = await _execute(runtime, service, handle, runner, job.kind, job.input)
            finally:
                metrics.job_running(job.kind, -1)
            if span.is_recording():
                label = metrics.operation_label(outcome.lower().replace(" ", "_"))
                span.set_attribute("pacs.job.outcome", label)
            return outcome


async def run_here(
    runtime: Runtime,
    spec: JobSpec,
    runner: Runner,
    requested_by: str,
    watch: Watch | None = None,
) -> str:
    """Run a new job in this process (the CLI): recorded and published like any other.

    Returns the job id; the job is never put on the queue, so no worker takes it.
    """
    service = runtime.job_service()
    kind, input = spec.kind, spec.as_input()
    job, _ = await service.store.create(kind, input, requested_by)
    attempt = (job.attempts or 0) + 1
    async with _leased(service, job.id, f"local-{job.id}", attempt, watch) as handle:
        if handle is None:
            raise JobError("the job is already running elsewhere")
        await _execute(runtime, service, handle, runner, kind, input, transient_retry=False)
    return job.id


async def _execute(
    runtime: Runtime,
    service: JobService,
    handle: DbJobHandle,
    runner: Runner | None,
    kind: str,
    input: dict[str, Any],
    transient_retry: bool = True,
) -> str:
    job_id = handle.id

    async def final(change: Change) -> str:
        if await service.record(job_id, replace(change, attempt=handle.attempt)) is None:
            return "superseded"
        return change.status or ""

    if await service.store.cancel_requested(job_id):
        return await final(Change(status=JobStatus.CANCELLED, message="cancelled"))
    started = Change(
        status=JobStatus.RUNNING,
        started=True,
        new_attempt=True,
        progress=0.0,
        phase="start",
        error=None,
    )
    if await service.record(job_id, started) is None:
        return "not active"
    if runner is None:
        return await final(
            Change(status=JobStatus.FAILED, error="no worker function for this job kind")
        )
    try:
        result = await runner(handle, runtime, parse_spec(kind, input, runtime.settings))
    except LeaseLost:
        return "lease lost"
    except JobCancelled as exc:
        return await final(
            Change(status=JobStatus.CANCELLED, message="cancelled", result=exc.result)
        )
    except JobError as exc:
        change = Change(
            status=JobStatus.FAILED, error=str(exc), message="failed", result=exc.result
        )
        return await final(change)
    except InvalidInput as exc:
        return await final(Change(status=JobStatus.FAILED, error=str(exc), message="failed"))
    except (SourceUnavailable, SourceTimeout) as exc:
        row = await service.store.get(job_id)
        runs = handle.attempt - (row.attempts_before_retry or 0 if row is not None else 0)
        if transient_retry and runs < MAX_ATTEMPTS:
            delay = RETRY_DELAY_S * handle.attempt
            await service.requeue(job_id, f"retrying: {exc}", delay, attempt=handle.attempt)
            return "retrying"
        return await final(Change(status=JobStatus.FAILED, error=str(exc), message="failed"))
    except Exception as exc:  # anything unforeseen: recorded, never silently lost
        log.error("job %s: unexpected %s", job_id, type(exc).__name__)
        error = f"internal error ({type(exc).__name__})"
        return await final(Change(status=JobStatus.FAILED, error=error, message="failed"))
    return await final(
        Change(
            status=JobStatus.SUCCEEDED, progress=1.0, phase="done", message="done", result=result
        )
    )


async def _renew(service: JobService, handle: DbJobHandle, token: str) -> None:
    while True:
        await asyncio.sleep(RENEW_EVERY_S)
        try:
            if not await queue.take_lease(service.redis, service.keys, handle.id, token):
                handle.lease_lost = True
                return
        except Exception:  # Redis briefly away: keep trying; reconciliation waits two passes
            log.warning("job %s: could not renew its lease", handle.id)
