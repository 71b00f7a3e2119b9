"""`/dicomweb` on the seeded three-archive stack: QIDO-RS merged by UID and checked
against the seeder's truth, WADO-RS retrieval, metadata and frames routed to a holder,
a partial result named in a Warning header, and the same authentication as /graphql."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pydicom
import pytest
from starlette.testclient import TestClient

from gateway.core.enums import AuthMode
from gateway.core.settings import Settings
from gateway.devstack.seed import GroundTruth
from gateway.server.app import create_app
from tests.jobs_support import free_port

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
