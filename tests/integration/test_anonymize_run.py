"""ANONYMIZE job on the real stack: a seeded study in "orthanc" de-identified into "research"."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator
from io import BytesIO
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select

from gateway.core.errors import InvalidInput, JobError
from gateway.core.settings import Settings
from gateway.db.models import AuditEvent
from gateway.deid import reidentify
from gateway.devstack.seed import GroundTruth, StudyTruth, build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.jobs.specs import AnonymizeSpec
from gateway.runtime import Runtime
from gateway.sources.base import InstanceQuery
from tests.conftest import JobEnv
from workers.jobs import anonymize
from workers.jobs.base import RecordingHandle

pytestmark = pytest.mark.integration
MAPPING_KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture(scope="module")
def settings(job_env: JobEnv) -> Settings:
    """This module writes de-identified studies: it gets a stack of its own, not the shared one."""
    return job_env.settings


@pytest.fixture(scope="module")
def truth(settings: Settings) -> GroundTruth:
    """The module's stack seeded like the shared one."""
    asyncio.run(seed_archives(settings, 42, 20, None))
    return build_demo(seed=42, patients=20, sources=settings.ids_with_role("store")).truth


@pytest.fixture(scope="module")
def deid_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, deid_key="integration-deid-key", mapping_key=MAPPING_KEY)


@pytest.fixture(scope="module")
async def runtime(deid_settings: Settings, truth: GroundTruth) -> AsyncIterator[Runtime]:
    rt = await Runtime.create(deid_settings)
    try:
        yield rt
    finally:
        await rt.aclose()


@pytest.fixture(scope="module")
def study(truth: GroundTruth) -> StudyTruth:
    return next(s for s in truth.studies if "orthanc" in s.sources and not s.missing.get("orthanc"))


def job_input(study: StudyTruth, **extra: Any) -> dict[str, Any]:
    return {
        "source": "orthanc",
        "destination": "research",
        "studyInstanceUid": study.study_uid,
        "project": "research-1",
        "options": ["RetainLongitudinalTemporalInformationModifiedDates"],
        "keepMapping": True,
        **extra,
    }


def scan(ds: Dataset) -> list[str]:
    out: list[str] = [str(e.value) for e in ds.file_meta]
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                out += scan_item(item)
        elif elem.VR not in ("OB", "OW"):
            out.append(str(elem.value))
    return out


def scan_item(ds: Dataset) -> list[str]:
    out: list[str] = []
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                out += scan_item(item)
        else:
            out.append(str(elem.value))
    return out


async def test_study_is_deidentified_into_second_archive(
    runtime: Runtime, truth: GroundTruth, study: StudyTruth
) -> None:
    handle = RecordingHandle("anon-it-1")
    result = await anonymize.run(
        handle, runtime, AnonymizeSpec.parse(job_input(study), runtime.settings)
    )
    expected = sum(len(v) for v in study.instances["orthanc"].values())
    assert result["instances"] + len(result["quarantined"]) == expected
    assert result["destination"] == "research" and result["verified"] is True
    new_uid = result["anonymizedStudyInstanceUid"]
    assert new_uid.startswith("2.25.") and new_uid != study.study_uid
    phases = {p for _, p, _ in handle.events}
    assert {"fetch", "anonymize", "store", "verify"} <= phases

    dest = runtime.sources["research"]
    found = await dest.find_instances(InstanceQuery(new_uid))
    assert len(found) == result["instances"]
    patient = truth.patient(study.patient_id)
    originals = {study.study_uid, study.accession_number, patient.patient_id, patient.birth_date}
    originals |= {s.series_uid for s in study.series}
    originals |= {u for s in study.series for u in s.instance_uids}
    names = {n for name in patient.names.values() for n in name.split("^") if len(n) > 2}
    n = 0
    async for data in dest.retrieve_study(new_uid):
        n += 1
        ds = dcmread(BytesIO(data))
        assert ds.PatientID == result["anonymizedPatientId"]
        assert ds.PatientIdentityRemoved == "YES"
        text = " ".join(scan(ds))
        assert not [o for o in originals if o and o in text]
        assert not [nm for nm in names if nm.lower() in text.lower()]
        assert ds.StudyDate != study.study_date  # shifted
    assert n == result["instances"]

    # Same job again: same UIDs and pseudonym, nothing duplicated, one audit event.
    again = await anonymize.run(
        RecordingHandle("anon-it-1"),
        runtime,
        AnonymizeSpec.parse(job_input(study), runtime.settings),
    )
    assert again["anonymizedStudyInstanceUid"] == new_uid
    assert again["anonymizedPatientId"] == result["anonymizedPatientId"]
    assert len(await dest.find_instances(InstanceQuery(new_uid))) == result["instances"]
    async with runtime.sessions() as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.actor == "job:anon-it-1"))
        ).all()
    assert len(events) == 1 and events[0].object_ref == new_uid
    assert events[0].detail is not None and events[0].detail["instances"] == result["instances"]
    assert patient.patient_id not in str(events[0].detail)

    back = await reidentify(
        runtime.sessions,
        runtime.settings.mapping_key,
        "research-1",
        result["anonymizedPatientId"],
        "admin:test",
    )
    originals_back = [s["original"] for s in back["studies"]]
    assert {"PatientID": patient.patient_id}.items() <= originals_back[0].items()


async def test_input_validation(deid_settings: Settings, study: StudyTruth) -> None:
    AnonymizeSpec.parse(job_input(study), deid_settings)
    bad = [
        {"source": "nowhere"},
        {"destination": "nowhere"},
        {"studyInstanceUid": ""},
        {"studyInstanceUid": "not a uid"},
        {"options": ["RetainEverything"]},
        {"keepMapping": "yes"},
    ]
    for change in bad:
        with pytest.raises(InvalidInput):
            AnonymizeSpec.parse(job_input(study, **change), deid_settings)


async def test_missing_keys_fail_clearly(runtime: Runtime, study: StudyTruth) -> None:
    no_key = dataclasses.replace(
        runtime, settings=dataclasses.replace(runtime.settings, deid_key=None)
    )
    with pytest.raises(JobError, match="GATEWAY_DEID_KEY"):
        await anonymize.run(
            RecordingHandle("anon-it-2"),
            no_key,
            AnonymizeSpec.parse(job_input(study), no_key.settings),
        )
    settings = dataclasses.replace(runtime.settings, mapping_key=None)
    no_mapping = dataclasses.replace(runtime, settings=settings)
    with pytest.raises(JobError, match="GATEWAY_MAPPING_KEY"):
        await anonymize.run(
            RecordingHandle("anon-it-3"),
            no_mapping,
            AnonymizeSpec.parse(job_input(study), no_mapping.settings),
        )


async def test_a_run_stopped_after_storing_is_audited(runtime: Runtime, study: StudyTruth) -> None:
    from gateway.core.errors import JobCancelled

    body = job_input(study, project="research-audit")
    counting = RecordingHandle("anon-audit-count")
    await anonymize.run(counting, runtime, AnonymizeSpec.parse(body, runtime.settings))
    last = counting._checkpoints  # the final checkpoint comes after every store
    with pytest.raises(JobCancelled):
        await anonymize.run(
            RecordingHandle("anon-audit-1", cancel_after=last - 1),
            runtime,
            AnonymizeSpec.parse(body, runtime.settings),
        )
    async with runtime.sessions() as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.actor == "job:anon-audit-1"))
        ).all()
    assert [e.action for e in events] == ["anonymize-incomplete"]
    assert events[0].detail is not None and events[0].detail["failure"] == "JobCancelled"
    assert events[0].detail["instances"] > 0


async def test_burned_in_instances_are_quarantined_not_exported(runtime: Runtime) -> None:
    from tests.jobs_support import big_study

    study, files = big_study(3, seed=61)
    flagged = dcmread(BytesIO(files[1]))
    flagged.BurnedInAnnotation = "YES"
    out = BytesIO()
    flagged.save_as(out, enforce_file_format=True)
    files[1] = out.getvalue()
    assert not (await runtime.sources["orthanc"].store(files)).failed
    body = {"source": "orthanc", "destination": "research", "studyInstanceUid": study}
    result = await anonymize.run(
        RecordingHandle("anon-burned"), runtime, AnonymizeSpec.parse(body, runtime.settings)
    )
    assert result["instances"] == 2
    [quarantined] = result["quarantined"]
    assert "burned" in quarantined["reason"].lower()
    held = await runtime.sources["research"].find_instances(
        InstanceQuery(result["anonymizedStudyInstanceUid"])
    )
    assert len(held) == 2
    assert quarantined["anonymizedSopInstanceUid"] not in {i.sop_instance_uid for i in held}
