"""ANONYMIZE into XNAT, by contract: a study in a real Orthanc, de-identified into a fake XNAT.

The source is the Orthanc of a stack of this module's own (`job_env`: its own
servers and database, dropped after), so nothing is written to the shared stack.
The destination is an `XnatSource` serving `FakeXnat` of `test_xnat_contract`
(XNAT 1.8's documented REST surface: POST /data/JSESSION for a session id sent
as the JSESSIONID cookie, 401 once it expired, and the import service POST
/data/services/import?import-handler=DICOM-zip with PROJECT_ID, SUBJECT_ID and
EXPT_LABEL, the zip in the body) through an httpx.MockTransport; the
session-expiry test also runs over real HTTP on loopback, where the zip streams
and `import_study` itself sends it again. The job finds the importer by
`ProjectImporter` and calls `import_study` once per batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import zipfile
from collections.abc import AsyncIterator
from io import BytesIO
from typing import Any
from unittest.mock import patch

import httpx
import pytest
from pydicom import dcmread

from gateway.core.settings import Settings
from gateway.jobs.specs import AnonymizeSpec
from gateway.runtime import Runtime
from gateway.sources.xnat.source import XnatSource
from tests.conftest import JobEnv
from tests.contract.test_xnat_contract import FakeXnat, config, serve
from tests.jobs_support import big_study
from workers.jobs import anonymize
from workers.jobs.anonymize import BATCH
from workers.jobs.base import RecordingHandle

pytestmark = pytest.mark.integration
INSTANCES = BATCH + 5  # two import batches
PROJECT = "RESEARCH"
CONTRACT_KEYS = {
    "anonymizedPatientId",
    "anonymizedStudyInstanceUid",
    "destination",
    "instances",
    "quarantined",
    "durationSeconds",
}
XNAT = config(timeout_s=5.0)


@dataclasses.dataclass
class Setup:
    """The runtime, the fake XNAT behind it and the study held by the source."""

    runtime: Runtime
    fake: FakeXnat
    study_uid: str
    originals: list[bytes]


@pytest.fixture(scope="module")
async def setup(job_env: JobEnv) -> AsyncIterator[Setup]:
    """A runtime whose "xnat" is the fake, and a synthetic study stored in the private Orthanc."""
    settings: Settings = dataclasses.replace(
        job_env.settings, sources=(*job_env.settings.sources, XNAT)
    )
    assert settings.deid_key
    runtime = await Runtime.create(settings, run_migrations=False)
    fake = FakeXnat()
    await runtime.sources["xnat"].aclose()
    runtime.sources["xnat"] = XnatSource(XNAT, transport=fake.transport)
    study_uid, files = big_study(INSTANCES, seed=61)
    stored = await runtime.sources["orthanc"].store(files)
    assert not stored.failed
    try:
        yield Setup(runtime, fake, study_uid, files)
    finally:
        await runtime.aclose()


def job_input(study_uid: str) -> dict[str, Any]:
    """ANONYMIZE input: the private Orthanc into the XNAT project, complete profile."""
    return {
        "source": "orthanc",
        "destination": "xnat",
        "studyInstanceUid": study_uid,
        "project": PROJECT,
    }


def imports(fake: FakeXnat, start: int = 0) -> list[tuple[httpx.Request, bytes]]:
    """The import-service calls the fake received (from request `start` on), with their bodies."""
    calls = zip(fake.requests[start:], fake.bodies[start:], strict=True)
    return [(r, b) for r, b in calls if r.url.path == "/data/services/import"]


def members(body: bytes) -> list[bytes]:
    """The files of an uploaded zip."""
    with zipfile.ZipFile(BytesIO(body)) as archive:
        return [archive.read(name) for name in archive.namelist()]


def identifiers(files: list[bytes]) -> set[bytes]:
    """The original identifying values of the study, as they are encoded in the files."""
    values: set[str] = set()
    for data in files:
        ds = dcmread(BytesIO(data), stop_before_pixels=True)
        values |= {str(ds.PatientName), str(ds.PatientID), str(ds.AccessionNumber)}
        values |= {str(ds.PatientBirthDate), str(ds.StudyDate)}
        values |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)}
        values |= {str(ds.SOPInstanceUID), str(ds.FrameOfReferenceUID)}
        values.add(str(ds.file_meta.MediaStorageSOPInstanceUID))
    values |= {part for v in list(values) for part in v.split("^")}
    return {v.encode() for v in values if len(v) >= 4}


async def test_study_is_imported_deidentified(setup: Setup) -> None:
    fake, start = setup.fake, len(setup.fake.requests)
    spec = AnonymizeSpec.parse(job_input(setup.study_uid), setup.runtime.settings)
    result = await anonymize.run(RecordingHandle("xnat-anon-1"), setup.runtime, spec)

    assert CONTRACT_KEYS <= set(result)
    assert result["destination"] == "xnat" and result["project"] == PROJECT
    assert result["instances"] == INSTANCES and result["quarantined"] == []
    assert result["verified"] is None  # XNAT does not index instances: nothing to list
    pseudonym, new_uid = result["anonymizedPatientId"], result["anonymizedStudyInstanceUid"]
    assert pseudonym and new_uid.startswith("2.25.") and new_uid != setup.study_uid

    calls = imports(fake, start)
    assert len(calls) == 2  # one per batch, both into the same session
    label = f"{pseudonym}_{new_uid[-8:]}"
    for request, _ in calls:
        assert request.method == "POST"
        assert request.headers["Content-Type"] == "application/zip"
        assert fake._cookie(request) in fake.sessions
        params = request.url.params
        assert params["import-handler"] == "DICOM-zip" and params["inbody"] == "true"
        assert (params["PROJECT_ID"], params["SUBJECT_ID"], params["EXPT_LABEL"]) == (
            PROJECT,
            pseudonym,
            label,
        )

    secrets = identifiers(setup.originals)
    assert len(secrets) >= INSTANCES + 3  # every SOP UID, the study, series, frame...
    uploaded = [f for _, body in calls for f in members(body)]
    assert len(uploaded) == INSTANCES
    for _, body in calls:
        assert not [s for s in secrets if s in body]  # the zip is stored: raw file bytes
    for data in uploaded:
        assert not [s for s in secrets if s in data]
        ds = dcmread(BytesIO(data))
        assert ds.PatientID == pseudonym and ds.PatientIdentityRemoved == "YES"
        assert ds.StudyInstanceUID == new_uid
    sops = {str(dcmread(BytesIO(d)).SOPInstanceUID) for d in uploaded}
    assert len(sops) == INSTANCES

    imported = [s for s in fake.experiments if s.fields["UID"] == new_uid]
    fields = {(s.fields["project"], s.fields["subject_label"], s.fields["label"]) for s in imported}
    assert fields == {(PROJECT, pseudonym, label)}


@pytest.mark.parametrize("transport", ["mock-transport", "loopback-http"])
async def test_expired_session_is_renewed_once_and_the_zip_resent(
    setup: Setup, transport: str
) -> None:
    """Over loopback the body streams and cannot be replayed: `import_study` sends it again."""
    fake, cookies = setup.fake, list[str | None]()
    async with contextlib.AsyncExitStack() as stack:
        if transport == "loopback-http":
            url = await stack.enter_async_context(serve(fake))
            xnat = XnatSource(dataclasses.replace(XNAT, url=url))
            stack.push_async_callback(xnat.aclose)
            stack.enter_context(patch.dict(setup.runtime.sources, {"xnat": xnat}))
        spec = AnonymizeSpec.parse(job_input(setup.study_uid), setup.runtime.settings)
        first = await anonymize.run(RecordingHandle("xnat-anon-2"), setup.runtime, spec)
        logins = fake.logins
        fake.expire_sessions()
        start = len(fake.requests)
        fake.fault = lambda request: cookies.append(fake._cookie(request))  # as each arrives
        try:
            again = await anonymize.run(RecordingHandle("xnat-anon-2"), setup.runtime, spec)
        finally:
            fake.fault = lambda _: None

    # Keyed hashes: the re-run imports the same subject and session again.
    for key in ("anonymizedPatientId", "anonymizedStudyInstanceUid", "instances"):
        assert again[key] == first[key]
    assert [(r.method, r.url.path) for r in fake.requests[start:]] == [
        ("POST", "/data/services/import"),  # 401: the cookie expired
        ("POST", "/data/JSESSION"),
        ("POST", "/data/services/import"),
        ("POST", "/data/services/import"),  # second batch, on the new session
    ]
    assert fake.logins == logins + 1
    expired, _, renewed, kept = cookies
    assert expired not in fake.sessions and renewed in fake.sessions and kept == renewed
    (_, body_1), (_, body_2), _ = imports(fake, start)
    assert body_1 and body_1 == body_2  # the refused zip, sent again in full
