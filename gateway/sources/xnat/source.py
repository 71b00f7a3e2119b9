"""XNAT adapter (REST API of XNAT 1.8): the research archive of de-identified studies.

Mapping, as far as XNAT's REST listings expose it:

- subject → PatientRecord: patient_id = subject label, issuer = project id
  (labels are unique within a project), sex from `gender` (M/F/O), birth_date
  from `dob`, name = `dcmPatientName` of the subject's first image session
  (XNAT keeps no name for a subject), studies = number of image sessions.
- image session (xnat:imageSessionData and subtypes) → StudyRecord: study_uid
  = `UID`, patient_id = `subject_label`, patient_name = `dcmPatientName`,
  study_date/time = `date`/`time`, accession_number = `dcmAccessionNumber`,
  description = `session_type` (StudyDescription, as XNAT's session builder
  fills it), modalities = (`modality`,); no counts (the listing has none).
- scan → SeriesRecord, from the session's full record: series_uid = `UID`,
  series_number = scan `ID` when numeric, modality (or the scan's xsi type),
  description = `series_description`; no instance count (XNAT counts frames).
- Instances are not indexed: `find_instances`/`retrieve_instance` raise
  NotSupported. `retrieve_study` downloads the scans' files as one zip
  (spooled to disk past 16 MiB) and yields its DICOM members one at a time.
- `store` raises NotSupported (a source's config names no project): use
  `import_study(files, project, subject, label)`, the DICOM-zip import service.

Authentication: POST /data/JSESSION with the configured credentials gives a
session id, sent as the JSESSIONID cookie; a 401 renews it once and retries
(`gateway.sources.http.auth.JSessionAuth`).
Matching, sorting and paging are local (`gateway.sources.matching`, `.paging`).
HTTP plumbing and error translation: `gateway.sources.http.client`.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import IO, Any

import httpx
from pydicom import dcmread

from gateway.core.errors import AuthError, NotFound, NotSupported, SourceProtocolError
from gateway.core.settings import SourceConfig
from gateway.sources import normalize as n
from gateway.sources.base import (
    InstanceQuery,
    InstanceRecord,
    PatientQuery,
    PatientRecord,
    SeriesQuery,
    SeriesRecord,
    StoreResult,
    StudyQuery,
    StudyRecord,
)
from gateway.sources.http.auth import JSessionAuth
from gateway.sources.http.client import HttpClient, status_error, translate
from gateway.sources.matching import patient_matches, series_matches, study_matches
from gateway.sources.paging import page, sort_patients, sort_series, sort_studies
from gateway.sources.resilience import CallStats, Guard

SESSIONS = {
    "xsiType": "xnat:imageSessionData",
    "columns": "ID,label,project,subject_ID,subject_label,date,time,UID,modality,"
    "session_type,dcmAccessionNumber,dcmPatientName,xsiType",
}
SUBJECTS = {"columns": "ID,label,project,gender,dob"}
SPOOL_BYTES = 16 << 20
SEX = {"male": "M", "female": "F", "other": "O", "m": "M", "f": "F", "o": "O"}
SCAN_MODALITY = {"mr": "MR", "ct": "CT", "pet": "PT", "us": "US", "cr": "CR", "dx": "DX"}


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What the import service made of a zip: the session's URI and the instances sent."""

    uri: str
    stored: tuple[str, ...]
    bytes: int


class XnatSource:
    """One XNAT server, over its REST API."""

    def __init__(
        self, config: SourceConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.guard = Guard(config)
        self.http = HttpClient(config, self.guard, transport=transport)
        self.auth = JSessionAuth(config, transport) if config.username else None
        if self.auth is not None:
            self.http.client.auth = self.auth
        else:  # anonymous (guest) access; never the basic auth built from the config
            self.http.client.auth = httpx.Auth()

    @property
    def id(self) -> str:
        """The configured id."""
        return self.config.id

    @property
    def stats(self) -> CallStats:
        """Timing of this source's calls."""
        return self.guard.stats

    async def _rows(self, op: str, path: str, params: dict[str, str]) -> list[dict[str, str]]:
        """A `{"ResultSet": {"Result": [...]}}` listing (or a bare list), keys lower-cased."""
        body = await self.http.json(op, "GET", path, params={"format": "json", **params})
        try:
            rows = body if isinstance(body, list) else body["ResultSet"]["Result"]
            return [{str(k).lower(): str(v) for k, v in row.items()} for row in rows]
        except (KeyError, TypeError, AttributeError):
            raise SourceProtocolError(self.id, f"{op}: not an XNAT result set") from None

    async def projects(self) -> list[str]:
        """The ids of the projects the account can see."""
        return sorted(r.get("id", "") for r in await self._rows("projects", "/data/projects", {}))

    async def ping(self) -> float:
        """Log in if needed and ask for the session id; milliseconds."""
        start = time.perf_counter()
        await self.http.request("ping", "GET", "/data/JSESSION")
        return (time.perf_counter() - start) * 1000

    async def find_patients(self, query: PatientQuery) -> list[PatientRecord]:
        """Subjects as patients, ordered by (label, project)."""
        subjects, sessions = await asyncio.gather(
            self._rows("find_patients", "/data/subjects", SUBJECTS),
            self._rows("find_patients", "/data/experiments", SESSIONS),
        )
        own: dict[tuple[str, str], list[dict[str, str]]] = {}
        for s in sorted(sessions, key=lambda s: (s.get("date", ""), s.get("label", ""))):
            own.setdefault((s.get("project", ""), s.get("subject_label", "")), []).append(s)
        records = []
        for row in subjects:
            key = (row.get("project", ""), row.get("label", ""))
            first = own.get(key, [{}])[0]
            record = PatientRecord(
                patient_id=key[1],
                issuer=n.text(key[0]),
                name=n.person_name(first.get("dcmpatientname")),
                birth_date=n.date(row.get("dob")),
                sex=SEX.get((row.get("gender") or "").lower()),
                studies=len(own.get(key, [])),
            )
            if patient_matches(query, record):
                records.append(record)
        return page(sort_patients(records), query.offset, query.limit)

    async def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        """Image sessions with a UID as studies, ordered by study UID."""
        sessions = await self._rows("find_studies", "/data/experiments", SESSIONS)
        records = (_study(s) for s in sessions if n.text(s.get("uid")))
        keep = [r for r in records if study_matches(query, r)]
        return page(sort_studies(keep), query.offset, query.limit)

    async def _session_ids(self, op: str, study_uids: Sequence[str]) -> dict[str, str]:
        rows = await self._rows(op, "/data/experiments", SESSIONS)
        return {r["uid"]: r["id"] for r in rows if r.get("uid") in study_uids and r.get("id")}

    async def _scans(self, op: str, session_id: str) -> list[dict[str, Any]]:
        """The scans of one session, from its full record (`items[0].children`)."""
        body = await self.http.json(
            op, "GET", f"/data/experiments/{session_id}", params={"format": "json"}
        )
        try:
            children = body["items"][0].get("children", [])
            return [
                {**item.get("data_fields", {}), "xsi": item.get("meta", {}).get("xsi:type", "")}
                for child in children
                if child.get("field") == "scans/scan"
                for item in child.get("items", [])
            ]
        except (KeyError, IndexError, TypeError, AttributeError):
            raise SourceProtocolError(self.id, f"{op}: not an XNAT experiment record") from None

    async def find_series(self, query: SeriesQuery) -> list[SeriesRecord]:
        """Scans with a UID as series, ordered by (study UID, series UID)."""
        ids = await self._session_ids("find_series", query.study_uids)
        found = await asyncio.gather(*(self._scans("find_series", i) for i in ids.values()))
        records = [_series(s, uid) for uid, scans in zip(ids, found, strict=True) for s in scans]
        # every record's study is one of query.study_uids (`_session_ids`)
        return sort_series(r for r in records if r.series_uid and series_matches(query, r))

    async def find_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        """XNAT does not index instances."""
        raise NotSupported(self.id, "find_instances: XNAT does not index instances")

    async def retrieve_instance(
        self, study_uid: str, series_uid: str, sop_uid: str
    ) -> AsyncIterator[bytes]:
        """XNAT does not index instances."""
        raise NotSupported(self.id, "retrieve_instance: XNAT does not index instances")
        yield b""  # unreachable; makes this an async generator like the protocol's

    async def retrieve_study(
        self, study_uid: str, series_uids: Sequence[str] = ()
    ) -> AsyncIterator[bytes]:
        """Download the scans' files as one zip; yield its DICOM members one at a time."""
        op = "retrieve_study"
        ids = await self._session_ids(op, [study_uid])
        if study_uid not in ids:
            raise NotFound(self.id, f"{op}: no image session with this study UID")
        scans = "ALL"
        if series_uids:
            wanted = [
                s for s in await self._scans(op, ids[study_uid]) if s.get("UID") in series_uids
            ]
            if not wanted:
                raise NotFound(self.id, f"{op}: no scan with these series UIDs")
            scans = ",".join(str(s.get("ID")) for s in wanted)
        path = f"/data/experiments/{ids[study_uid]}/scans/{scans}/files"
        response = await self.http.open(op, "GET", path, params={"format": "zip"})
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            async for chunk in self.http.iter_body(response, op):
                await asyncio.to_thread(spool.write, chunk)
            try:
                archive = zipfile.ZipFile(spool)
            except zipfile.BadZipFile:
                raise SourceProtocolError(self.id, f"{op}: the answer is not a zip") from None
            with archive:
                for info in archive.infolist():
                    data = b"" if info.is_dir() else await asyncio.to_thread(archive.read, info)
                    if data[128:132] == b"DICM":  # skip snapshots, catalogs, NIfTI...
                        yield data

    async def store(self, files: Sequence[bytes]) -> StoreResult:
        """Not without a project: use `import_study`."""
        raise NotSupported(
            self.id, "store: XNAT needs a project, subject and session label; use import_study()"
        )

    async def import_study(
        self,
        files: Sequence[bytes],
        project: str,
        subject: str,
        label: str,
        *,
        overwrite: str = "append",
        destination: str = "/archive",
    ) -> ImportResult:
        """Send de-identified Part 10 files as one zip to the import service (DICOM-zip)."""
        op = "import_study"
        sops = []
        for index, data in enumerate(files):
            try:
                sops.append(str(dcmread(BytesIO(data), stop_before_pixels=True).SOPInstanceUID))
            except Exception:  # any parse failure means "not DICOM"
                raise SourceProtocolError(self.id, f"{op}: file {index} is not DICOM") from None
        params = {
            "import-handler": "DICOM-zip",
            "PROJECT_ID": project,
            "SUBJECT_ID": subject,
            "EXPT_LABEL": label,
            "overwrite": overwrite,
            "dest": destination,
            "inbody": "true",
        }
        headers = {"Content-Type": "application/zip"}
        spool = await asyncio.to_thread(_zip, files)

        async def send() -> httpx.Response:
            for _ in (0, 1):  # a renewed session needs the zip again, from the start
                try:
                    response = await self.http.client.post(
                        "/data/services/import",
                        params=params,
                        headers=headers,
                        content=_read(spool),
                    )
                except httpx.HTTPError as exc:
                    raise translate(exc, self.id, op) from None
                if response.status_code == 401 and self.auth is not None:
                    continue
                if response.status_code != 200:
                    raise status_error(response.status_code, self.id, op)
                return response
            raise AuthError(self.id, f"{op}: session refused twice")

        try:
            response = await self.guard.call(op, send, idempotent=False)
        finally:
            spool.close()
        return ImportResult(response.text.strip(), tuple(sops), sum(map(len, files)))

    async def aclose(self) -> None:
        """Close the HTTP clients."""
        await self.http.aclose()
        if self.auth is not None:
            await self.auth.aclose()


def _study(s: dict[str, str]) -> StudyRecord:
    return StudyRecord(
        study_uid=n.text(s.get("uid")) or "",
        patient_id=n.text(s.get("subject_label")),
        patient_name=n.person_name(s.get("dcmpatientname")),
        study_date=n.date(s.get("date")),
        study_time=n.time_(s.get("time")),
        description=n.text(s.get("session_type")),
        accession_number=n.text(s.get("dcmaccessionnumber")),
        modalities=n.modalities(s.get("modality")),
    )


def _series(scan: dict[str, Any], study_uid: str) -> SeriesRecord:
    xsi = str(scan.get("xsi", "")).removeprefix("xnat:").removesuffix("ScanData").lower()
    number = str(scan.get("ID", ""))
    return SeriesRecord(
        series_uid=n.text(scan.get("UID")) or "",
        study_uid=study_uid,
        modality=n.text(scan.get("modality")) or SCAN_MODALITY.get(xsi),
        series_number=int(number) if number.isdigit() else None,
        description=n.text(scan.get("series_description")),
    )


def _zip(files: Sequence[bytes]) -> IO[bytes]:
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # closed by the caller
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED) as archive:
        for index, data in enumerate(files):
            archive.writestr(f"{index:06d}.dcm", data)
    return spool


async def _read(spool: IO[bytes], size: int = 1 << 20) -> AsyncIterator[bytes]:
    await asyncio.to_thread(spool.seek, 0)
    while chunk := await asyncio.to_thread(spool.read, size):
        yield chunk


__all__ = ["ImportResult", "XnatSource"]
