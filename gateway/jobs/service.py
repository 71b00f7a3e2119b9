"""Submit, cancel, retry and reconcile jobs: what mutations, the CLI and workers call."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from gateway.core.enums import JobStatus
from gateway.core.errors import InvalidInput, shown
from gateway.db.models import Job
from gateway.jobs import queue
from gateway.jobs.events import TERMINAL, Event, publish
from gateway.jobs.specs.base import JobSpec
from gateway.jobs.store import Change, JobStore

log = logging.getLogger(__name__)


class JobService:
    """Job operations over the DB (truth) and Redis (transport)."""

    def __init__(
        self, store: JobStore, redis: ArqRedis, keys: queue.Keys, max_queued_per_owner: int = 0
    ) -> None:
        self.store = store
        self.max_queued = max_queued_per_owner  # 0: no quota
        self.redis = redis
        self.keys = keys
        self._suspects: set[str] = set()

    async def submit(
        self,
        spec: JobSpec,
        requested_by: str,
        owner: str | None = None,
        viewers: Sequence[str] = (),
    ) -> Job:
        """Write the job row for a validated spec, then enqueue it; an identical active job is
        returned instead. `viewers` (user ids) may see it besides its owner.

        If Redis is down the row stays QUEUED and the workers' reconciliation
        enqueues it once Redis is back: nothing is lost. An owner with `max_queued_per_owner`
        jobs already queued is refused (QUOTA_EXCEEDED; a job identical to one of them is
        returned as always).
        """
        job, first = await self.store.create(
            spec.kind, spec.as_input(), requested_by, owner, viewers, self.max_queued
        )
        if first is not None:
            try:
                await queue.enqueue(self.redis, self.keys, job)
                await publish(self.redis, self.keys, first)
            except (RedisError, OSError):
                log.warning("job %s saved but not enqueued: Redis unavailable", job.id)
        return job

    async def cancel(self, job_id: str) -> Job:
        """Cancel a queued job now, a running one at its next safe point."""
        job = await self.store.get(job_id)
        if job is None:
            raise InvalidInput(f"no job with id {shown(job_id)}")
        if job.status in TERMINAL:
            raise InvalidInput(f"job is already {job.status}")
        await self.store.request_cancel(job_id)
        await self.redis.set(self.keys.cancel(job_id), "1", ex=86400)
        if job.status == JobStatus.QUEUED and not await queue.has_lease(
            self.redis, self.keys, job_id
        ):
            await self.record(job_id, Change(status=JobStatus.CANCELLED, message="cancelled"))
        else:
            await self.record(job_id, Change(message="cancel requested"))
        return await self._reload(job_id)

    async def retry(self, job_id: str) -> Job:
        """Re-queue a failed or cancelled job."""
        job = await self.store.get(job_id)
        if job is None:
            raise InvalidInput(f"no job with id {shown(job_id)}")
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise InvalidInput(f"only FAILED or CANCELLED jobs can be retried, not {job.status}")
        await self.redis.delete(self.keys.cancel(job_id))
        change = Change(
            status=JobStatus.QUEUED,
            progress=0.0,
            phase=None,
            message="retry requested",
            error=None,
            result=None,
            reopen=True,
        )
        if await self.record(job_id, change) is None:
            raise InvalidInput("the job changed meanwhile; look at it again")
        job = await self._reload(job_id)
        await queue.enqueue(self.redis, self.keys, job)
        return job

    async def requeue(
        self, job_id: str, message: str, defer_s: float = 0, attempt: int | None = None
    ) -> bool:
        """Put an active job back on the queue for its next attempt (transient failure, lost
        worker); with `attempt`, only while that attempt is still the job's current one."""
        if await self.record(
            job_id, Change(status=JobStatus.QUEUED, message=message, attempt=attempt)
        ):
            await queue.enqueue(self.redis, self.keys, await self._reload(job_id), defer_s)
            return True
        return False

    async def reconcile(self) -> list[str]:
        """Re-enqueue jobs the DB says are active but that no live worker or queue holds.

        A RUNNING job without a lease is re-queued only when seen so on two
        passes in a row, so a lease lost to a Redis restart can be renewed first.
        Returns the ids re-enqueued.
        """
        fixed: list[str] = []
        suspects: set[str] = set()
        for job in await self.store.active():
            if await queue.has_lease(self.redis, self.keys, job.id):
                continue
            if job.status == JobStatus.RUNNING:
                if job.id not in self._suspects:
                    suspects.add(job.id)
                    continue
                await queue.forget(self.redis, self.keys, f"{job.id}:{(job.attempts or 1) - 1}")
                if await self.requeue(job.id, "worker lost; re-queued", attempt=job.attempts):
                    fixed.append(job.id)
            elif job.status == JobStatus.QUEUED and not await queue.is_queued(
                self.redis, self.keys, job
            ):
                await queue.enqueue(self.redis, self.keys, job)
                fixed.append(job.id)
        self._suspects = suspects
        if fixed:
            log.warning("reconcile: re-enqueued %d job(s)", len(fixed))
        return fixed

    async def record(self, job_id: str, change: Change) -> Event | None:
        """Apply a change to the job row and publish its event; None if the job is final."""
        ev = await self.store.record(job_id, change)
        if ev is not None:
            try:
                await publish(self.redis, self.keys, ev)
            except (RedisError, OSError):  # the row is the truth; subscribers re-read it
                log.warning("job %s: event recorded but not published (Redis away)", job_id)
        return ev

    async def _reload(self, job_id: str) -> Job:
        job = await self.store.get(job_id)
        assert job is not None
        return job
