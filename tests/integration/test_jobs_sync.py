"""Sync jobs end to end: GraphQL mutation → arq worker process → real archives → verified."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.devstack.seed.archives import seed_archives
from gateway.jobs.specs import SyncSpec
from gateway.runtime import Runtime
from gateway.sources.base import InstanceQuery, StudyQuery
from tests.conftest import JobEnv
from tests.jobs_support import (
    JOB_FIELDS,
    WorkerProcess,
    big_study,
    gql,
    gql_data,
    instance_uids,
    store_files,
    wait_job,
)

SYNC = f"mutation($input: SyncInput!) {{ syncStudies(input: $input) {{ {JOB_FIELDS} }} }}"


@pytest.fixture(scope="module")
def seeded(job_env: JobEnv) -> JobEnv:
    """The module's stack with the demo data."""
    asyncio.run(seed_archives(job_env.settings, 42, 20, None))
    return job_env


@pytest.fixture(scope="module")
def worker(seeded: JobEnv) -> Iterator[WorkerProcess]:
    """One worker process for the module."""
    proc = seeded.worker().start()
    yield proc
    proc.stop()


async def _instance_sets(env: JobEnv, source_id: str) -> dict[str, set[str]]:
    runtime = await Runtime.create(env.settings, run_migrations=False)
    try:
        source = runtime.sources[source_id]
        studies = await source.find_studies(StudyQuery())
        out = {}
        for s in studies:
            found = await source.find_instances(InstanceQuery(study_uid=s.study_uid))
            out[s.study_uid] = {i.sop_instance_uid for i in found}
        return out
    finally:
        await runtime.aclose()


def _expected_missing(src: dict[str, set[str]], dst: dict[str, set[str]]) -> int:
    return sum(len(uids - dst.get(study, set())) for study, uids in src.items())


def test_dry_run_reports_and_moves_nothing(seeded: JobEnv, worker: WorkerProcess) -> None:
    before_src = asyncio.run(_instance_sets(seeded, "dcm4chee"))
    before_dst = asyncio.run(_instance_sets(seeded, "orthanc"))
    expected = _expected_missing(before_src, before_dst)
    assert expected > 0, "the demo data must leave something to sync"
    with seeded.client() as client:
        job = gql_data(
            client, SYNC, input={"from": "dcm4chee", "to": "orthanc", "all": True, "dryRun": True}
        )["syncStudies"]
        assert job["status"] == "QUEUED" and job["kind"] == "SYNC"
        done = wait_job(client, job["id"])
    assert done["status"] == "SUCCEEDED", done
    result = done["result"]
    assert result["dryRun"] is True
    assert result["instancesToTransfer"] == expected
    assert result["instancesTransferred"] == 0
    assert len(result["studies"]) == len(before_src)
    assert asyncio.run(_instance_sets(seeded, "orthanc")) == before_dst


def test_sync_all_then_nothing_left(seeded: JobEnv, worker: WorkerProcess) -> None:
    src_before = asyncio.run(_instance_sets(seeded, "dcm4chee"))
    dst_before = asyncio.run(_instance_sets(seeded, "orthanc"))
    expected = _expected_missing(src_before, dst_before)
    with seeded.client() as client:
        job = gql_data(client, SYNC, input={"from": "dcm4chee", "to": "orthanc", "all": True})
        done = wait_job(client, job["syncStudies"]["id"])
        assert done["status"] == "SUCCEEDED", done
        result = done["result"]
        for key in ("from", "to", "studies", "instancesTransferred", "instancesSkipped"):
            assert key in result
        for key in ("bytes", "verified", "missingAfter", "durationSeconds"):
            assert key in result
        assert result["verified"] is True and result["missingAfter"] == 0
        assert result["instancesTransferred"] == expected
        assert result["bytes"] > 0
        dst = asyncio.run(_instance_sets(seeded, "orthanc"))
        for study, uids in src_before.items():
            assert uids <= dst[study], "every source instance is in the destination"
        again = gql_data(client, SYNC, input={"from": "dcm4chee", "to": "orthanc", "all": True})
        second = wait_job(client, again["syncStudies"]["id"])
        assert second["status"] == "SUCCEEDED"
        assert second["result"]["instancesTransferred"] == 0
        assert second["result"]["verified"] is True
        history = gql_data(
            client, "{ jobs(kind: SYNC, status: SUCCEEDED) { totalCount edges { node { id } } } }"
        )["jobs"]
        ids = [e["node"]["id"] for e in history["edges"]]
        assert ids[:2] == [second["id"], done["id"]], "newest first"


def test_sync_one_study_by_uid_and_unknown_uid(seeded: JobEnv, worker: WorkerProcess) -> None:
    src = asyncio.run(_instance_sets(seeded, "orthanc"))
    study = sorted(src)[0]
    unknown = "1.2.3.4.5.6.7.8.9"
    with seeded.client() as client:
        job = gql_data(
            client,
            SYNC,
            input={"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": [study, unknown]},
        )
        done = wait_job(client, job["syncStudies"]["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["result"]["studiesNotFound"] == [unknown]
    assert [s["studyInstanceUid"] for s in done["result"]["studies"]] == [study]
    assert src[study] <= asyncio.run(_instance_sets(seeded, "dcm4chee"))[study]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"from": "nowhere", "to": "orthanc", "all": True}, "from: unknown source"),
        ({"from": "orthanc", "to": "orthanc", "all": True}, "must be different"),
        ({"from": "orthanc", "to": "dcm4chee"}, "exactly one of"),
        ({"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": ["x y"]}, "not valid UIDs"),
    ],
)
def test_bad_input_is_refused_with_a_code(seeded: JobEnv, body: dict, needle: str) -> None:
    with seeded.client() as client:
        answer = gql(client, SYNC, input=body)
    assert answer.get("data") is None
    error = answer["errors"][0]
    assert needle in error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


CANCEL = "mutation($id: ID!) { cancelJob(id: $id) { id } }"


def test_unknown_job_and_bad_cancel(seeded: JobEnv) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    job, cancel = "query($id: ID!) { job(id: $id) { id } }", CANCEL
    with seeded.client() as client:
        assert gql_data(client, job, id=unknown)["job"] is None
        answer = gql(client, cancel, id=unknown)
        malformed = [gql(client, job, id="nope\u0000"), gql(client, cancel, id="x" * 10_000)]
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    for bad in malformed:  # refused as input, without echoing it
        [error] = bad["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and len(error["message"]) < 100


def _cli(env: JobEnv, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("pacs-gateway")
    return subprocess.run(
        [str(exe), "sync", "--config", str(env.config), *args],
        env={**os.environ, **env.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_twin_syncs_a_patient_with_a_progress_bar(seeded: JobEnv) -> None:
    src = asyncio.run(_instance_sets(seeded, "legacy"))
    assert src, "the legacy archive holds studies"
    run = _cli(seeded, "--from", "legacy", "--to", "orthanc", "--all")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["status"] == "SUCCEEDED"
    assert summary["result"]["verified"] is True
    assert ("%" in run.stderr and "transfer" in run.stderr) or "plan" in run.stderr
    dst = asyncio.run(_instance_sets(seeded, "orthanc"))
    assert all(uids <= dst[study] for study, uids in src.items())
    with seeded.client() as client:
        query = "query($id: ID!) { job(id: $id) { status input } }"
        job = gql_data(client, query, id=summary["job"])["job"]
    assert job["status"] == "SUCCEEDED" and job["input"]["from"] == "legacy"


def test_cli_twin_refuses_bad_input(seeded: JobEnv) -> None:
    run = _cli(seeded, "--from", "legacy", "--to", "orthanc")
    assert run.returncode == 2
    assert "exactly one of" in run.stderr


def test_idle_periodic_run_costs_one_request(seeded: JobEnv) -> None:
    from workers.jobs import sync
    from workers.runner import run_here

    body = {"from": "dcm4chee", "to": "orthanc", "all": True, "periodic": True}

    async def scenario() -> tuple[dict, dict, int, int]:
        runtime = await Runtime.create(seeded.settings, run_migrations=False)
        try:
            store = runtime.sources
            first = await run_here(
                runtime, SyncSpec.parse(body, runtime.settings), sync.run, "scheduler"
            )
            before = (store["dcm4chee"].stats.calls, store["orthanc"].stats.calls)
            second = await run_here(
                runtime, SyncSpec.parse(body, runtime.settings), sync.run, "scheduler"
            )
            src_calls = store["dcm4chee"].stats.calls - before[0]
            dst_calls = store["orthanc"].stats.calls - before[1]
            from gateway.jobs.store import JobStore

            jobs = JobStore(runtime.sessions)
            a, b = await jobs.get(first), await jobs.get(second)
            assert a is not None and b is not None
            return a.result or {}, b.result or {}, src_calls, dst_calls
        finally:
            await runtime.aclose()

    first, idle, src_calls, dst_calls = asyncio.run(scenario())
    assert len(first["studies"]) > 0, "the first periodic run looks at every study"
    assert idle["studies"] == [] and idle["instancesTransferred"] == 0
    assert src_calls == 1, "one QIDO by date"
    assert dst_calls == 0


async def _all_stable(source: object, limit_s: float = 60.0) -> None:
    """Wait until Orthanc calls every study stable (its StableStudy events are then logged)."""
    http = source.http  # type: ignore[attr-defined]
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        studies = (await http.request("test", "GET", "/studies?expand")).json()
        if studies and all(study.get("IsStable") for study in studies):
            await asyncio.sleep(0.2)
            return
        assert asyncio.get_running_loop().time() < deadline, "Orthanc never became stable"
        await asyncio.sleep(0.25)


def test_periodic_sync_follows_orthancs_change_feed(seeded: JobEnv) -> None:
    from gateway.jobs.store import JobStore
    from workers.jobs import sync
    from workers.runner import run_here

    body = {"from": "orthanc", "to": "dcm4chee", "all": True, "periodic": True}
    new_study, files = big_study(3, seed=41)

    async def scenario() -> tuple[list[dict], list[dict], int, int]:
        runtime = await Runtime.create(seeded.settings, run_migrations=False)
        jobs = JobStore(runtime.sessions)

        async def result(job_id: str) -> dict:
            job = await jobs.get(job_id)
            assert job is not None and job.status == "SUCCEEDED", job and job.error
            return job.result or {}

        try:
            src, dst = runtime.sources["orthanc"], runtime.sources["dcm4chee"]
            await _all_stable(src)  # the seeded studies' own StableStudy events are out
            await run_here(
                runtime, SyncSpec.parse(body, runtime.settings), sync.run, "scheduler"
            )  # full, sets cursor
            assert not (await src.store(files)).failed
            await _all_stable(src)  # every event of the new study is out, however slow the machine
            changed = await result(
                await run_here(runtime, SyncSpec.parse(body, runtime.settings), sync.run, "t")
            )
            before = (src.stats.calls, dst.stats.calls)
            idle = await result(
                await run_here(runtime, SyncSpec.parse(body, runtime.settings), sync.run, "t")
            )
            src_calls, dst_calls = src.stats.calls - before[0], dst.stats.calls - before[1]
            return changed["studies"], idle["studies"], src_calls, dst_calls
        finally:
            await runtime.aclose()

    changed, idle, src_calls, dst_calls = asyncio.run(scenario())
    assert [s["studyInstanceUid"] for s in changed] == [new_study]
    assert changed[0]["transferred"] == 3
    assert idle == []
    assert (src_calls, dst_calls) == (1, 0), "an idle run reads the change feed once"


def _redescribed(files: list[bytes], description: str) -> list[bytes]:
    from io import BytesIO

    from pydicom import dcmread

    out = []
    for blob in files:
        ds = dcmread(BytesIO(blob))
        ds.StudyDescription = description
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def test_conflict_strategies_skip_then_report(seeded: JobEnv) -> None:
    from gateway.jobs.store import JobStore
    from workers.jobs import sync
    from workers.runner import run_here

    study, files = big_study(3, seed=51)
    asyncio.run(store_files(seeded.settings, "orthanc", files))
    asyncio.run(store_files(seeded.settings, "dcm4chee", _redescribed(files[:2], "OTHER")))
    body = {"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": [study]}

    async def run(strategy: str) -> tuple[str, dict]:
        runtime = await Runtime.create(seeded.settings, run_migrations=False)
        try:
            spec = SyncSpec.parse({**body, "conflictStrategy": strategy}, runtime.settings)
            job_id = await run_here(runtime, spec, sync.run, "t")
            job = await JobStore(runtime.sessions).get(job_id)
            assert job is not None
            return job.status, job.result or {}
        finally:
            await runtime.aclose()

    status, skipped = asyncio.run(run("SKIP"))
    assert status == "SUCCEEDED", skipped
    (outcome,) = skipped["studies"]
    assert outcome["outcome"] == "SKIPPED" and outcome["transferred"] == 0
    assert outcome["missing"] == 1 and outcome["missingAfter"] == 1
    assert outcome["conflicts"] == 2 and outcome["skipped"] == 3
    assert len(asyncio.run(instance_uids(seeded.settings, "dcm4chee", study))) == 2

    status, reported = asyncio.run(run("REPORT_ONLY"))
    assert status == "SUCCEEDED", reported
    (outcome,) = reported["studies"]
    assert outcome["outcome"] == "SYNCED" and outcome["transferred"] == 1
    assert outcome["conflicts"] == 2 and "description" in outcome["conflictFields"]
    assert outcome["missingAfter"] == 0 and outcome["verified"] is True
    assert reported["verified"] is True
    assert len(asyncio.run(instance_uids(seeded.settings, "dcm4chee", study))) == 3


def test_the_scheduler_submits_each_pair_once_per_interval(seeded: JobEnv) -> None:
    import contextlib
    import dataclasses

    from sqlalchemy import select

    from gateway.core.errors import InvalidInput
    from gateway.db.models import Job
    from workers.settings import periodic_sync

    settings = dataclasses.replace(seeded.settings, sync_interval_s=60)
    assert [(p.source, p.destination) for p in settings.sync] == [("dcm4chee", "orthanc")]

    async def scheduled(rt: Runtime) -> dict[str, dict]:
        async with rt.sessions() as session:
            rows = await session.scalars(select(Job).where(Job.requested_by == "scheduler"))
            return {j.id: j.input for j in rows}

    async def scenario() -> list[dict]:
        runtimes = [await Runtime.create(settings, run_migrations=False) for _ in range(2)]
        first = runtimes[0]
        service = first.job_service()
        try:
            before = await scheduled(first)
            await first.redis.delete(first.keys.tick("sync"))
            for rt in runtimes:  # two workers wake up in the same interval
                await periodic_sync(rt, rt.job_service())
            new = {k: v for k, v in (await scheduled(first)).items() if k not in before}
            for job_id in new:  # leave nothing behind for the module's worker
                with contextlib.suppress(InvalidInput):
                    await service.cancel(job_id)
            await first.redis.delete(first.keys.tick("sync"))
            return list(new.values())
        finally:
            for rt in runtimes:
                await rt.aclose()

    inputs = asyncio.run(scenario())
    spec = SyncSpec(source="dcm4chee", destination="orthanc", all=True, periodic=True)
    assert inputs == [spec.as_input()]
    assert inputs[0]["periodic"] is True and inputs[0]["all"] is True


def _into_study(files: list[bytes], study_uid: str, number: int) -> list[bytes]:
    """The files moved into another study as its series number `number`."""
    from io import BytesIO

    from pydicom import dcmread

    out = []
    for blob in files:
        ds = dcmread(BytesIO(blob))
        ds.StudyInstanceUID, ds.SeriesNumber = study_uid, number
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def _series_of(files: list[bytes]) -> set[str]:
    from io import BytesIO

    from pydicom import dcmread

    return {str(dcmread(BytesIO(b)).SeriesInstanceUID) for b in files}


def test_a_compare_lists_instances_only_where_counts_differ(seeded: JobEnv) -> None:
    """Levels: a destination lacking one series of a study gets only that series listed
    (series counts found it); once in sync, study counts settle it with no listing."""
    from workers.jobs import sync
    from workers.runner import run_here

    study, first = big_study(4, seed=61)
    _, other = big_study(3, seed=62)
    second = _into_study(other, study, 2)
    asyncio.run(store_files(seeded.settings, "orthanc", first + second))
    asyncio.run(store_files(seeded.settings, "dcm4chee", first))
    body = {"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": [study]}

    async def scenario() -> list[tuple[dict[str, Any], list[tuple[str, ...]]]]:
        from gateway.jobs.store import JobStore

        runtime = await Runtime.create(seeded.settings, run_migrations=False)
        try:
            listed: list[tuple[str, ...]] = []  # the series filter of every instance listing
            for source in (runtime.sources["orthanc"], runtime.sources["dcm4chee"]):
                original = source.find_instances

                async def recording(query: InstanceQuery, original: Any = original) -> Any:
                    listed.append(query.series_uids)
                    return await original(query)

                source.find_instances = recording  # type: ignore[method-assign]
            runs = []
            for _ in range(2):
                listed.clear()
                job_id = await run_here(
                    runtime, SyncSpec.parse(body, runtime.settings), sync.run, "t"
                )
                job = await JobStore(runtime.sessions).get(job_id)
                assert job is not None and job.status == "SUCCEEDED", job and job.result
                runs.append(((job.result or {})["studies"][0], list(listed)))
            return runs
        finally:
            await runtime.aclose()

    (synced, lists), (settled, lists_again) = asyncio.run(scenario())
    missing_series = next(iter({p for p in _series_of(second)}))
    assert synced["transferred"] == 3 and synced["verified"] is True
    assert synced["sourceInstances"] == 7 and "comparedBy" not in synced
    assert lists == [(missing_series,)] * 3, "each side lists the differing series only (+ verify)"
    assert settled["comparedBy"] == "counts" and settled["transferred"] == 0
    assert settled["verified"] is True and settled["sourceInstances"] == 7
    assert lists_again == [], "in sync by counts: no instance listed"
    assert len(asyncio.run(instance_uids(seeded.settings, "dcm4chee", study))) == 7
