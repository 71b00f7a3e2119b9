"""`/dicomweb` on the seeded three-archive stack: QIDO-RS merged by UID and checked
against the seeder's truth, WADO-RS retrieval, metadata and frames routed to a holder,
a partial result named in a Warning header, and the same authentication as /graphql."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid
from sqlalchemy import select
from starlette.testclient import TestClient

from gateway.core.enums import AuthMode, Role
from gateway.core.settings import DicomwebConfig, Settings
from gateway.db.models import AuditEvent
from gateway.devstack.seed import GroundTruth
from gateway.devstack.stack import StackInfo
from gateway.runtime import Runtime
from gateway.server.app import create_app
from tests.auth_support import api_users
from tests.jobs_support import GatewayProcess, free_port

pytestmark = pytest.mark.integration
QUERY_SOURCES = ("orthanc", "dcm4chee", "legacy")


@pytest.fixture(scope="module")
def client(settings: Settings, truth: GroundTruth) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def parts(response: Any) -> list[bytes]:
    """The bodies of a multipart/related response."""
    kind = response.headers["content-type"]
    assert kind.startswith("multipart/related"), kind
    boundary = re.search(r"boundary=([^;]+)", kind)
    assert boundary, kind
    chunks = response.content.split(b"--" + boundary[1].encode())
    assert chunks[-1].strip() == b"--", "closing delimiter"
    return [c.split(b"\r\n\r\n", 1)[1][:-2] for c in chunks[1:-1]]


def held(truth: GroundTruth) -> list[Any]:
    return [s for s in truth.studies if set(s.sources) & set(QUERY_SOURCES)]


def test_studies_are_merged_by_uid(client: TestClient, truth: GroundTruth) -> None:
    response = client.get("/dicomweb/studies", params={"limit": 1000})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    assert "warning" not in response.headers
    found = response.json()
    uids = [value(s, "0020000D") for s in found]
    assert len(uids) == len(set(uids)), "each study once, whoever holds it"
    expected = {s.study_uid: s for s in held(truth)}
    assert set(uids) == set(expected)
    for item in found:
        study = expected[value(item, "0020000D")]
        assert value(item, "00100020") == study.patient_id
        assert value(item, "00080050") == study.accession_number
        assert value(item, "00201208") == max(study.instance_counts.values())
        assert value(item, "00081190").endswith(f"/dicomweb/studies/{study.study_uid}")


def test_matching_keys_and_paging(client: TestClient, truth: GroundTruth) -> None:
    patient = truth.patients[0]
    mine = client.get("/dicomweb/studies", params={"PatientID": patient.patient_id}).json()
    want = {s.study_uid for s in held(truth) if s.patient_id == patient.patient_id}
    assert {value(s, "0020000D") for s in mine} == want
    whole = [value(s, "0020000D") for s in client.get("/dicomweb/studies").json()]
    paged: list[str] = []
    for offset in range(0, len(whole), 7):
        page = client.get("/dicomweb/studies", params={"limit": 7, "offset": offset}).json()
        paged += [value(s, "0020000D") for s in page]
    assert paged == whole, "limit and offset cut the merged, ordered answer"
    for bad in ({"limit": "many"}, {"NoSuchKey": "x"}, {"StudyInstanceUID": "1.2.x"}):
        refused = client.get("/dicomweb/studies", params=bad)
        assert refused.status_code == 400 and refused.json()["code"] == "BAD_USER_INPUT"


def test_series_instances_retrieve_metadata_frames(client: TestClient, truth: GroundTruth) -> None:
    study = next(s for s in held(truth) if len(s.sources) > 1)
    series = study.series[0]
    listed = client.get(f"/dicomweb/studies/{study.study_uid}/series").json()
    assert {value(s, "0020000E") for s in listed} >= {series.series_uid}
    path = f"/dicomweb/studies/{study.study_uid}/series/{series.series_uid}"
    instances = client.get(f"{path}/instances").json()
    every = {u for by in study.instances.values() for u in by.get(series.series_uid, [])}
    assert {value(i, "00080018") for i in instances} == every

    sop = sorted(every)[0]
    one = client.get(f"{path}/instances/{sop}")
    assert one.status_code == 200
    [part10] = parts(one)
    ds = pydicom.dcmread(BytesIO(part10))
    assert ds.SOPInstanceUID == sop and ds.SeriesInstanceUID == series.series_uid

    whole = parts(client.get(path))
    assert len(whole) == max(len(by.get(series.series_uid, [])) for by in study.instances.values())

    meta = client.get(f"{path}/metadata").json()
    assert len(meta) == len(whole)
    first = next(m for m in meta if value(m, "00080018") == sop)
    assert value(first, "0020000E") == series.series_uid
    assert first["7FE00010"]["BulkDataURI"].endswith(f"/instances/{sop}/frames/1")
    assert value(first, "00020010"), "the transfer syntax, for the viewer"

    [frame] = parts(client.get(f"{path}/instances/{sop}/frames/1"))
    assert len(frame) == ds.Rows * ds.Columns * (ds.BitsAllocated // 8) * ds.SamplesPerPixel
    assert frame == ds.PixelData[: len(frame)]
    assert client.get(f"{path}/instances/{sop}/frames/99").status_code == 404
    missing = client.get(f"{path}/instances/1.2.3.4.5.6.7")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"


def test_a_study_is_relayed_from_a_dicomweb_archive_as_it_arrives(
    client: TestClient, truth: GroundTruth
) -> None:
    """A study whose best holder speaks DICOMweb (the DICOMweb archive, Orthanc through its
    plugin): its own multipart answer, passed on (its boundary, not one of ours); from the
    DIMSE archive the answer is composed."""
    for holder, relayed in (("dcm4chee", True), ("orthanc", True), ("legacy", False)):
        alone = [s for s in held(truth) if set(s.sources) & set(QUERY_SOURCES) == {holder}]
        study = min(alone, key=lambda s: sum(len(u) for u in s.instances[holder].values()))
        answer = client.get(f"/dicomweb/studies/{study.study_uid}")
        assert answer.status_code == 200
        boundary = re.search(r"boundary=([^;]+)", answer.headers["content-type"])
        assert boundary and boundary[1].strip('"').startswith("pacs-gateway-") is not relayed
        files = [pydicom.dcmread(BytesIO(p)) for p in parts(answer)]
        every = {u for by in study.instances[holder].values() for u in by}
        assert {str(ds.SOPInstanceUID) for ds in files} == every, holder
        assert {str(ds.StudyInstanceUID) for ds in files} == {study.study_uid}
    study = next(s for s in held(truth) if set(s.sources) & set(QUERY_SOURCES) == {"dcm4chee"})
    series = study.series[0].series_uid
    one = parts(client.get(f"/dicomweb/studies/{study.study_uid}/series/{series}"))
    assert len(one) == len(study.instances["dcm4chee"][series])


def test_rendered_thumbnails_and_frame_syntaxes(client: TestClient, truth: GroundTruth) -> None:
    study = next(s for s in held(truth) if "orthanc" in s.sources)
    series = next(se for se in study.series if study.instances["orthanc"].get(se.series_uid))
    sop = study.instances["orthanc"][series.series_uid][0]
    path = f"/dicomweb/studies/{study.study_uid}/series/{series.series_uid}"
    image = client.get(f"{path}/instances/{sop}/rendered")
    assert image.headers["content-type"] == "image/jpeg"
    pixels = cv2.imdecode(np.frombuffer(image.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert pixels.shape[:2] == (series.rows, series.columns)
    framed = client.get(
        f"{path}/instances/{sop}/frames/1/rendered", headers={"Accept": "image/png"}
    )
    assert framed.content.startswith(b"\x89PNG")
    for where in (path, f"/dicomweb/studies/{study.study_uid}"):
        thumb = client.get(f"{where}/thumbnail", params={"viewport": "16,16"})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        small = cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_UNCHANGED)
        assert max(small.shape[:2]) == 16
    ohif = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    assert (
        client.get(f"{path}/instances/{sop}/frames/1", headers={"Accept": ohif}).status_code == 200
    )
    jpeg = (
        'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.50'
    )
    refused = client.get(f"{path}/instances/{sop}/frames/1", headers={"Accept": jpeg})
    assert refused.status_code == 406 and refused.json()["code"] == "NOT_ACCEPTABLE"
    none = client.get(f"{path}/instances/{sop}/bulkdata/00420011")
    assert none.status_code == 404 and none.json()["code"] == "NOT_FOUND"


def test_series_and_instances_across_studies(client: TestClient, truth: GroundTruth) -> None:
    two = held(truth)[:2]
    uids = ",".join(s.study_uid for s in two)
    series = client.get("/dicomweb/series", params={"StudyInstanceUID": uids}).json()
    want = {se.series_uid for s in two for se in s.series}
    assert {value(x, "0020000E") for x in series} == want
    study = two[0]
    found = client.get("/dicomweb/instances", params={"StudyInstanceUID": study.study_uid})
    every = {u for by in study.instances.values() for lst in by.values() for u in lst}
    assert {value(x, "00080018") for x in found.json()} == every
    for path, params in (
        ("/dicomweb/series", {}),
        ("/dicomweb/instances", {"StudyInstanceUID": uids}),
    ):
        refused = client.get(path, params=params)
        assert refused.status_code == 400 and refused.json()["code"] == "BAD_USER_INPUT"


def test_dicomweb_can_be_turned_off(settings: Settings) -> None:
    off = dataclasses.replace(settings, dicomweb=DicomwebConfig(enabled=False))
    with TestClient(create_app(off)) as c:
        assert c.get("/dicomweb/studies").status_code == 404
        assert c.get("/viewer/").status_code == 404


def test_a_failed_archive_is_named_in_a_warning(settings: Settings, truth: GroundTruth) -> None:
    dead = dataclasses.replace(
        settings.source("dcm4chee"), id="ghost", url=f"http://127.0.0.1:{free_port()}/dicom-web"
    )
    with_ghost = dataclasses.replace(settings, sources=(*settings.sources, dead))
    with TestClient(create_app(with_ghost)) as c:
        response = c.get("/dicomweb/studies", params={"limit": 1000})
    assert response.status_code == 200
    assert re.fullmatch(r'299 \S+ "partial result: ghost ERROR"', response.headers["warning"])
    assert {value(s, "0020000D") for s in response.json()} == {s.study_uid for s in held(truth)}


def test_the_same_authentication_as_graphql(settings: Settings) -> None:
    auth = dataclasses.replace(settings.auth, mode=AuthMode.REQUIRED)
    with TestClient(create_app(dataclasses.replace(settings, auth=auth))) as c:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            refused = c.get("/dicomweb/studies", headers=headers)
            assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHENTICATED"
            assert refused.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture(scope="module")
def served(
    gateway_toml: Path,
    stack: StackInfo,
    truth: GroundTruth,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A gateway process (open mode) on the session stack: its /dicomweb root."""
    env = {"DATABASE_URL": stack.database_url, "REDIS_URL": stack.redis_url}
    log = tmp_path_factory.mktemp("dicomweb") / "gateway.log"
    gateway = GatewayProcess(gateway_toml, env, log).start()
    try:
        yield f"http://127.0.0.1:{gateway.port}/dicomweb"
    finally:
        gateway.stop()


def _uids(found: list[dict[str, Any]], tag: str) -> set[str]:
    return {value(item, tag) for item in found}


def test_dicomweb_client_sees_what_the_archives_hold(
    served: str, settings: Settings, truth: GroundTruth
) -> None:
    """The design card's DICOMweb client on /dicomweb against each DICOMweb archive asked
    directly: the same studies, series, instances, attribute values and pixel data."""
    gateway = DICOMwebClient(served)
    direct = {
        "orthanc": DICOMwebClient(settings.source("orthanc").url + "/dicom-web"),
        "dcm4chee": DICOMwebClient(settings.source("dcm4chee").url),
    }
    every = _uids(gateway.search_for_studies(search_filters={}, get_remaining=True), "0020000D")
    for client in direct.values():
        assert _uids(client.search_for_studies(get_remaining=True), "0020000D") <= every
    study = next(s for s in held(truth) if "orthanc" in s.sources)
    series = next(se for se in study.series if study.instances["orthanc"].get(se.series_uid))
    ask = {"study_instance_uid": study.study_uid, "series_instance_uid": series.series_uid}
    assert _uids(gateway.search_for_series(study.study_uid), "0020000E") >= _uids(
        direct["orthanc"].search_for_series(study.study_uid), "0020000E"
    )
    through = {value(m, "00080018"): m for m in gateway.retrieve_series_metadata(**ask)}
    there = {value(m, "00080018"): m for m in direct["orthanc"].retrieve_series_metadata(**ask)}
    assert set(through) == set(there)
    for sop, item in there.items():
        for tag in ("00100020", "0020000D", "00280010", "00280011", "00200013"):
            assert value(through[sop], tag) == value(item, tag), (sop, tag)
    sop = sorted(there)[0]
    mine = gateway.retrieve_instance(sop_instance_uid=sop, **ask)
    theirs = direct["orthanc"].retrieve_instance(sop_instance_uid=sop, **ask)
    assert mine.SOPInstanceUID == theirs.SOPInstanceUID == sop
    assert mine.PixelData == theirs.PixelData
    [frame] = gateway.retrieve_instance_frames(sop_instance_uid=sop, frame_numbers=[1], **ask)
    assert frame == theirs.PixelData[: len(frame)] and len(frame) == len(theirs.PixelData)


def _new_instance(truth: GroundTruth, settings: Settings) -> pydicom.Dataset:
    """A copy of a demo instance in a study of its own (new UIDs), fetched from orthanc."""
    study = next(s for s in held(truth) if "orthanc" in s.sources)
    series = next(se for se in study.series if study.instances["orthanc"].get(se.series_uid))
    source = DICOMwebClient(settings.source("orthanc").url + "/dicom-web")
    ds = source.retrieve_instance(
        study.study_uid, series.series_uid, study.instances["orthanc"][series.series_uid][0]
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def _forget(settings: Settings, study_uids: list[str]) -> None:
    """Delete studies from orthanc (the session stack's truth stays as seeded)."""
    rest = settings.source("orthanc").url
    for uid in study_uids:
        found = httpx.post(f"{rest}/tools/lookup", content=uid, timeout=30).json()
        for item in found:
            httpx.delete(f"{rest}{item['Path']}", timeout=30).raise_for_status()


@pytest.fixture
def stowed(settings: Settings) -> Iterator[list[str]]:
    """Study UIDs a test stores into orthanc, deleted after it."""
    made: list[str] = []
    try:
        yield made
    finally:
        _forget(settings, made)


def test_stow_rs_stores_and_says_what_it_refused(
    served: str, settings: Settings, truth: GroundTruth, stowed: list[str]
) -> None:
    ds = _new_instance(truth, settings)
    stowed.append(ds.StudyInstanceUID)
    answer = DICOMwebClient(served).store_instances([ds])
    refs = answer.ReferencedSOPSequence
    assert [r.ReferencedSOPInstanceUID for r in refs] == [ds.SOPInstanceUID]
    assert refs[0].RetrieveURL.endswith(f"/instances/{ds.SOPInstanceUID}")
    orthanc = DICOMwebClient(settings.source("orthanc").url + "/dicom-web")
    found = orthanc.search_for_instances(ds.StudyInstanceUID)
    assert _uids(found, "00080018") == {ds.SOPInstanceUID}, "stored in the default archive"

    other = _new_instance(truth, settings)
    stowed.append(other.StudyInstanceUID)
    buffer = io.BytesIO()
    other.save_as(buffer, enforce_file_format=True)
    boundary = "b0undary"
    parts = [buffer.getvalue(), b"not DICOM at all", buffer.getvalue()[:300]]
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
            for p in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
    wrong_study = httpx.post(
        f"{served}/studies/1.2.3.4", content=body, headers={"Content-Type": kind}, timeout=30
    )
    assert wrong_study.status_code == 409, "none stored"
    reasons = [item["00081197"]["Value"][0] for item in wrong_study.json()["00081198"]["Value"]]
    assert sorted(reasons) == sorted([0xA900, 0xC000, 0xC000])
    mixed = httpx.post(f"{served}/studies", content=body, headers={"Content-Type": kind})
    assert mixed.status_code == 202, "some stored"
    stored = mixed.json()["00081199"]["Value"]
    assert [value(s, "00081155") for s in stored] == [other.SOPInstanceUID]
    assert len(mixed.json()["00081198"]["Value"]) == 2
    refused = httpx.post(
        f"{served}/studies", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 415 and refused.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def _reads(settings: Settings) -> list[AuditEvent]:
    runtime = await Runtime.create(settings, run_migrations=False)
    try:
        async with runtime.sessions() as session:
            found = await session.scalars(
                select(AuditEvent).where(AuditEvent.object_type == "dicomweb")
            )
            return list(found)
    finally:
        await runtime.aclose()


def test_roles_and_the_audit_trail(settings: Settings, truth: GroundTruth) -> None:
    """Researchers reach research archives only (none here: nothing clinical leaks); a
    radiologist's identity-bearing answer is one phi-read event with opaque references."""
    auth = dataclasses.replace(settings.auth, mode=AuthMode.REQUIRED)
    required = dataclasses.replace(settings, auth=auth)
    made = asyncio.run(api_users(required, "dicomweb", (Role.RADIOLOGIST, Role.RESEARCHER)))
    tokens = {role: token for role, (token, _) in made.items()}
    tokens |= {f"{role}-actor": f"user:{user_id}" for role, (_, user_id) in made.items()}
    study = next(s for s in held(truth) if "orthanc" in s.sources)
    with TestClient(create_app(required)) as c:

        def as_(who: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens[who]}"}

        assert c.get("/dicomweb/studies", headers=as_("researcher")).json() == []
        denied = c.get(f"/dicomweb/studies/{study.study_uid}", headers=as_("researcher"))
        assert denied.status_code == 404 and denied.json()["code"] == "NOT_FOUND"
        stow = c.post(
            "/dicomweb/studies?archive=orthanc",
            content=b"--x--\r\n",
            headers={**as_("researcher"), "Content-Type": "multipart/related; boundary=x"},
        )
        assert stow.status_code == 403 and stow.json()["code"] == "FORBIDDEN"
        seen = c.get("/dicomweb/studies", params={"limit": 1000}, headers=as_("radiologist"))
        assert len(seen.json()) == len(held(truth))
        files = c.get(f"/dicomweb/studies/{study.study_uid}", headers=as_("radiologist"))
        assert files.status_code == 200 and parts(files)
    reads = [
        e
        for e in asyncio.run(_reads(required))
        if e.action == "phi-read" and e.actor == tokens["radiologist-actor"]
    ]
    assert [r.object_ref for r in reads] == ["studies", "retrieve"], "files name the patient"
    assert reads[1].detail is not None and study.study_uid not in json.dumps(reads[1].detail)
    patients = {s.patient_id for s in held(truth)}
    assert reads[0].detail is not None and reads[0].detail["count"] == len(held(truth))
    assert len(reads[0].detail["refs"]) == len(patients)
    text = json.dumps(reads[0].detail)
    assert not any(p in text for p in patients), "opaque references only"
