"""Crash safety: a worker killed mid-job, and Redis losing every queued job."""

from __future__ import annotations

import asyncio

from arq.constants import job_key_prefix

from gateway.jobs.queue import Keys
from gateway.runtime import Runtime
from tests.conftest import JobEnv
from tests.jobs_support import JOB_FIELDS, big_study, gql_data, instance_uids, store_files, wait_job

SYNC = f"mutation($input: SyncInput!) {{ syncStudies(input: $input) {{ {JOB_FIELDS} }} }}"


def test_worker_killed_twice_mid_sync(job_env: JobEnv) -> None:
    study, files = big_study(1000, seed=21)
    asyncio.run(store_files(job_env.settings, "orthanc", files))
    source = asyncio.run(instance_uids(job_env.settings, "orthanc", study))
    assert len(source) == 1000
    worker = job_env.worker("crash-worker").start()
    try:
        with job_env.client() as client:
            job = gql_data(
                client,
                SYNC,
                input={"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": [study]},
            )["syncStudies"]
            for threshold in (0.15, 0.45):
                seen = wait_job(
                    client,
                    job["id"],
                    until=lambda j, t=threshold: j["status"] == "RUNNING" and j["progress"] >= t,
                )
                assert seen["status"] == "RUNNING"
                worker.kill()
                worker.start()
            done = wait_job(client, job["id"], timeout=240)
    finally:
        worker.stop()
    assert done["status"] == "SUCCEEDED", done
    assert done["attempts"] >= 3, "the job ran again after each crash"
    assert done["result"]["verified"] is True
    held = asyncio.run(instance_uids(job_env.settings, "dcm4chee", study))
    assert len(held) == len(set(held)) == 1000, "none duplicated, none missing"
    assert set(held) == set(source)


def test_redis_losing_the_queue_loses_no_job(job_env: JobEnv) -> None:
    study, files = big_study(20, seed=22)
    asyncio.run(store_files(job_env.settings, "orthanc", files))
    body = {"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": [study]}
    with job_env.client() as client:
        queued = gql_data(client, SYNC, input=body)["syncStudies"]
        assert queued["status"] == "QUEUED"

        async def wipe() -> None:  # what a Redis restart without persistence does
            runtime = await Runtime.create(job_env.settings, run_migrations=False)
            try:
                keys = Keys.for_database(job_env.settings.database_url)
                await runtime.redis.delete(keys.queue, f"{job_key_prefix}{queued['id']}:0")
            finally:
                await runtime.aclose()

        asyncio.run(wipe())
        worker = job_env.worker("redis-worker").start()
        try:
            done = wait_job(client, queued["id"], timeout=60)
        finally:
            worker.stop()
    assert done["status"] == "SUCCEEDED", done
    assert set(asyncio.run(instance_uids(job_env.settings, "dcm4chee", study))) >= {
        i for i in asyncio.run(instance_uids(job_env.settings, "orthanc", study))
    }
