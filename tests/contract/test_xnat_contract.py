"""Contract tests of XnatSource against a fake XNAT 1.8 (no XNAT can run here).

These are *contract* tests, not integration tests: the fake below serves the
request paths, query parameters, JSON shapes and session behaviour that XNAT's
published REST documentation describes, and the adapter is held to them:

- sessions: POST /data/JSESSION with basic auth answers the session id as the
  body; it is then sent as the JSESSIONID cookie; an expired session gives 401
  (https://wiki.xnat.org/xnat-api/user-session-management-api);
- listings answer `{"ResultSet": {"Result": [...], "totalRecords": "N"}}`, all
  values strings, `ID` and `URI` always included, `columns` selecting the rest
  (https://wiki.xnat.org/xnat-api/project-api,
  https://wiki.xnat.org/xnat-api/subject-api,
  https://wiki.xnat.org/xnat-api/experiment-api, "Get All Experiments In XNAT",
  `xsiType` and `columns` parameters, dates as YYYY-MM-DD);
- a single experiment record with its scans under `items[0].children`
  (experiment-api, "Get A Single Experiment Record";
  https://wiki.xnat.org/xnat-api/image-session-scans-api);
- files of all or some scans as one zip:
  /data/experiments/{id}/scans/ALL/files?format=zip, scan ids comma-separated
  (https://wiki.xnat.org/xnat-api/how-to-download-files-via-the-xnat-rest-api);
- the import service: POST /data/services/import?import-handler=DICOM-zip with
  PROJECT_ID, SUBJECT_ID, EXPT_LABEL, overwrite, dest and inbody=true, the zip
  in the body; 200 with the new session's URI as text, 400 for a non-DICOM
  member (https://wiki.xnat.org/xnat-api/image-session-import-service-api).

Every adapter test runs twice: through an httpx.MockTransport, and over real
HTTP on loopback (the same fake behind uvicorn), where request bodies stream
and cannot be replayed and timeouts are the socket's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import socket
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import uvicorn
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from gateway.core.errors import (
    AuthError,
    NotFound,
    NotSupported,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.core.settings import SourceConfig
from gateway.sources.base import (
    InstanceQuery,
    PacsSource,
    PatientQuery,
    PatientRecord,
    SeriesQuery,
    StudyQuery,
    StudyRecord,
)
from gateway.sources.registry import build_source
from gateway.sources.xnat.source import XnatSource

FIXTURES = Path(__file__).parent / "xnat_fixtures"
USER, PASSWORD = "admin", "s3cret"
SESSION_DEFAULT_COLUMNS = ("date", "insert_date", "label", "project", "xsiType")
SUBJECT_DEFAULT_COLUMNS = ("insert_date", "insert_user", "project", "label")


def dicom(study: str, series: str, name: str = "SUBJ01", number: int = 1) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID = name, name
    ds.Modality = "MR"
    ds.InstanceNumber = number
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@dataclass
class Session:
    """One image session as the fake stores it."""

    fields: dict[str, str]
    scans: dict[str, list[bytes]] = field(default_factory=dict)


class FakeXnat:
    """XNAT 1.8's documented REST surface, in memory, behind an httpx.MockTransport."""

    def __init__(self) -> None:
        self.sessions: set[str] = set()
        self.logins = 0
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.fault: Callable[[httpx.Request], httpx.Response | None] = lambda _: None
        self.delay = 0.0
        self.projects = [
            {"ID": "RESEARCH", "secondary_ID": "RES", "name": "Research", "description": "",
             "pi_firstname": "", "pi_lastname": "", "URI": "/data/projects/RESEARCH"},
            {"ID": "TRIAL", "secondary_ID": "TR", "name": "Trial", "description": "",
             "pi_firstname": "", "pi_lastname": "", "URI": "/data/projects/TRIAL"},
        ]  # fmt: skip
        self.subjects = [
            self._subject("XNAT_S00001", "SUBJ01", "RESEARCH", "female", "1970-01-01"),
            self._subject("XNAT_S00002", "subj02", "RESEARCH", "male", ""),
            self._subject("XNAT_S00003", "SUBJ01", "TRIAL", "", ""),
        ]
        self.study_1, self.series_1, self.series_2 = generate_uid(), generate_uid(), generate_uid()
        self.study_2 = generate_uid()
        self.experiments = [
            Session(
                self._session("XNAT_E00001", "SUBJ01_MR1", "RESEARCH", "XNAT_S00001", "SUBJ01",
                              "2024-03-01", self.study_1, "SUBJ01", "RA0001", "Brain MRI"),
                {"2": [dicom(self.study_1, self.series_1, number=i) for i in (1, 2)],
                 "3": [dicom(self.study_1, self.series_2)]},
            ),
            Session(
                self._session("XNAT_E00002", "subj02_MR1", "RESEARCH", "XNAT_S00002", "subj02",
                              "2023-05-05", self.study_2, "subj02", "RA0002", "Knee MRI"),
            ),
            Session(  # a session built without DICOM: no UID, never a study
                self._session("XNAT_E00003", "SUBJ01_MR2", "TRIAL", "XNAT_S00003", "SUBJ01",
                              "2022-01-01", "", "", "", ""),
            ),
        ]  # fmt: skip
        self.transport = httpx.MockTransport(self.handle)

    @staticmethod
    def _subject(xid: str, label: str, project: str, gender: str, dob: str) -> dict[str, str]:
        return {
            "ID": xid,
            "label": label,
            "project": project,
            "gender": gender,
            "dob": dob,
            "insert_date": "2024-03-04 10:16:00.0",
            "insert_user": USER,
            "URI": f"/data/subjects/{xid}",
        }

    @staticmethod
    def _session(*values: str) -> dict[str, str]:
        keys = ("ID", "label", "project", "subject_ID", "subject_label", "date", "UID",
                "dcmPatientName", "dcmAccessionNumber", "session_type")  # fmt: skip
        fields = dict(zip(keys, values, strict=True))
        fields.update(
            time="10:15:00",
            modality="MR",
            xsiType="xnat:mrSessionData",
            insert_date="2024-03-04 10:16:00.0",
            URI=f"/data/experiments/{fields['ID']}",
        )
        return fields

    def expire_sessions(self) -> None:
        """What a session timeout or an admin's "end sessions" does."""
        self.sessions.clear()

    # -- the HTTP surface ----------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = await request.aread()
        self.bodies.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        injected = self.fault(request)
        if injected is not None:
            return injected
        path, method = request.url.path, request.method
        if path == "/data/JSESSION" and method == "POST":
            return self._login(request)
        if not self._authorised(request):
            return httpx.Response(401, text="<html><body>Unauthorized</body></html>")
        params = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        parts = path.strip("/").split("/")
        if path == "/data/JSESSION":
            return httpx.Response(200, text=self._cookie(request) or "")
        if path == "/data/projects":
            return self._result_set(self.projects, params, None)
        if path == "/data/subjects":
            return self._result_set(self.subjects, params, SUBJECT_DEFAULT_COLUMNS)
        if path == "/data/experiments":
            rows = [s.fields for s in self.experiments]
            if params.get("xsiType") not in (None, "xnat:imageSessionData", "xnat:mrSessionData"):
                rows = []
            return self._result_set(rows, params, SESSION_DEFAULT_COLUMNS)
        if parts[:2] == ["data", "experiments"] and len(parts) == 3:
            return self._record(parts[2])
        if (
            parts[:2] == ["data", "experiments"]
            and parts[3:4] == ["scans"]
            and parts[-1] == "files"
        ):
            return self._zip(parts[2], parts[4], params)
        if path == "/data/services/import" and method == "POST":
            return self._import(request, params, body)
        return httpx.Response(404, text="Not Found")

    def _cookie(self, request: httpx.Request) -> str | None:
        for part in request.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "JSESSIONID":
                return value
        return None

    def _basic_ok(self, request: httpx.Request) -> bool:
        expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"

    def _authorised(self, request: httpx.Request) -> bool:
        return self._cookie(request) in self.sessions or self._basic_ok(request)

    def _login(self, request: httpx.Request) -> httpx.Response:
        if not self._basic_ok(request):
            return httpx.Response(401, text="<html><body>Login failed</body></html>")
        self.logins += 1
        session = secrets.token_hex(16).upper()
        self.sessions.add(session)
        headers = {"Set-Cookie": f"JSESSIONID={session}; Path=/; HttpOnly"}
        return httpx.Response(200, text=session, headers=headers)

    def _result_set(
        self, rows: list[dict[str, str]], params: dict[str, str], defaults: tuple[str, ...] | None
    ) -> httpx.Response:
        if params.get("format", "json") != "json":
            return httpx.Response(400)
        columns = params["columns"].split(",") if "columns" in params else defaults
        if columns is not None:
            keep = ["ID", *columns, "URI"]
            rows = [{k: row.get(k, "") for k in keep} for row in rows]
        result = {"ResultSet": {"Result": rows, "totalRecords": str(len(rows))}}
        return httpx.Response(200, json=result)

    def _find(self, xid: str) -> Session | None:
        return next((s for s in self.experiments if s.fields["ID"] == xid), None)

    def _record(self, xid: str) -> httpx.Response:
        session = self._find(xid)
        if session is None:
            return httpx.Response(404)
        text = (FIXTURES / "experiment_record.json").read_text()
        for key, value in (("study_uid", session.fields["UID"]), ("series_1", self.series_1),
                           ("series_2", self.series_2)):  # fmt: skip
            text = text.replace("{" + key + "}", value)
        record = json.loads(text)
        if xid != "XNAT_E00001":  # no scans
            record["items"][0]["children"] = []
        return httpx.Response(200, json=record)

    def _zip(self, xid: str, scans: str, params: dict[str, str]) -> httpx.Response:
        session = self._find(xid)
        if session is None or params.get("format") != "zip":
            return httpx.Response(404)
        wanted = (
            session.scans if scans == "ALL" else {s: session.scans[s] for s in scans.split(",")}
        )
        out = BytesIO()
        label = session.fields["label"]
        with zipfile.ZipFile(out, "w") as archive:
            for scan, files in wanted.items():
                root = f"{label}/scans/{scan}-t1/resources"
                for i, data in enumerate(files):
                    archive.writestr(f"{root}/DICOM/files/{i + 1}.dcm", data)
                archive.writestr(f"{root}/DICOM/scan_{scan}_catalog.xml", "<cat:DCMCatalog/>")
                archive.writestr(f"{root}/SNAPSHOTS/files/{scan}_qc.gif", b"GIF89a")
        return httpx.Response(
            200, content=out.getvalue(), headers={"Content-Type": "application/zip"}
        )

    def _import(
        self, request: httpx.Request, params: dict[str, str], body: bytes
    ) -> httpx.Response:
        if params.get("import-handler") != "DICOM-zip" or params.get("inbody") != "true":
            return httpx.Response(400, text="unsupported import")
        if request.headers.get("Content-Type") != "application/zip":
            return httpx.Response(400, text="expected a zip")
        project, subject, label = params["PROJECT_ID"], params["SUBJECT_ID"], params["EXPT_LABEL"]
        if project not in {p["ID"] for p in self.projects}:
            return httpx.Response(404, text="project not found")
        files = []
        with zipfile.ZipFile(BytesIO(body)) as archive:
            for name in archive.namelist():
                data = archive.read(name)
                if data[128:132] != b"DICM":
                    return httpx.Response(400, text=f"{name} is not DICOM")
                files.append(data)
        first = dcmread(BytesIO(files[0]))
        xid = f"XNAT_E{len(self.experiments) + 1:05d}"
        self.experiments.append(
            Session(
                self._session(xid, label, project, "XNAT_S00099", subject, "2024-06-01",
                              str(first.StudyInstanceUID), subject, "", ""),
                {"1": files},
            )
        )  # fmt: skip
        uri = f"/data/archive/projects/{project}/subjects/{subject}/experiments/{label}"
        return httpx.Response(200, text=uri + "\r\n")

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The same fake as an ASGI app, to serve it over real HTTP."""
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client gave up mid-request: nothing is imported
            body += message.get("body", b"")
            more = message.get("more_body", False)
        query = scope["query_string"].decode()
        url = f"http://xnat.test{scope['path']}" + (f"?{query}" if query else "")
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"]]
        request = httpx.Request(scope["method"], url, headers=headers, content=body)
        response = await self.handle(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.content})


@contextlib.asynccontextmanager
async def serve(fake: FakeXnat) -> AsyncIterator[str]:
    """The fake on a loopback port; yields its base URL."""
    sock = socket.create_server(("127.0.0.1", 0))  # listening before uvicorn starts
    config = uvicorn.Config(fake.asgi, interface="asgi3", log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = server.force_exit = True
        await task
        sock.close()


def config(**kw: Any) -> SourceConfig:
    base = SourceConfig(
        id="xnat",
        kind="xnat",
        url="http://xnat.test",
        username=USER,
        password=PASSWORD,
        auth="basic",
        roles=("research",),
        timeout_s=1.0,
        retries=0,
    )
    return replace(base, **kw)


@pytest.fixture
def fake() -> FakeXnat:
    return FakeXnat()


Make = Callable[..., XnatSource]


@pytest.fixture(params=["mock-transport", "loopback-http"])
async def make(request: pytest.FixtureRequest, fake: FakeXnat) -> AsyncIterator[Make]:
    """XnatSources talking to the fake, by MockTransport or by real HTTP."""
    made: list[XnatSource] = []
    async with contextlib.AsyncExitStack() as stack:
        url = (
            await stack.enter_async_context(serve(fake))
            if request.param == "loopback-http"
            else None
        )

        def build(**kw: Any) -> XnatSource:
            if url is None:
                source = XnatSource(config(**kw), transport=fake.transport)
            else:
                source = XnatSource(config(**{"url": url, **kw}))
            made.append(source)
            return source

        yield build
        for source in made:
            await source.aclose()


@pytest.fixture
def xnat(make: Make) -> XnatSource:
    return make()


def paths(fake: FakeXnat) -> list[str]:
    return [f"{r.method} {r.url.path}" for r in fake.requests]


def test_registry_builds_an_xnat_source() -> None:
    source = build_source(config())
    assert isinstance(source, XnatSource)
    assert isinstance(source, PacsSource)


async def test_logs_in_once_and_sends_the_session_cookie(fake: FakeXnat, xnat: XnatSource) -> None:
    fake.delay = 0.05  # every answer takes 50 ms: a measured ping (login, then one GET) cannot
    latency = await xnat.ping()  # be faster than 100 ms
    assert paths(fake) == ["POST /data/JSESSION", "GET /data/JSESSION"]
    assert isinstance(latency, float)
    assert 2 * fake.delay * 1000 <= latency < xnat.config.timeout_s * 1000
    fake.delay = 0.0
    await xnat.find_studies(StudyQuery())
    assert paths(fake) == ["POST /data/JSESSION", "GET /data/JSESSION", "GET /data/experiments"]
    login, *calls = fake.requests
    assert login.headers["Authorization"].startswith("Basic ")
    for request in calls:
        assert "Authorization" not in request.headers
        assert fake._cookie(request) in fake.sessions
    assert fake.logins == 1


async def test_expired_session_is_renewed_once(fake: FakeXnat, xnat: XnatSource) -> None:
    await xnat.ping()
    fake.expire_sessions()
    assert len(await xnat.find_studies(StudyQuery())) == 2
    assert paths(fake)[-3:] == [
        "GET /data/experiments",  # 401 with the expired cookie
        "POST /data/JSESSION",
        "GET /data/experiments",
    ]
    assert fake.logins == 2


async def test_refused_credentials_are_an_auth_error(fake: FakeXnat, make: Make) -> None:
    with pytest.raises(AuthError, match="credentials refused"):
        await make(password="wrong").ping()
    assert fake.logins == 0


async def test_projects(xnat: XnatSource, fake: FakeXnat) -> None:
    assert await xnat.projects() == ["RESEARCH", "TRIAL"]
    assert fake.requests[-1].url.params["format"] == "json"


async def test_subjects_map_to_patients(xnat: XnatSource, fake: FakeXnat) -> None:
    patients = await xnat.find_patients(PatientQuery())
    assert patients == [
        PatientRecord("SUBJ01", "RESEARCH", "SUBJ01", "19700101", "F", 1),
        PatientRecord("SUBJ01", "TRIAL", None, None, None, 1),
        PatientRecord("subj02", "RESEARCH", "subj02", None, "M", 1),
    ]
    subjects = next(r for r in fake.requests if r.url.path == "/data/subjects")
    assert subjects.url.params["columns"] == "ID,label,project,gender,dob"


async def test_patient_matching_and_paging(xnat: XnatSource) -> None:
    found = await xnat.find_patients(PatientQuery(name="SUBJ0*"))  # PN: any case
    assert [(p.patient_id, p.issuer) for p in found] == [
        ("SUBJ01", "RESEARCH"),
        ("subj02", "RESEARCH"),
    ]
    page = await xnat.find_patients(PatientQuery(offset=1, limit=1))
    assert [(p.patient_id, p.issuer) for p in page] == [("SUBJ01", "TRIAL")]


async def test_sessions_map_to_studies(xnat: XnatSource, fake: FakeXnat) -> None:
    studies = await xnat.find_studies(StudyQuery(study_uids=(fake.study_1,)))
    assert studies == [
        StudyRecord(
            study_uid=fake.study_1,
            patient_id="SUBJ01",
            patient_name="SUBJ01",
            study_date="20240301",
            study_time="101500",
            description="Brain MRI",
            accession_number="RA0001",
            modalities=("MR",),
        )
    ]
    listing = fake.requests[-1].url.params
    assert listing["xsiType"] == "xnat:imageSessionData"
    assert set(listing["columns"].split(",")) >= {"UID", "subject_label", "date", "modality"}


async def test_study_matching(xnat: XnatSource, fake: FakeXnat) -> None:
    def uids(found: list[StudyRecord]) -> list[str]:
        return [s.study_uid for s in found]

    everything = await xnat.find_studies(StudyQuery())
    assert uids(everything) == sorted([fake.study_1, fake.study_2])  # no UID, no study
    assert uids(await xnat.find_studies(StudyQuery(study_date="20240101-"))) == [fake.study_1]
    assert uids(await xnat.find_studies(StudyQuery(patient_name="subj01"))) == [fake.study_1]
    assert uids(await xnat.find_studies(StudyQuery(description="Knee*"))) == [fake.study_2]
    assert await xnat.find_studies(StudyQuery(modality="CT")) == []
    assert uids(await xnat.find_studies(StudyQuery(limit=1, offset=1))) == uids(everything)[1:]


async def test_scans_map_to_series(xnat: XnatSource, fake: FakeXnat) -> None:
    series = await xnat.find_series(SeriesQuery(study_uids=(fake.study_1, fake.study_2)))
    by_uid = {s.series_uid: s for s in series}
    assert set(by_uid) == {fake.series_1, fake.series_2}
    first = by_uid[fake.series_1]
    assert (first.study_uid, first.modality, first.series_number, first.description) == (
        fake.study_1,
        "MR",
        2,
        "t1_mprage_sag",
    )
    assert by_uid[fake.series_2].modality == "CT"  # from the scan's xsi:type
    assert "GET /data/experiments/XNAT_E00001" in paths(fake)
    only = await xnat.find_series(SeriesQuery(study_uids=(fake.study_1,), modality="CT"))
    assert [s.series_uid for s in only] == [fake.series_2]


async def test_instances_are_not_indexed(xnat: XnatSource, fake: FakeXnat) -> None:
    with pytest.raises(NotSupported):
        await xnat.find_instances(InstanceQuery(study_uid=fake.study_1))
    with pytest.raises(NotSupported):
        async for _ in xnat.retrieve_instance(fake.study_1, fake.series_1, "1.2.3"):
            pass


async def test_store_needs_import_study(xnat: XnatSource) -> None:
    with pytest.raises(NotSupported, match="import_study"):
        await xnat.store([b""])


async def test_retrieve_study_yields_each_dicom_member(xnat: XnatSource, fake: FakeXnat) -> None:
    got = [dcmread(BytesIO(b)) async for b in xnat.retrieve_study(fake.study_1)]
    assert sorted(str(d.SeriesInstanceUID) for d in got) == sorted(
        [fake.series_1, fake.series_1, fake.series_2]
    )
    download = fake.requests[-1]
    assert download.url.path == "/data/experiments/XNAT_E00001/scans/ALL/files"
    assert download.url.params["format"] == "zip"


async def test_retrieve_some_series(xnat: XnatSource, fake: FakeXnat) -> None:
    got = [dcmread(BytesIO(b)) async for b in xnat.retrieve_study(fake.study_1, [fake.series_2])]
    assert [str(d.SeriesInstanceUID) for d in got] == [fake.series_2]
    assert fake.requests[-1].url.path == "/data/experiments/XNAT_E00001/scans/3/files"


async def test_retrieve_unknown_study(xnat: XnatSource) -> None:
    with pytest.raises(NotFound):
        async for _ in xnat.retrieve_study(generate_uid()):
            pass


async def test_import_study(xnat: XnatSource, fake: FakeXnat) -> None:
    study, series = generate_uid(), generate_uid()
    files = [dicom(study, series, "ANON01", i) for i in (1, 2, 3)]
    result = await xnat.import_study(files, "RESEARCH", "ANON01", "ANON01_MR1")
    assert result.uri == "/data/archive/projects/RESEARCH/subjects/ANON01/experiments/ANON01_MR1"
    assert result.stored == tuple(str(dcmread(BytesIO(f)).SOPInstanceUID) for f in files)
    assert result.bytes == sum(map(len, files))
    request, body = fake.requests[-1], fake.bodies[-1]
    assert request.url.path == "/data/services/import"
    assert dict(request.url.params) == {
        "import-handler": "DICOM-zip",
        "PROJECT_ID": "RESEARCH",
        "SUBJECT_ID": "ANON01",
        "EXPT_LABEL": "ANON01_MR1",
        "overwrite": "append",
        "dest": "/archive",
        "inbody": "true",
    }
    assert request.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(BytesIO(body)) as archive:
        assert sorted(archive.read(n) for n in archive.namelist()) == sorted(files)
    [imported] = await xnat.find_studies(StudyQuery(study_uids=(study,)))
    assert (imported.patient_id, imported.patient_name) == ("ANON01", "ANON01")


async def test_import_after_session_expiry_resends_the_zip(
    xnat: XnatSource, fake: FakeXnat
) -> None:
    await xnat.ping()
    fake.expire_sessions()
    study = generate_uid()
    result = await xnat.import_study([dicom(study, generate_uid())], "RESEARCH", "S9", "S9_MR1")
    assert result.uri.endswith("/experiments/S9_MR1")
    assert paths(fake)[-3:] == [
        "POST /data/services/import",  # 401
        "POST /data/JSESSION",
        "POST /data/services/import",
    ]
    assert fake.bodies[-1] and fake.bodies[-1] == fake.bodies[-3]


async def test_import_refuses_non_dicom_before_sending(xnat: XnatSource, fake: FakeXnat) -> None:
    with pytest.raises(SourceProtocolError, match="file 0 is not DICOM"):
        await xnat.import_study([b"text"], "RESEARCH", "S", "L")
    assert not any(r.url.path == "/data/services/import" for r in fake.requests)


async def test_import_into_unknown_project(xnat: XnatSource) -> None:
    with pytest.raises(NotFound):
        await xnat.import_study([dicom(generate_uid(), generate_uid())], "NOPE", "S", "L")


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, SourceProtocolError), (503, SourceUnavailable), (403, AuthError), (404, NotFound)],
)
async def test_http_errors_are_typed(
    xnat: XnatSource, fake: FakeXnat, status: int, error: type[Exception]
) -> None:
    await xnat.ping()
    fake.fault = lambda r: httpx.Response(status) if r.url.path == "/data/experiments" else None
    with pytest.raises(error):
        await xnat.find_studies(StudyQuery())


async def test_garbage_body(xnat: XnatSource, fake: FakeXnat) -> None:
    fake.fault = lambda r: (
        httpx.Response(200, text="<html>maintenance</html>")
        if r.url.path != "/data/JSESSION"
        else None
    )
    with pytest.raises(SourceProtocolError):
        await xnat.find_studies(StudyQuery())
    fake.fault = lambda r: (
        httpx.Response(200, json={"items": []}) if r.url.path == "/data/experiments" else None
    )
    with pytest.raises(SourceProtocolError, match="not an XNAT result set"):
        await xnat.find_studies(StudyQuery())


async def test_hanging_server_times_out(fake: FakeXnat, make: Make) -> None:
    source = make(timeout_s=0.5)
    fake.delay = 2
    start = time.perf_counter()
    with pytest.raises(SourceTimeout):
        await source.ping()
    assert time.perf_counter() - start < 0.5 + 0.5


async def test_connection_refused() -> None:
    source = XnatSource(config(url="http://127.0.0.1:9", connect_timeout_s=0.5))
    with pytest.raises(SourceUnavailable):
        await source.ping()
    await source.aclose()
