"""anonymizeStudy end to end: mutation → worker → real archives; audited re-identification."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from gateway.db.models import AuditEvent
from gateway.runtime import Runtime
from gateway.sources.base import InstanceQuery, StudyQuery
from tests.conftest import JobEnv
from tests.jobs_support import JOB_FIELDS, big_study, gql, gql_data, store_files, wait_job

ANONYMIZE = (
    f"mutation($input: AnonymizeInput!) {{ anonymizeStudy(input: $input) {{ {JOB_FIELDS} }} }}"
)


async def _held(env: JobEnv, study_uid: str) -> tuple[list[str], list[str]]:
    """(patient ids, SOP instance UIDs) the destination holds for a study."""
    runtime = await Runtime.create(env.settings, run_migrations=False)
    try:
        dest = runtime.sources["research"]
        studies = await dest.find_studies(StudyQuery(study_uids=(study_uid,)))
        found = await dest.find_instances(InstanceQuery(study_uid=study_uid))
        return [s.patient_id or "" for s in studies], [i.sop_instance_uid for i in found]
    finally:
        await runtime.aclose()


async def _audits(env: JobEnv, action: str) -> list[AuditEvent]:
    runtime = await Runtime.create(env.settings, run_migrations=False)
    try:
        async with runtime.sessions() as session:
            rows = await session.scalars(select(AuditEvent).where(AuditEvent.action == action))
            return list(rows)
    finally:
        await runtime.aclose()


def test_anonymize_through_the_api_then_reidentify(job_env: JobEnv) -> None:
    study, files = big_study(6, seed=31)
    asyncio.run(store_files(job_env.settings, "orthanc", files))
    body = {
        "source": "orthanc",
        "studyInstanceUid": study,
        "destination": "research",
        "project": "TRIAL1",
        "keepMapping": True,
    }
    worker = job_env.worker("anon-worker").start()
    try:
        with job_env.client() as client:
            job = gql_data(client, ANONYMIZE, input=body)["anonymizeStudy"]
            done = wait_job(client, job["id"])
    finally:
        worker.stop()
    assert done["status"] == "SUCCEEDED", done
    result = done["result"]
    for key in ("anonymizedPatientId", "anonymizedStudyInstanceUid", "destination"):
        assert result[key]
    assert result["instances"] == 6 and result["quarantined"] == []
    new_uid = result["anonymizedStudyInstanceUid"]
    assert new_uid != study and new_uid.startswith("2.25.")
    patients, instances = asyncio.run(_held(job_env, new_uid))
    assert patients == [result["anonymizedPatientId"]] and "BIG-0001" not in patients
    assert len(instances) == 6
    assert asyncio.run(_held(job_env, study))[1] == [], "the original UID is not in the archive"
    assert "BIG" not in json.dumps(done), "no identity in the job's public record"

    exe = Path(sys.executable).with_name("pacs-gateway")
    run = subprocess.run(
        [
            str(exe),
            "reidentify",
            "--config",
            str(job_env.config),
            "--project",
            "TRIAL1",
            "--pseudonym",
            result["anonymizedPatientId"],
            "--actor",
            "admin:test",
        ],
        env={**os.environ, **job_env.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "BIG-0001" in run.stdout
    audits = asyncio.run(_audits(job_env, "reidentify"))
    assert [a.actor for a in audits] == ["admin:test"]
    assert "BIG" not in json.dumps(audits[0].detail) + (audits[0].object_ref or "")


def test_anonymize_refuses_bad_options(job_env: JobEnv) -> None:
    body = {
        "source": "orthanc",
        "studyInstanceUid": "1.2.3",
        "destination": "research",
        "options": ["RetainEverything"],
    }
    with job_env.client() as client:
        answer = gql(client, ANONYMIZE, input=body)
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "RetainEverything" in answer["errors"][0]["message"]
