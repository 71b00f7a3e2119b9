"""Job state rules on the real database: stale attempts and finished jobs are never rewritten."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core.errors import InvalidInput
from gateway.jobs.store import Change
from gateway.runtime import Runtime
from tests.conftest import JobEnv


def test_a_stale_attempt_cannot_write_and_a_final_job_stays_final(job_env: JobEnv) -> None:
    async def scenario() -> None:
        runtime = await Runtime.create(job_env.settings, run_migrations=False)
        try:
            service = runtime.job_service()
            job, _ = await service.store.create("SYNC", {"state-test": 1}, "test")
            start = Change(status="RUNNING", started=True, new_attempt=True)
            assert await service.store.record(job.id, start) is not None  # attempt 1
            assert await service.requeue(job.id, "worker lost", attempt=1)  # reconcile
            assert await service.store.record(job.id, start) is not None  # attempt 2
            # the first attempt's worker wakes up: neither its progress nor its end is taken
            assert await service.store.record(job.id, Change(progress=0.9, attempt=1)) is None
            late = Change(status="FAILED", error="late", attempt=1)
            assert await service.store.record(job.id, late) is None
            assert not await service.requeue(job.id, "worker lost", attempt=1)
            done = Change(status="SUCCEEDED", progress=1.0, result={"ok": 1}, attempt=2)
            assert await service.store.record(job.id, done) is not None
            # a reconcile pass that saw it RUNNING earlier must not bring it back
            assert not await service.requeue(job.id, "worker lost", attempt=2)
            with pytest.raises(InvalidInput):
                await service.retry(job.id)  # only FAILED or CANCELLED
            final = await service.store.get(job.id)
            assert final is not None
            assert (final.status, final.attempts, final.result) == ("SUCCEEDED", 2, {"ok": 1})
        finally:
            await runtime.aclose()

    asyncio.run(scenario())


def test_a_cancel_request_survives_a_requeue_and_retry_clears_it(job_env: JobEnv) -> None:
    async def scenario() -> None:
        runtime = await Runtime.create(job_env.settings, run_migrations=False)
        try:
            service = runtime.job_service()
            job, _ = await service.store.create("SYNC", {"state-test": 2}, "test")
            start = Change(status="RUNNING", started=True, new_attempt=True)
            await service.store.record(job.id, start)
            await service.cancel(job.id)  # running: stops at its next checkpoint
            await runtime.redis.delete(runtime.keys.cancel(job.id))  # as a Redis restart would
            assert await service.requeue(job.id, "retrying", attempt=1)
            assert await service.store.cancel_requested(job.id)
            await service.store.record(job.id, Change(status="CANCELLED", attempt=1))
            retried = await service.retry(job.id)
            assert retried.status == "QUEUED" and retried.result is None
            assert not await service.store.cancel_requested(job.id)
        finally:
            await runtime.aclose()

    asyncio.run(scenario())


def test_a_retried_job_gets_its_automatic_retries_again(job_env: JobEnv) -> None:
    from gateway.core.errors import SourceUnavailable
    from workers.runner import MAX_ATTEMPTS, DbJobHandle, _execute

    async def flaky(*_: object) -> dict:
        raise SourceUnavailable("orthanc", "connection refused")

    async def scenario() -> tuple[str, str, int]:
        runtime = await Runtime.create(job_env.settings, run_migrations=False)
        try:
            service = runtime.job_service()
            body = {"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": ["1.2.3.3"]}
            job, _ = await service.store.create("SYNC", body, "test")
            for attempt in range(1, MAX_ATTEMPTS + 1):  # every automatic retry used up
                handle = DbJobHandle(service, job.id, attempt)
                last = await _execute(runtime, service, handle, flaky, "SYNC", body)
            assert last == "FAILED"
            await service.retry(job.id)
            handle = DbJobHandle(service, job.id, MAX_ATTEMPTS + 1)
            again = await _execute(runtime, service, handle, flaky, "SYNC", body)
            row = await service.store.get(job.id)
            assert row is not None
            await service.cancel(job.id)  # nothing left queued
            return again, row.status, row.attempts_before_retry
        finally:
            await runtime.aclose()

    again, status, base = asyncio.run(scenario())
    assert (again, status, base) == ("retrying", "QUEUED", MAX_ATTEMPTS)
