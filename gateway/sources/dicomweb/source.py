"""Any DICOMweb archive (PS3.18): QIDO-RS queries, WADO-RS retrieve, STOW-RS store.

Dialects (`SourceConfig.dialect`):

- `dcm4chee`: base `…/dcm4chee-arc/aets/{AET}/rs`; adds `includefield=all` and,
  for person-name keys, `fuzzymatching=true`; tries patient-level QIDO first; finds
  studies by receive time (`StudyReceiveDateTime`) where the archive matches it;
- `orthanc`: no patient-level QIDO (patients are derived from studies);
- `generic`: standard PS3.18 only; tries patient-level QIDO first.

Every request is standard DICOMweb. The archive's matching narrows candidates
(PN patterns widened to a superset), then records are matched locally, sorted
and paged, since QIDO cannot order results. QIDO pages of `PAGE` results are
followed while full or while a `Warning: 299 … additional results` header says
the archive capped the answer (dcm4chee's result limit). UID lists go
comma-separated (PS3.18 8.3.4.1), `UID_BATCH` per request, batches concurrent.
WADO-RS and STOW-RS bodies are multipart/related, parsed and composed as
streams: one instance in memory at a time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from gateway.core.errors import NotFound, NotSupported, SourceProtocolError
from gateway.core.settings import SourceConfig
from gateway.core.uids import is_uid
from gateway.sources import dicomjson as dj
from gateway.sources import matching as m
from gateway.sources import paging, part10
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
from gateway.sources.http import multipart as mp
from gateway.sources.http.client import HttpClient, gather, parse_json
from gateway.sources.resilience import CallStats, Guard

Params = list[tuple[str, str]]
PAGE = 5000
UID_BATCH = 100
STOW_BATCH = 50
STOW_DEADLINE_FACTOR = 10.0
ACCEPT_JSON = {"Accept": "application/dicom+json"}
RECEIVED = "StudyReceiveDateTime"  # dcm4chee: when the archive received the study
_QUERY_SAFE = "*?^,.-_~"
_PATIENT_FIELDS = (dj.ISSUER_OF_PATIENT_ID, dj.PATIENT_BIRTH_DATE, dj.PATIENT_SEX)
_FIELDS = {
    "patients": (*_PATIENT_FIELDS, dj.PATIENT_STUDIES),
    "studies": (
        *_PATIENT_FIELDS,
        dj.STUDY_DESCRIPTION,
        dj.MODALITIES_IN_STUDY,
        dj.STUDY_SERIES,
        dj.STUDY_INSTANCES,
    ),
    "series": (dj.SERIES_DESCRIPTION, dj.SERIES_NUMBER, dj.SERIES_INSTANCES),
    "instances": (dj.SOP_CLASS_UID, dj.INSTANCE_NUMBER),
}


def _put(params: Params, key: str, value: str | None) -> None:
    if value and value != "*":
        params.append((key, value))


def _chunks(uids: Sequence[str]) -> list[Sequence[str]]:
    return [uids[i : i + UID_BATCH] for i in range(0, len(uids), UID_BATCH)] or [()]


def _query(params: Params) -> str:
    """A query string that leaves DICOM wildcards, `^` and `,` unescaped.

    Orthanc's QIDO does not percent-decode, so keys are first made safe with
    `matching.widen`; what remains is escaped only where RFC 3986 requires.
    """
    return "&".join(f"{key}={quote(value, safe=_QUERY_SAFE)}" for key, value in params)


def _more_results(response: httpx.Response) -> bool:
    warning = response.headers.get("warning", "")
    return "299" in warning and "additional" in warning.lower()


class DicomWebSource:
    """A PACS reached through QIDO-RS, WADO-RS and STOW-RS."""

    def __init__(
        self,
        config: SourceConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        token_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.dialect = config.dialect
        self.guard = Guard(config)
        self.http = HttpClient(
            config, self.guard, transport=transport, token_transport=token_transport
        )
        self._patient_level: bool | None = False if self.dialect == "orthanc" else None
        # whether StudyReceiveDateTime is matched: only the dcm4chee dialect has it
        self._receipts: bool | None = None if self.dialect == "dcm4chee" else False

    @property
    def id(self) -> str:
        """The configured id."""
        return self.config.id

    @property
    def stats(self) -> CallStats:
        """Timing of this source's calls (`self.guard` holds breaker state too)."""
        return self.guard.stats

    def _uid(self, op: str, uid: str) -> str:
        if not is_uid(uid):
            raise NotFound(self.id, f"{op}: not a valid UID")
        return uid

    async def ping(self) -> float:
        """A one-result QIDO study query; the round trip in milliseconds."""
        start = time.perf_counter()
        await self.http.request(
            "ping", "GET", "/studies", params={"limit": "1"}, headers=ACCEPT_JSON
        )
        return (time.perf_counter() - start) * 1000

    # -- QIDO-RS ---------------------------------------------------------------

    def _extras(self, level: str, params: Params) -> Params:
        extra = [("includefield", tag) for tag in _FIELDS[level]]
        if self.dialect == "dcm4chee":
            extra.insert(0, ("includefield", "all"))
            if any(key == "PatientName" for key, _ in params):
                extra.append(("fuzzymatching", "true"))
        return params + extra

    async def _qido(self, op: str, path: str, level: str, params: Params) -> list[dict[str, Any]]:
        params = self._extras(level, params)
        results: list[dict[str, Any]] = []
        while True:
            paged = [*params, ("limit", str(PAGE)), ("offset", str(len(results)))]
            url = f"{path}?{_query(paged)}"
            response = await self.http.request(op, "GET", url, headers=ACCEPT_JSON)
            data = parse_json(response, self.id, op) or []
            if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
                raise SourceProtocolError(self.id, f"{op}: unexpected answer shape")
            results.extend(data)
            if not data or not (len(data) >= PAGE or _more_results(response)):
                return results

    async def _qido_uids(
        self, op: str, path: str, level: str, params: Params, key: str, uids: Sequence[str]
    ) -> list[dict[str, Any]]:
        calls = []
        for chunk in _chunks(uids):
            p = list(params)
            _put(p, key, ",".join(chunk))
            calls.append(self._qido(op, path, level, p))
        return [item for part in await gather(*calls) for item in part]

    async def _qido_in_study(
        self, op: str, path: str, level: str, params: Params
    ) -> list[dict[str, Any]]:
        """A study-scoped QIDO; an unknown study (404 from some archives) has no results."""
        try:
            return await self._qido(op, path, level, params)
        except NotFound:
            return []

    async def find_patients(self, query: PatientQuery) -> list[PatientRecord]:
        """Patients matching `query`, ordered by patient id."""
        params: Params = []
        _put(params, "PatientID", m.widen(query.patient_id))
        _put(params, "PatientName", m.widen(query.name, open_ended=True))
        _put(params, "PatientBirthDate", query.birth_date)
        records: list[PatientRecord] | None = None
        if self._patient_level is not False:
            try:
                items = await self._qido("find_patients", "/patients", "patients", params)
            except (NotFound, NotSupported):
                if self._patient_level:
                    raise
                self._patient_level = False
            else:
                self._patient_level = True
                records = [dj.patient_record(x) for x in items]
        if records is None:
            items = await self._qido("find_patients", "/studies", "studies", params)
            records = _patients_of(dj.study_record(x) for x in items)
        matched = [r for r in records if m.patient_matches(query, r)]
        return paging.page(paging.sort_patients(matched), query.offset, query.limit)

    async def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        """Studies matching `query`, ordered by study UID."""
        params: Params = []
        _put(params, "PatientID", m.widen(query.patient_id))
        _put(params, "PatientName", m.widen(query.patient_name, open_ended=True))
        _put(params, "AccessionNumber", m.widen(query.accession_number))
        _put(params, "StudyDate", query.study_date)
        _put(params, "ModalitiesInStudy", m.widen(query.modality))
        _put(params, "StudyDescription", m.widen(query.description))
        if (uids := m.uid_list(query.study_uids)) is None:
            return []
        items = await self._qido_uids(
            "find_studies", "/studies", "studies", params, "StudyInstanceUID", uids
        )
        records = [r for x in items if m.study_matches(query, r := dj.study_record(x))]
        studies = paging.sort_studies(_unique(records, "study_uid"))
        return paging.page(studies, query.offset, query.limit)

    async def studies_received(self, day: str) -> list[StudyRecord] | None:
        """Studies received from `day` on (`ReceiptWindow`), where the dialect has receive
        times and the archive matches them; None otherwise."""
        if not await self.matches_receipts():
            return None
        params = [(RECEIVED, f"{day}000000-")]
        items = await self._qido("studies_received", "/studies", "studies", params)
        return paging.sort_studies(_unique([dj.study_record(x) for x in items], "study_uid"))

    async def matches_receipts(self) -> bool:
        """Whether the archive matches StudyReceiveDateTime, asked once: a receive time two
        days ahead matches nothing there, while an archive that ignores the key (an Orthanc
        behind its DICOMweb plugin) answers any study. An empty archive cannot tell: asked
        again next time."""
        if self._receipts is None:
            ahead = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y%m%d%H%M%S")
            if await self._holds_any([(RECEIVED, f"{ahead}-")]):
                self._receipts = False
            elif await self._holds_any([]):
                self._receipts = True
        return bool(self._receipts)

    async def _holds_any(self, params: Params) -> bool:
        url = f"/studies?{_query([*params, ('limit', '1')])}"
        response = await self.http.request("receipts", "GET", url, headers=ACCEPT_JSON)
        return bool(parse_json(response, self.id, "receipts"))

    async def find_series(self, query: SeriesQuery) -> list[SeriesRecord]:
        """Series of the given studies, ordered by (study UID, series UID)."""
        studies, series = m.uid_list(query.study_uids), m.uid_list(query.series_uids)
        if studies is None or series is None:
            return []
        params: Params = []
        _put(params, "Modality", m.widen(query.modality))
        if len(series) <= UID_BATCH:
            _put(params, "SeriesInstanceUID", ",".join(series))
        op = "find_series"
        if len(studies) == 1:
            path = f"/studies/{studies[0]}/series"
            items = await self._qido_in_study(op, path, "series", params)
        else:
            key = "StudyInstanceUID"
            items = await self._qido_uids(op, "/series", "series", params, key, studies)
        default = studies[0] if len(studies) == 1 else ""
        records = (dj.series_record(x, default) for x in items)
        return paging.sort_series(r for r in records if m.series_matches(query, r))

    async def find_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        """Instances of one study, ordered by (series, instance number, SOP UID)."""
        series, sops = m.uid_list(query.series_uids), m.uid_list(query.sop_instance_uids)
        if series is None or sops is None or not is_uid(query.study_uid):
            return []
        params: Params = []
        for key, uids in (("SeriesInstanceUID", series), ("SOPInstanceUID", sops)):
            if len(uids) <= UID_BATCH:
                _put(params, key, ",".join(uids))
        path = f"/studies/{query.study_uid}/instances"
        items = await self._qido_in_study("find_instances", path, "instances", params)
        records = (dj.instance_record(x, query.study_uid) for x in items)
        return paging.sort_instances(r for r in records if m.instance_matches(query, r))

    # -- WADO-RS ---------------------------------------------------------------

    async def retrieve_instance(
        self, study_uid: str, series_uid: str, sop_uid: str
    ) -> AsyncIterator[bytes]:
        """Stream one instance's Part 10 file from WADO-RS, chunk by chunk."""
        op = "retrieve_instance"
        uids = [self._uid(op, u) for u in (study_uid, series_uid, sop_uid)]
        path = "/studies/{}/series/{}/instances/{}".format(*uids)
        response, boundary = await self.http.open_parts(op, path)
        body = self.http.iter_body(response, op)
        chunks = body if boundary is None else mp.iter_first_part(body, boundary)
        try:
            async for chunk in chunks:
                yield chunk
        except mp.MultipartError as exc:
            raise SourceProtocolError(self.id, f"{op}: {exc}") from None

    async def retrieve_study(
        self, study_uid: str, series_uids: Sequence[str] = ()
    ) -> AsyncIterator[bytes]:
        """Yield each instance of a study (or some series) as one Part 10 file."""
        op = "retrieve_study"
        base = f"/studies/{self._uid(op, study_uid)}"
        paths = [f"{base}/series/{self._uid(op, s)}" for s in series_uids] or [base]
        async for data in self.http.iter_files(op, paths):
            yield data

    async def relay_study(
        self, study_uid: str, series_uid: str | None
    ) -> tuple[str, AsyncIterator[bytes]]:
        """This archive's WADO-RS multipart answer for a study or one series, as it comes."""
        op = "retrieve_study"
        path = f"/studies/{self._uid(op, study_uid)}"
        if series_uid is not None:
            path += f"/series/{self._uid(op, series_uid)}"
        return await self.http.open_multipart(op, path)

    # -- STOW-RS ---------------------------------------------------------------

    async def store(self, files: Sequence[bytes]) -> StoreResult:
        """Store Part 10 files with STOW-RS, `STOW_BATCH` per request, streamed.

        `files[i]` is read only while it is sent, so a lazy sequence never has
        more than one file in memory; the body is replayed after a token renewal.
        """
        done: list[tuple[_Batch, _Outcome]] = []
        for start in range(0, len(files), STOW_BATCH):
            indices = range(start, min(start + STOW_BATCH, len(files)))
            batch, boundary = _Batch(start), mp.new_boundary()

            def parts(
                batch: _Batch = batch, indices: range = indices, boundary: str = boundary
            ) -> AsyncIterator[bytes]:
                batch.uids, batch.bytes = [], 0
                return mp.compose((files[i] for i in indices), boundary, on_part=batch.see)

            done.append((batch, await self._stow(mp.ReplayableBody(parts), boundary)))
        return _result(done)

    async def store_stream(self, files: AsyncIterable[bytes]) -> StoreResult:
        """Store Part 10 files from an async iterable (a 401 cannot be replayed here)."""
        source = aiter(files)
        done: list[tuple[_Batch, _Outcome]] = []
        start = 0
        while (head := await anext(source, None)) is not None:
            batch, boundary = _Batch(start), mp.new_boundary()
            body = mp.compose(_take(head, source), boundary, on_part=batch.see)
            done.append((batch, await self._stow(body, boundary)))
            start += len(batch.uids)
        return _result(done)

    async def _stow(self, body: AsyncIterable[bytes], boundary: str) -> _Outcome:
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        response = await self.http.request(
            "store",
            "POST",
            "/studies",
            content=body,
            headers={"Content-Type": content_type, **ACCEPT_JSON},
            ok=(400, 409),
            idempotent=False,
            timeout_s=self.config.timeout_s * STOW_DEADLINE_FACTOR,
        )
        data = parse_json(response, self.id, "store")
        if isinstance(data, list):
            data = data[0] if data else None
        if data is not None and not isinstance(data, dict):
            raise SourceProtocolError(self.id, "store: unexpected answer shape")
        stored, failed = dj.stow_outcome(data)
        return stored, failed, response.status_code == 200 and data is None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()


_Outcome = tuple[set[str], set[str], bool]


class _Batch:
    """What one STOW request sent: SOP Instance UIDs in order, and bytes."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.uids: list[str] = []
        self.bytes = 0

    def see(self, payload: bytes) -> None:
        uid = part10.sop_instance_uid(payload)
        self.uids.append(uid or f"#{self.start + len(self.uids)}")
        self.bytes += len(payload)


def _result(done: Iterable[tuple[_Batch, _Outcome]]) -> StoreResult:
    stored: list[str] = []
    failed: list[str] = []
    total = 0
    for batch, (ok, refused, all_ok) in done:
        total += batch.bytes
        for uid in batch.uids:
            accepted = all_ok or (uid in ok and uid not in refused)
            (stored if accepted else failed).append(uid)
    return StoreResult(stored=tuple(stored), failed=tuple(failed), bytes=total)


async def _take(head: bytes, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield head
    for _ in range(STOW_BATCH - 1):
        item = await anext(source, None)
        if item is None:
            return
        yield item


def _patients_of(studies: Iterable[StudyRecord]) -> list[PatientRecord]:
    """Patients derived from study results (archives without patient-level QIDO)."""
    groups: dict[tuple[str, str | None], list[StudyRecord]] = {}
    for study in studies:
        if study.patient_id is not None:
            groups.setdefault((study.patient_id, study.issuer), []).append(study)
    patients = []
    for (patient_id, issuer), group in groups.items():
        first = min(group, key=lambda s: s.study_uid)
        patients.append(
            PatientRecord(
                patient_id=patient_id,
                issuer=issuer,
                name=first.patient_name,
                birth_date=first.birth_date,
                sex=first.sex,
                studies=len({s.study_uid for s in group}),
            )
        )
    return patients


def _unique(records: list[StudyRecord], key: str) -> list[StudyRecord]:
    seen: dict[Any, StudyRecord] = {}
    for record in records:
        seen.setdefault(getattr(record, key), record)
    return list(seen.values())
