"""Orthanc over its native REST API, the fast path (not its DICOMweb plugin).

Requests per call (Orthanc 1.10, measured against its QIDO which reads files):

- patients: `GET /patients?expand` when unconstrained, else one `POST /tools/find`;
- studies: one find, then one `POST /tools/bulk-content` of the page's series
  (modalities and counts); for pages of `SERIES_PREFETCH` or more, the series
  of the same query are found concurrently instead (one round trip);
- series: one find, plus the study id → UID map when several studies are asked;
- instances: one series find, then one bulk-content at instance level with
  metadata (the SOP Class UID is not a main DICOM tag in 1.10);
- retrieve: one find for the ids, then `GET /instances/{id}/file`, a few in flight;
- store: files sent as ZIP archives to `POST /instances` (up to 32 files or 2 MB
  each), a few uploads in flight (see `orthanc_transfer`);
- changes: `GET /changes` (the optional `ChangeFeed` capability, for periodic sync);
- deletions, which /changes never names (the optional `StudyCensus` capability, for the
  key index): `GET /statistics` for the count; when it differs from the index's,
  `GET /studies` (ids only) and one find by UID of the held studies missing from it.

UID lists go to `/tools/find` as one backslash-separated list (list matching
works for any tag in 1.10), so a list never costs more than one request.
Orthanc 1.10 cannot order results, so every match is fetched, matched locally
(the archive's own matching is made a superset: PN wildcards, CaseSensitive
false), sorted and then paged; `Limit`/`Since` would page in Orthanc's
internal order, which is not the protocol's. Records are built in
`orthanc_records` (fast paths for Orthanc's clean values, a per-source memo).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any, TypeVar

import httpx

from gateway.core.errors import NotFound, NotSupported, SourceProtocolError
from gateway.core.settings import SourceConfig
from gateway.core.uids import is_uid
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
from gateway.sources.http.client import HttpClient, gather, parse_json
from gateway.sources.orthanc import records as rec
from gateway.sources.orthanc import transfer as xfer
from gateway.sources.orthanc.records import Item, Records
from gateway.sources.resilience import CallStats, Guard

_ORTHANC_ID = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}\Z")
_STORED = ("Success", "AlreadyStored")
FETCH_WINDOW = 3  # archive downloads in flight per retrieve
KNOWN_INSTANCES = 50_000  # instance ids remembered per source (about 15 MB)
KNOWN_SERIES = 20_000  # series ids remembered per source
STORE_LANES = 4  # ZIP uploads in flight per store
SERIES_PREFETCH = 500  # pages this big fetch all matching series alongside the studies
K = TypeVar("K", tuple[str, str], tuple[str, str, str])
_PATHS = {"Patient": "patients", "Study": "studies", "Series": "series", "Instance": "instances"}


def _put(query: dict[str, str], key: str, value: str | None) -> None:
    if value and value != "*":
        query[key] = value


def _learn(memo: OrderedDict[K, str], key: K, orthanc_id: object, bound: int) -> None:
    """Remember an Orthanc id learnt from a listing (when it is one), the oldest forgotten
    beyond `bound`."""
    if not isinstance(orthanc_id, str) or not _ORTHANC_ID.match(orthanc_id):
        return
    memo[key] = orthanc_id
    memo.move_to_end(key)
    while len(memo) > bound:
        memo.popitem(last=False)


def _uids(values: Sequence[str]) -> str:
    return "\\".join(values)


def orthanc_id(*identifiers: str) -> str:
    """The id Orthanc gives a resource: the SHA-1 of its DICOM identifiers joined by "|"
    (patient ID; then study, series, SOP instance UIDs), in five groups of eight."""
    digest = hashlib.sha1("|".join(identifiers).encode(), usedforsecurity=False).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def _keyed(q: StudyQuery) -> bool:
    """True when the query has a matching key besides study UIDs."""
    keys = (q.patient_id, q.patient_name, q.accession_number, q.study_date, q.description)
    return bool(q.modality or any(keys))


def _by_uid_only(q: StudyQuery) -> bool:
    """True when the query asks for studies by UID alone (no other key, no paging)."""
    return not _keyed(q) and q.limit is None and not q.offset


def _constrained(q: StudyQuery) -> bool:
    return bool(q.study_uids) or _keyed(q)


class OrthancSource:
    """A PACS reached through Orthanc's REST API."""

    def __init__(
        self, config: SourceConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.guard = Guard(config)
        self.http = HttpClient(config, self.guard, transport=transport)
        self.records = Records()
        # (study, series, SOP Instance UID) -> Orthanc's instance id, learnt from instance
        # listings: fetching a listed instance needs no lookup (a sync, a viewer's frames)
        self._known: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._series: OrderedDict[tuple[str, str], str] = OrderedDict()  # (study, series) -> id
        self._no_plugin = False  # its DICOMweb root answered 404 for a study it holds

    @property
    def id(self) -> str:
        """The configured id."""
        return self.config.id

    @property
    def stats(self) -> CallStats:
        """Timing of this source's calls (`self.guard` holds breaker state too)."""
        return self.guard.stats

    async def ping(self) -> float:
        """`GET /system`; the round trip in milliseconds."""
        start = time.perf_counter()
        await self.http.json("ping", "GET", "/system")
        return (time.perf_counter() - start) * 1000

    # -- queries ---------------------------------------------------------------

    async def _find(
        self,
        op: str,
        level: str,
        query: dict[str, str],
        *,
        expand: bool = True,
        case_sensitive: bool = True,
    ) -> list[Any]:
        if not query and expand:
            data = await self.http.json(op, "GET", f"/{_PATHS[level]}?expand")
        else:
            body = {"Level": level, "Query": query, "Expand": expand}
            body["CaseSensitive"] = case_sensitive
            data = await self.http.json(op, "POST", "/tools/find", json=body)
        return self._list(data, op, expand)

    async def _bulk(self, op: str, ids: list[str], level: str) -> list[Item]:
        if not ids:
            return []
        body = {"Resources": ids, "Level": level, "Metadata": level == "Instance"}
        data = await self.http.json(op, "POST", "/tools/bulk-content", json=body)
        return self._list(data, op, True)

    def _list(self, data: Any, op: str, expand: bool) -> list[Any]:
        kind = dict if expand else str
        if not isinstance(data, list) or not all(isinstance(x, kind) for x in data):
            raise SourceProtocolError(self.id, f"{op}: unexpected answer shape")
        return data

    async def find_patients(self, query: PatientQuery) -> list[PatientRecord]:
        """Patients matching `query`, ordered by patient id."""
        q: dict[str, str] = {}
        _put(q, "PatientID", m.widen(query.patient_id))
        _put(q, "PatientName", m.widen(query.name, open_ended=True))
        _put(q, "PatientBirthDate", query.birth_date)
        items = await self._find("find_patients", "Patient", q, case_sensitive=not query.name)
        records = [self.records.patient(x) for x in items]
        if query.patient_id or query.name or query.birth_date:
            records = [r for r in records if m.patient_matches(query, r)]
        return paging.page(paging.sort_patients(records), query.offset, query.limit)

    async def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        """Studies matching `query`, ordered by study UID."""
        if (uids := m.uid_list(query.study_uids)) is None:
            return []
        q: dict[str, str] = {}
        _put(q, "PatientID", m.widen(query.patient_id))
        _put(q, "PatientName", m.widen(query.patient_name, open_ended=True))
        _put(q, "StudyInstanceUID", _uids(uids))
        _put(q, "AccessionNumber", m.widen(query.accession_number))
        _put(q, "StudyDate", query.study_date)
        _put(q, "StudyDescription", m.widen(query.description))
        op, sensitive = "find_studies", not query.patient_name
        if uids and query.known_patients and _by_uid_only(query):
            return await self._studies_by_id(op, uids, query.known_patients)
        if query.modality:  # needs every candidate's series before paging
            _put(q, "ModalitiesInStudy", m.widen(query.modality))
            items = await self._find(op, "Study", q, case_sensitive=sensitive)
            series = await self._series_of(op, items, [])
        elif query.limit is None or query.offset + query.limit >= SERIES_PREFETCH:
            # A big page: the series of the same query, concurrently (Orthanc joins levels).
            items, children = await gather(
                self._find(op, "Study", q, case_sensitive=sensitive),
                self._find(op, "Series", q, case_sensitive=sensitive),
            )
            series = await self._series_of(op, items, children)
        else:  # a small page: match and page first, then fetch only the page's series
            items = await self._find(op, "Study", q, case_sensitive=sensitive)
            keyed = [
                (r, x) for x in items if m.study_matches(query, r := self.records.study(x, {}))
            ]
            keyed.sort(key=lambda pair: pair[0].study_uid)
            items = [x for _, x in paging.page(keyed, query.offset, query.limit)]
            series = await self._series_of(op, items, [])
            return [self.records.study(x, series) for x in items]
        records = [self.records.study(x, series) for x in items]
        if _constrained(query):
            records = [r for r in records if m.study_matches(query, r)]
        return paging.page(paging.sort_studies(records), query.offset, query.limit)

    async def _studies_by_id(
        self, op: str, uids: Sequence[str], known: tuple[tuple[str, str], ...]
    ) -> list[StudyRecord]:
        """Studies by UID, those whose patient ID the caller knows fetched by the id Orthanc
        derives from it (one bulk request, whatever the archive's size: a UID lookup in
        Orthanc 1.10 takes time in proportion to the archive); the rest, and any hint gone
        stale, looked up by UID."""
        wanted = set(uids)
        ids = {orthanc_id(pid, uid): uid for uid, pid in known if uid in wanted and pid}
        items = [
            x
            for x in await self._bulk(op, list(ids), "Study")
            if x.get("ID") in ids and ids[x["ID"]] == rec.text(rec.tags(x).get("StudyInstanceUID"))
        ]
        found = {ids[x["ID"]] for x in items}
        if rest := [u for u in uids if u not in found]:
            items += await self._find(op, "Study", {"StudyInstanceUID": _uids(rest)})
        series = await self._series_of(op, items, [])
        return paging.sort_studies(self.records.study(x, series) for x in items)

    async def _series_of(self, op: str, studies: list[Item], known: list[Item]) -> dict[str, Item]:
        """The series of `studies` by Orthanc id: `known` ones plus one bulk fetch of the rest."""
        series = {s["ID"]: s for s in known}
        missing = [s for x in studies for s in x.get("Series") or [] if s not in series]
        series.update((s["ID"], s) for s in await self._bulk(op, missing, "Series"))
        return series

    async def find_series(self, query: SeriesQuery) -> list[SeriesRecord]:
        """Series of the given studies, ordered by (study UID, series UID)."""
        studies, series = m.uid_list(query.study_uids), m.uid_list(query.series_uids)
        if studies is None or series is None:
            return []
        q: dict[str, str] = {}
        _put(q, "StudyInstanceUID", _uids(studies))
        _put(q, "SeriesInstanceUID", _uids(series))
        _put(q, "Modality", m.widen(query.modality))
        single = studies[0] if len(studies) == 1 else None
        if single:
            items = await self._find("find_series", "Series", q)
            uid_of: dict[str, str] = {}
        else:
            sq: dict[str, str] = {}
            _put(sq, "StudyInstanceUID", _uids(studies))
            items, parents = await gather(
                self._find("find_series", "Series", q), self._find("find_series", "Study", sq)
            )
            uid_of = {s["ID"]: rec.text(rec.tags(s).get("StudyInstanceUID")) or "" for s in parents}
        found = []
        for item in items:
            record = rec.series_record(item, single or uid_of.get(item.get("ParentStudy"), ""))
            if not m.series_matches(query, record):
                continue
            found.append(record)
            key = (record.study_uid, record.series_uid)
            _learn(self._series, key, item.get("ID"), KNOWN_SERIES)
        return paging.sort_series(found)

    async def find_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        """Instances of one study, ordered by (series, instance number, SOP UID)."""
        op = "find_instances"
        series_uids = m.uid_list(query.series_uids)
        if series_uids is None or m.uid_list(query.sop_instance_uids) is None:
            return []
        if not is_uid(query.study_uid):
            return []
        # series named and all listed before: their ids are known, no lookup
        keys = [(query.study_uid, u) for u in series_uids]
        uid_of = {self._series[k]: k[1] for k in keys if k in self._series}
        items: list[Item] = []
        if series_uids and len(uid_of) == len(series_uids):
            items = await self._bulk(op, list(uid_of), "Instance")
            if {x.get("ParentSeries") for x in items} != set(uid_of):  # a stale id: look up
                items = []
        if not items:
            q = {"StudyInstanceUID": query.study_uid}
            _put(q, "SeriesInstanceUID", _uids(series_uids))
            series = await self._find(op, "Series", q)
            uid_of = {s["ID"]: rec.text(rec.tags(s).get("SeriesInstanceUID")) or "" for s in series}
            for series_id, series_uid in uid_of.items():
                _learn(self._series, (query.study_uid, series_uid), series_id, KNOWN_SERIES)
            items = await self._bulk(op, list(uid_of), "Instance")
        found = []
        for item in items:
            record = rec.instance_record(item, query.study_uid, uid_of)
            if not m.instance_matches(query, record):
                continue
            found.append(record)
            key = (record.study_uid, record.series_uid, record.sop_instance_uid)
            _learn(self._known, key, item.get("ID"), KNOWN_INSTANCES)
        return paging.sort_instances(found)

    # -- retrieve --------------------------------------------------------------

    async def _instance_ids(self, op: str, query: dict[str, str]) -> list[str]:
        if not all(is_uid(uid) for value in query.values() for uid in value.split("\\")):
            raise NotFound(self.id, f"{op}: not a valid UID")
        ids = await self._find(op, "Instance", query, expand=False)
        if not ids:
            raise NotFound(self.id, f"{op}: no such instances")
        if not all(_ORTHANC_ID.match(i) for i in ids):
            raise SourceProtocolError(self.id, f"{op}: unexpected resource id")
        return ids

    async def retrieve_instance(
        self, study_uid: str, series_uid: str, sop_uid: str
    ) -> AsyncIterator[bytes]:
        """Stream one instance's Part 10 file from `/instances/{id}/file` (its id learnt from
        a listing, else looked up by its UIDs)."""
        op, key = "retrieve_instance", (study_uid, series_uid, sop_uid)
        known = self._known.get(key)
        response = None
        if known is not None:
            try:
                response = await self.http.open(op, "GET", f"/instances/{known}/file")
            except NotFound:  # deleted or stored anew since it was listed
                self._known.pop(key, None)
        if response is None:
            q = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
            q["SOPInstanceUID"] = sop_uid
            ids = await self._instance_ids(op, q)
            response = await self.http.open(op, "GET", f"/instances/{ids[0]}/file")
        async for chunk in self.http.iter_body(response, "retrieve_instance"):
            yield chunk

    async def retrieve_study(
        self, study_uid: str, series_uids: Sequence[str] = ()
    ) -> AsyncIterator[bytes]:
        """Yield each instance of a study (or some series), one Part 10 file at a time: from
        the DICOMweb plugin's answer (one request per series), else the REST API's files."""
        series: list[str | None] = [*series_uids] or [None]
        paths = [self._plugin_path(study_uid, s) for s in series]
        if all(p is not None for p in paths):
            files = self.http.iter_files("retrieve_study", [p for p in paths if p])
            try:
                first = await anext(files, None)
            except NotFound:
                await self._plugin_missing("retrieve_study", study_uid, series[0])
                first = None
            if first is not None:
                yield first
                async for data in files:
                    yield data
                return
        async for data in self._files_of_study(study_uid, series_uids):
            yield data

    def _plugin_path(self, study_uid: str, series_uid: str | None) -> str | None:
        """The DICOMweb plugin's WADO-RS path of a study or one series (None: no plugin
        configured or found, or a value that is not a UID)."""
        root = self.config.dicomweb_root.rstrip("/")
        uids = [study_uid] if series_uid is None else [study_uid, series_uid]
        if not root or self._no_plugin or not all(is_uid(u) for u in uids):
            return None
        return f"{root}/studies/" + "/series/".join(uids)

    async def _plugin_missing(self, op: str, study_uid: str, series_uid: str | None) -> None:
        """After the plugin's 404 for a study (or one of its series): NotFound when the REST
        API lacks it too; else the plugin is not at the configured root (remembered)."""
        q = {"StudyInstanceUID": study_uid}
        _put(q, "SeriesInstanceUID", series_uid)
        await self._instance_ids(op, q)
        self._no_plugin = True

    async def _files_of_study(
        self, study_uid: str, series_uids: Sequence[str]
    ) -> AsyncIterator[bytes]:
        """The REST API's files of a study (or some series), several requests in flight."""
        q = {"StudyInstanceUID": study_uid}
        _put(q, "SeriesInstanceUID", _uids(series_uids))
        ids = await self._instance_ids("retrieve_study", q)
        window = max(1, min(FETCH_WINDOW, self.config.max_concurrency))
        async for data in xfer.fetch_files(self.http, "retrieve_study", ids, window):
            yield data

    async def relay_study(
        self, study_uid: str, series_uid: str | None
    ) -> tuple[str, AsyncIterator[bytes]]:
        """The DICOMweb plugin's WADO-RS multipart answer for a study or one series, as it
        comes (NotSupported without the plugin: the caller composes the answer instead)."""
        op = "retrieve_study"
        if not self.config.dicomweb_root.rstrip("/") or self._no_plugin:
            raise NotSupported(self.id, f"{op}: no DICOMweb plugin")
        path = self._plugin_path(study_uid, series_uid)
        if path is None:
            raise NotFound(self.id, f"{op}: not a valid UID")
        try:
            return await self.http.open_multipart(op, path)
        except NotFound:
            await self._plugin_missing(op, study_uid, series_uid)
            raise NotSupported(self.id, f"{op}: no DICOMweb plugin found") from None

    # -- store -----------------------------------------------------------------

    async def store(self, files: Sequence[bytes]) -> StoreResult:
        """Store Part 10 files (`files[i]` is read only when it is sent)."""

        async def each() -> AsyncIterator[bytes]:
            for i in range(len(files)):
                yield files[i]

        return await self.store_stream(each())

    async def store_stream(self, files: AsyncIterable[bytes]) -> StoreResult:
        """Store Part 10 files from an async iterable, `max_concurrency` in flight."""
        source = aiter(enumerate_async(files))
        lock = asyncio.Lock()
        outcome: list[tuple[int, str, bool, int]] = []

        async def worker() -> None:
            while True:
                batch: list[tuple[int, bytes]] = []
                size = 0
                async with lock:  # one ZIP upload's worth of files
                    while len(batch) < xfer.ZIP_FILES and size < xfer.ZIP_BYTES:
                        nxt = await anext(source, None)
                        if nxt is None:
                            break
                        batch.append(nxt)
                        size += len(nxt[1])
                if not batch:
                    return
                stored = await xfer.store_zip(self.http, [d for _, d in batch], self._store_one)
                for (index, data), ok in zip(batch, stored, strict=True):
                    uid = part10.sop_instance_uid(data) or f"#{index}"
                    outcome.append((index, uid, ok, len(data)))

        await gather(
            *(worker() for _ in range(max(1, min(STORE_LANES, self.config.max_concurrency))))
        )
        outcome.sort()
        return StoreResult(
            stored=tuple(uid for _, uid, ok, _ in outcome if ok),
            failed=tuple(uid for _, uid, ok, _ in outcome if not ok),
            bytes=sum(size for *_, size in outcome),
        )

    async def _store_one(self, data: bytes) -> bool:
        try:
            response = await self.http.request(
                "store",
                "POST",
                "/instances",
                content=data,
                headers={"Content-Type": "application/dicom"},
                idempotent=True,  # stored again, an instance answers AlreadyStored
            )
        except SourceProtocolError:  # 400: Orthanc refused this file
            return False
        body = parse_json(response, self.id, "store")
        return isinstance(body, dict) and body.get("Status") in _STORED

    async def study_changes(self, cursor: str | None) -> tuple[list[str], str]:
        """Studies changed after `cursor` (an Orthanc change sequence number) and the next one."""
        since = int(cursor) if cursor and cursor.isdigit() else None
        ids, last = await xfer.changed_study_ids(self.http, since)
        return (await xfer.study_uids(self.http, ids) if ids else []), str(last)

    async def study_count(self) -> int:
        """How many studies Orthanc holds (`GET /statistics`)."""
        body = await self.http.json("study_count", "GET", "/statistics")
        count = body.get("CountStudies") if isinstance(body, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise SourceProtocolError(self.id, "study_count: unexpected answer")
        return count

    async def absent_studies(self, known: Sequence[tuple[str, str]]) -> list[str]:
        """Of `known` (study UID, patient ID) pairs, the UIDs of the studies Orthanc does not
        hold: each id derived (`orthanc_id`) and looked for in `GET /studies` (ids only); the
        UIDs missing from it asked for in one find before they count as gone (a patient ID
        held otherwise than Orthanc hashes it, a study stored again since the listing). A UID
        that cannot be asked for is never reported."""
        op = "absent_studies"
        if not known:
            return []
        listed = set(self._list(await self.http.json(op, "GET", "/studies"), op, False))
        missing = sorted(
            {uid for uid, pid in known if is_uid(uid) and orthanc_id(pid, uid) not in listed}
        )
        if not missing:
            return []
        found = await self._find(op, "Study", {"StudyInstanceUID": _uids(missing)})
        held = {rec.text(rec.tags(x).get("StudyInstanceUID")) for x in found}
        return [uid for uid in missing if uid not in held]

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()


async def enumerate_async(items: AsyncIterable[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """(index, item) for each item of an async iterable."""
    index = 0
    async for item in items:
        yield index, item
        index += 1
