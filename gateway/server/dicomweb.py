"""`/dicomweb`: one DICOMweb (PS3.18) archive over every archive the caller may read.

QIDO-RS searches ask each archive concurrently and merge the answers by UID (one study
once, whoever holds it); an archive that failed or timed out leaves the others' answer
intact and is named in a `Warning: 299` header. WADO-RS retrievals go to an archive that
holds the object, the fastest first, the next holder when one fails before sending, and
stream instance by instance. Same bearer authentication as `/graphql`; researchers reach
research archives only; each answer carrying identity is audited like a GraphQL read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, Router

from gateway.auth import policy
from gateway.auth.audit import Entry
from gateway.auth.principal import Principal
from gateway.core.enums import JobKind, SourceRole
from gateway.core.errors import (
    AuditUnavailable,
    Forbidden,
    GatewayError,
    InvalidInput,
    SourceError,
    TooLarge,
    Unauthenticated,
)
from gateway.core.uids import is_uid
from gateway.federation import dicomweb as qido
from gateway.federation.fanout import Outcome, fan_out
from gateway.federation.merge import merge_instances, merge_series, merge_studies
from gateway.runtime import Runtime
from gateway.server.callers import caller_of, coded_error
from gateway.sources.base import (
    InstanceQuery,
    MultipartRelay,
    PacsSource,
    SeriesQuery,
    StudyQuery,
    StudyRecord,
)
from gateway.sources.http import multipart as mp
from resolvers import indexed
from resolvers.privacy import opaque
from workers.dicom import intake
from workers.dicom.intake import Instance
from workers.dicom.web import (
    ANY,
    EXPLICIT_LE,
    NotAcceptable,
    NotAnImage,
    bulkdata,
    frames,
    metadata,
    rendered,
)

log = logging.getLogger(__name__)
DICOM_JSON = "application/dicom+json"


class UnsupportedMedia(InvalidInput):
    """A STOW-RS body that is not multipart/related of application/dicom parts."""

    code = "UNSUPPORTED_MEDIA_TYPE"


class Unacceptable(GatewayError):
    """The Accept header asks for a representation this endpoint does not produce."""

    code = "NOT_ACCEPTABLE"


class NotHeld(GatewayError):
    """No archive the caller may read holds the object."""

    code = "NOT_FOUND"


STATUS: dict[type[GatewayError], int] = {
    TooLarge: 413,
    UnsupportedMedia: 415,
    InvalidInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotHeld: 404,
    Unacceptable: 406,
    AuditUnavailable: 503,
}


class _Call:
    """One request: the runtime, the caller and the archives they may search."""

    def __init__(
        self, request: Request, runtime: Runtime, caller: Principal, holders: Holders
    ) -> None:
        self.request, self.runtime, self.caller = request, runtime, caller
        self.holders = holders
        settings = runtime.settings
        wanted = (
            settings.ids_with_role(SourceRole.QUERY)
            if policy.sees_identity(caller)
            else settings.ids_with_role(SourceRole.RESEARCH)
        )
        self.sources = [s for s in policy.readable_sources(caller, wanted) if s in runtime.sources]
        self.root = str(request.base_url).rstrip("/") + "/dicomweb"

    @property
    def params(self) -> dict[str, list[str]]:
        """The query parameters, each with every value given."""
        query = self.request.query_params
        return {k: query.getlist(k) for k in query}

    async def ask(self, call: Callable[[PacsSource], Awaitable[Any]]) -> list[Outcome[Any]]:
        """Every readable archive, concurrently."""
        return await fan_out(self.runtime.sources, call, only=self.sources)

    def audit(self, what: str, refs: Sequence[str]) -> None:
        """Record an answer that names patients (opaque references only)."""
        if not refs or not policy.sees_identity(self.caller):
            return
        if self.runtime.audit.saturated:
            raise AuditUnavailable("the audit trail is not keeping up; identity is not served")
        client = self.request.client
        self.runtime.audit.submit(
            Entry(
                actor=self.caller.actor,
                action="phi-read",
                object_type="dicomweb",
                object_ref=what,
                address=client.host if client else None,
                details={"count": len(refs), "refs": sorted({opaque(r) for r in refs})},
            )
        )


def _answered(outcomes: Sequence[Outcome[Any]]) -> dict[str, Any]:
    return {o.source: o.value for o in outcomes if o.ok and o.value is not None}


def _json(items: list[dict[str, Any]], outcomes: Sequence[Outcome[Any]]) -> Response:
    headers = {}
    if (warn := qido.warning(outcomes)) is not None:
        headers["Warning"] = warn
    return Response(json.dumps(items), media_type=DICOM_JSON, headers=headers)


def _uid(value: str, what: str) -> str:
    if not is_uid(value):
        raise InvalidInput(f"{what}: not a DICOM UID")
    return value


async def search_studies(call: _Call) -> Response:
    """QIDO-RS /studies: without a filter, a page from the key index (newest first,
    verified live) when it covers every archive asked; otherwise every archive listed."""
    params = call.params
    query, window = qido.study_query(params), qido.window(params)
    paged = None
    if query == StudyQuery():  # a page of everything: from the key index when it covers all
        paged = await indexed.study_window(call.runtime, call.sources, window.offset, window.limit)
    if paged is not None:  # newest first, verified live
        merged, outcomes = paged
    else:
        outcomes = await call.ask(lambda s: s.find_studies(query))
        merged = window.cut(merge_studies(_answered(outcomes)))
    refs = [f"{r.patient_id}" for m in merged for r in list(m.records.values())[:1] if r.patient_id]
    call.audit("studies", refs)
    return _json([qido.study_json(m, call.root) for m in merged], outcomes)


async def search_series(call: _Call) -> Response:
    """QIDO-RS /studies/{study}/series."""
    study = _uid(call.request.path_params["study"], "study")
    params = call.params
    window = qido.window(params)
    outcomes = await call.ask(lambda s: s.find_series(SeriesQuery((study,))))
    merged = window.cut(merge_series(_answered(outcomes)))
    return _json([qido.series_json(m, call.root) for m in merged], outcomes)


def _required_studies(call: _Call) -> tuple[str, ...]:
    values = call.request.query_params.getlist("StudyInstanceUID")
    uids = tuple(u.strip() for v in values for u in v.split(",") if u.strip())
    if not uids:
        raise InvalidInput("StudyInstanceUID: required here (one or more, comma-separated)")
    return tuple(_uid(u, "StudyInstanceUID") for u in uids[: qido.MAX_LIMIT])


async def search_all_series(call: _Call) -> Response:
    """QIDO-RS /series: the series of the studies named by StudyInstanceUID (required:
    the archives are asked study by study), optionally of one Modality."""
    studies = _required_studies(call)
    modality = call.request.query_params.get("Modality") or None
    params = call.params
    query = SeriesQuery(studies, modality=modality)
    outcomes = await call.ask(lambda s: s.find_series(query))
    merged = qido.window(params).cut(merge_series(_answered(outcomes)))
    return _json([qido.series_json(m, call.root) for m in merged], outcomes)


async def search_all_instances(call: _Call) -> Response:
    """QIDO-RS /instances: the instances of the one study named by StudyInstanceUID
    (required), optionally of one SeriesInstanceUID."""
    studies = _required_studies(call)
    if len(studies) != 1:
        raise InvalidInput("StudyInstanceUID: one study here")
    series = call.request.query_params.get("SeriesInstanceUID")
    only = (_uid(series, "SeriesInstanceUID"),) if series else ()
    params = call.params
    outcomes = await call.ask(lambda s: s.find_instances(InstanceQuery(studies[0], only)))
    merged = qido.window(params).cut(merge_instances(_answered(outcomes)))
    return _json([qido.instance_json(m, call.root) for m in merged], outcomes)


async def search_instances(call: _Call) -> Response:
    """QIDO-RS /studies/{study}[/series/{series}]/instances."""
    study = _uid(call.request.path_params["study"], "study")
    series = call.request.path_params.get("series")
    only = (_uid(series, "series"),) if series else ()
    params = call.params
    window = qido.window(params)
    outcomes = await call.ask(lambda s: s.find_instances(InstanceQuery(study, only)))
    merged = window.cut(merge_instances(_answered(outcomes)))
    return _json([qido.instance_json(m, call.root) for m in merged], outcomes)


HOLDERS_TTL_S = 30.0  # how long who-holds-a-series is remembered (a viewer's frames)
HOLDERS_KEPT = 512


class Holders:
    """Which archives hold which instances of a series, remembered briefly: a viewer asks
    for each frame of a series in turn, and the archives need not be asked each time."""

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple[Any, ...], tuple[float, list[tuple[str, set[str]]]]] = (
            OrderedDict()
        )

    async def of_series(
        self, call: _Call, study: str, series: str, fresh: bool = False
    ) -> list[tuple[str, set[str]]]:
        """(archive, its SOP Instance UIDs of the series), most complete then fastest."""
        key = (tuple(call.sources), study, series)
        now = time.monotonic()
        if not fresh and (hit := self._kept.get(key)) is not None and hit[0] > now:
            return hit[1]
        query = InstanceQuery(study, (series,))
        outcomes = await call.ask(lambda s: s.find_instances(query))
        held = [o for o in outcomes if o.ok and o.value]
        held.sort(key=lambda o: (-len(o.value or []), o.latency_ms or 0.0))
        found = [(o.source, {i.sop_instance_uid for i in o.value or []}) for o in held]
        self._kept[key] = (now + HOLDERS_TTL_S, found)
        self._kept.move_to_end(key)
        while len(self._kept) > HOLDERS_KEPT:
            self._kept.popitem(last=False)
        return found


def _instances_of(records: Sequence[StudyRecord]) -> int:
    """The instances an archive says it holds of a study (0 when it does not say)."""
    return max((r.instance_count or 0 for r in records), default=0)


async def _holders(call: _Call, study: str, series: str | None, sop: str | None) -> list[str]:
    """The readable archives holding the object, most complete then fastest first."""
    if series is not None:
        ranked = await call.holders.of_series(call, study, series)
        held = [source for source, sops in ranked if sop is None or sop in sops]
        if not held:  # stored since it was remembered? ask again
            ranked = await call.holders.of_series(call, study, series, fresh=True)
            held = [source for source, sops in ranked if sop is None or sop in sops]
    else:  # one study-level match per archive, with its count: not its instance list
        outcomes = await call.ask(lambda s: s.find_studies(StudyQuery(study_uids=(study,))))
        ok = sorted(
            (o for o in outcomes if o.ok and o.value),
            key=lambda o: (-_instances_of(o.value or []), o.latency_ms or 0.0),
        )
        held = [o.source for o in ok]
    if not held:
        raise NotHeld("no archive you may read holds this object")
    return held


async def _first_that_answers(
    holders: Sequence[str], runtime: Runtime, open_: Callable[[PacsSource], AsyncIterator[bytes]]
) -> tuple[bytes | None, AsyncIterator[bytes]]:
    """The first item of the first holder that sends one (the next holder when one fails
    before its first byte), and the rest of its stream."""
    last: SourceError | None = None
    for source_id in holders:
        stream = open_(runtime.sources[source_id])
        try:
            first = await anext(stream, None)
        except SourceError as exc:
            log.warning("%s failed before sending; next holder: %s", source_id, exc.code)
            last = exc
            continue
        return first, stream
    assert last is not None
    raise last


async def retrieve(call: _Call) -> Response:
    """WADO-RS of a study, a series or an instance: multipart/related application/dicom,
    streamed one instance at a time."""
    p = call.request.path_params
    study = _uid(p["study"], "study")
    series = _uid(p["series"], "series") if "series" in p else None
    sop = _uid(p["sop"], "instance") if "sop" in p else None
    parts: AsyncIterator[bytes] | list[bytes]
    call.audit("retrieve", [sop or series or study])  # whole files: they name the patient
    if sop is not None and series is not None:  # one instance, sent as one part
        parts = [await _instance_bytes(call, study, series, sop)]
    else:
        holders = await _holders(call, study, series, None)
        if (relayed := await _relayed(call, holders[0], study, series)) is not None:
            return relayed
        parts = await _study_stream(call, holders, study, series)
    boundary = mp.new_boundary()
    media = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return StreamingResponse(mp.compose(parts, boundary), media_type=media)


async def _relayed(call: _Call, holder: str, study: str, series: str | None) -> Response | None:
    """The best holder's own multipart answer passed on as it arrives, when its adapter
    can (MultipartRelay) and its first bytes come; None to compose the answer instead."""
    source = call.runtime.sources[holder]
    if not isinstance(source, MultipartRelay):
        return None
    try:
        media, body = await source.relay_study(study, series)
        first = await anext(body, b"")
    except SourceError as exc:
        log.warning("%s could not relay; composing instead: %s", holder, exc.code)
        return None

    async def stream() -> AsyncIterator[bytes]:
        # passed on as read (up to 1 MiB each: READ_NUM_BYTES): gathering them into larger
        # writes cost a copy of every byte, 12 % of the relay's CPU
        yield first
        async for chunk in body:
            yield chunk

    return StreamingResponse(stream(), media_type=media)


async def _study_stream(
    call: _Call, holders: Sequence[str], study: str, series: str | None
) -> AsyncIterator[bytes]:
    """The Part 10 files of a study (or one series) from its best holder. The holder is
    found and its first file fetched before this returns, so that a failure is still an
    error answer, not a cut stream."""
    first, rest = await _first_that_answers(
        holders, call.runtime, lambda s: s.retrieve_study(study, (series,) if series else ())
    )

    async def stream() -> AsyncIterator[bytes]:
        if first is not None:
            yield first
        async for item in rest:
            yield item

    return stream()


async def retrieve_metadata(call: _Call) -> Response:
    """WADO-RS metadata of a study or a series: every instance's attributes, bulk data by
    reference to this gateway."""
    p = call.request.path_params
    study = _uid(p["study"], "study")
    series = _uid(p["series"], "series") if "series" in p else None
    out: list[dict[str, Any]] = []
    study_url = f"{call.root}/studies/{study}"
    holders = await _holders(call, study, series, None)
    async for part10 in await _study_stream(call, holders, study, series):
        try:  # pydicom's JSON is CPU work: off the event loop, one parse per instance
            out.append(await asyncio.to_thread(metadata, part10, study_url))
        except ValueError:
            continue  # an archive's unreadable file: left out, not fatal
    names = [
        str(item.get("00100020", {}).get("Value", [""])[0]) for item in out if "00100020" in item
    ]
    call.audit("metadata", sorted(set(names)))
    return Response(json.dumps(out), media_type=DICOM_JSON)


async def _instance_bytes(call: _Call, study: str, series: str, sop: str) -> bytes:
    """One whole instance from the best holder (for frames and rendering)."""
    holders = await _holders(call, study, series, sop)
    first, rest = await _first_that_answers(
        holders, call.runtime, lambda s: s.retrieve_instance(study, series, sop)
    )
    data = bytearray(first or b"")
    async for chunk in rest:
        data += chunk
    return bytes(data)


def frame_syntax(accept: str) -> str:
    """The transfer syntax an Accept header asks frames in: "*" (as stored), a UID, or
    Explicit VR Little Endian when none is named (PS3.18's default); NotAcceptable when it
    accepts no application/octet-stream."""
    if not accept.strip() or accept.strip() == "*/*":
        return ANY
    for media_range in accept.split(","):
        media, params = mp.parse_content_type(media_range)
        kind = params.get("type", "application/octet-stream").strip('"')
        if media in ("multipart/related", "application/octet-stream", "*/*") and kind in (
            "application/octet-stream",
            "*/*",
        ):
            return params.get("transfer-syntax", EXPLICIT_LE).strip('"')
    raise Unacceptable("frames are sent as application/octet-stream")


async def retrieve_frames(call: _Call) -> Response:
    """WADO-RS frames of one instance (multipart/related octet-stream): as stored, or
    decoded to Explicit VR Little Endian when the Accept header asks for it."""
    p = call.request.path_params
    study, series, sop = (_uid(p[k], k) for k in ("study", "series", "sop"))
    try:
        numbers = [int(n) for n in str(p["frames"]).split(",")]
    except ValueError:
        raise InvalidInput("frames: a comma-separated list of frame numbers") from None
    wanted = frame_syntax(call.request.headers.get("accept", ""))
    data = await _instance_bytes(call, study, series, sop)
    try:
        found, syntax = await asyncio.to_thread(frames, data, numbers, wanted)
    except NotAnImage as exc:
        raise NotHeld(str(exc)) from None
    except NotAcceptable as exc:
        raise Unacceptable(str(exc)) from None
    boundary = mp.new_boundary()
    kind = f"application/octet-stream; transfer-syntax={syntax}"
    body = b"".join([chunk async for chunk in mp.compose(found, boundary, kind)])
    media = f'multipart/related; type="application/octet-stream"; boundary={boundary}'
    return Response(body, media_type=media)


async def retrieve_bulkdata(call: _Call) -> Response:
    """WADO-RS bulk data of one top-level binary attribute (multipart/related
    octet-stream), as the BulkDataURIs of `metadata` name them."""
    p = call.request.path_params
    study, series, sop = (_uid(p[k], k) for k in ("study", "series", "sop"))
    try:
        tag = int(str(p["tag"]), 16)
    except ValueError:
        raise InvalidInput("tag: eight hexadecimal digits") from None
    data = await _instance_bytes(call, study, series, sop)
    try:
        value = await asyncio.to_thread(bulkdata, data, tag)
    except NotAnImage as exc:
        raise NotHeld(str(exc)) from None
    boundary = mp.new_boundary()
    body = b"".join([c async for c in mp.compose([value], boundary, "application/octet-stream")])
    media = f'multipart/related; type="application/octet-stream"; boundary={boundary}'
    return Response(body, media_type=media)


THUMBNAIL_SIZE = 128


async def retrieve_rendered(call: _Call) -> Response:
    """WADO-RS rendered and thumbnail resources: an instance or one of its frames as JPEG
    (PNG when the Accept header prefers it), rendered here from the pixel data; a series
    or study thumbnail shows its middle instance. `viewport=w,h` bounds the size."""
    p = call.request.path_params
    study = _uid(p["study"], "study")
    series = _uid(p["series"], "series") if "series" in p else None
    sop = _uid(p["sop"], "instance") if "sop" in p else None
    thumbnail = call.request.url.path.endswith("/thumbnail")
    if sop is None or series is None:  # a series or study thumbnail: its middle instance
        query = InstanceQuery(study, (series,) if series else ())
        found = merge_instances(_answered(await call.ask(lambda s: s.find_instances(query))))
        if not found:
            raise NotHeld("no archive you may read holds this object")
        middle = next(iter(found[len(found) // 2].records.values()))
        series, sop = middle.series_uid, middle.sop_instance_uid
    frame = int(p.get("frame", 1))
    size = THUMBNAIL_SIZE if thumbnail else None
    if (viewport := call.request.query_params.get("viewport")) is not None:
        try:
            size = max(int(v) for v in viewport.split(",")[:2])
        except ValueError:
            raise InvalidInput("viewport: width,height in pixels") from None
        if not 1 <= size <= 4096:
            raise InvalidInput("viewport: from 1 to 4096 pixels")
    png = "image/png" in call.request.headers.get("accept", "") and (
        "image/jpeg" not in call.request.headers.get("accept", "")
    )
    data = await _instance_bytes(call, study, series, sop)
    try:
        image = await asyncio.to_thread(rendered, data, frame, size, png)
    except NotAnImage as exc:
        raise NotHeld(str(exc)) from None
    return Response(image, media_type="image/png" if png else "image/jpeg")


# PS3.18 STOW-RS failure reasons (FailureReason, 0008,1197)
PROCESSING_FAILURE = 0x0110
STUDY_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
STORE_BATCH = 16


def _destination(call: _Call) -> str:
    """The archive a STOW-RS request stores into: `?archive=`, else `[dicomweb]
    default_store`, else the first archive with role `store` (`research` for a caller who
    does not see identity)."""
    settings = call.runtime.settings
    asked = call.request.query_params.get("archive") or settings.dicomweb.default_store
    if asked is not None:
        if asked not in call.runtime.sources:
            raise InvalidInput("archive: no such archive")
        return asked
    role = SourceRole.STORE if policy.sees_identity(call.caller) else SourceRole.RESEARCH
    mine = policy.readable_sources(call.caller, settings.ids_with_role(role))
    if not mine:
        raise Forbidden("no archive you may store into")
    return mine[0]


async def _bounded(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"a STOW-RS request holds at most {limit} bytes")
        yield chunk


def _sop_item(call: _Call, sop_class: str | None, sop: str | None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if sop_class:
        item["00081150"] = {"vr": "UI", "Value": [sop_class]}
    if sop:
        item["00081155"] = {"vr": "UI", "Value": [sop]}
    for tag, element in extra.items():
        item[tag.removeprefix("t")] = element
    return item


async def store(call: _Call) -> Response:
    """STOW-RS: the instances of a multipart/related body into one archive; the PS3.18
    response lists what was stored (ReferencedSOPSequence) and what was not, and why
    (FailedSOPSequence). 200 all stored, 202 some, 409 none."""
    media, params = mp.parse_content_type(call.request.headers.get("content-type", ""))
    if media != "multipart/related" or params.get("type", "application/dicom") not in (
        "application/dicom",
        '"application/dicom"',
    ):
        raise UnsupportedMedia('multipart/related; type="application/dicom" is required')
    study = call.request.path_params.get("study")
    if study is not None:
        _uid(study, "study")
    dest = _destination(call)
    settings = call.runtime.settings
    policy.check_submit(call.caller, JobKind.IMPORT, [dest], settings)
    archive = call.runtime.sources[dest]
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    batch: list[tuple[Instance, bytes]] = []
    studies: set[str] = set()

    def fail(sop_class: str | None, sop: str | None, reason: int) -> None:
        failed.append(_sop_item(call, sop_class, sop, t00081197={"vr": "US", "Value": [reason]}))

    async def flush() -> None:
        if not batch:
            return
        try:
            result = await archive.store([data for _, data in batch])
            done = set(result.stored)
        except SourceError as exc:
            log.warning("STOW-RS into %s failed: %s", dest, exc.code)
            done = set()
        for inst, _ in batch:
            if inst.sop_instance_uid in done:
                where = f"{call.root}/studies/{inst.study_uid}/series/{inst.series_uid}"
                url = {"vr": "UR", "Value": [f"{where}/instances/{inst.sop_instance_uid}"]}
                stored.append(
                    _sop_item(call, inst.sop_class_uid, inst.sop_instance_uid, t00081190=url)
                )
                studies.add(inst.study_uid)
            else:
                fail(inst.sop_class_uid, inst.sop_instance_uid, PROCESSING_FAILURE)
        batch.clear()

    boundary = mp.boundary_of(call.request.headers.get("content-type", ""))
    try:
        async for _, body in mp.iter_parts(
            _bounded(call.request.stream(), settings.imports.max_bytes), boundary
        ):
            try:
                inst = await asyncio.to_thread(intake.check, body)
            except intake.NotAnInstance:
                fail(None, None, CANNOT_UNDERSTAND)
                continue
            if study is not None and inst.study_uid != study:
                fail(inst.sop_class_uid, inst.sop_instance_uid, STUDY_MISMATCH)
                continue
            batch.append((inst, await asyncio.to_thread(intake.as_part10, body)))
            if len(batch) >= STORE_BATCH:
                await flush()
        await flush()
    except mp.MultipartError as exc:
        raise InvalidInput(f"not a multipart/related body: {exc}") from None
    answer: dict[str, Any] = {}
    if len(studies) == 1:
        answer["00081190"] = {"vr": "UR", "Value": [f"{call.root}/studies/{studies.pop()}"]}
    if stored:
        answer["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        answer["00081198"] = {"vr": "SQ", "Value": failed}
    client = call.request.client
    call.runtime.audit.submit(
        Entry(
            actor=call.caller.actor,
            action="dicomweb-store",
            outcome="ok" if stored else "error",
            object_type="archive",
            object_ref=dest,
            address=client.host if client else None,
            details={"stored": len(stored), "failed": len(failed)},
        )
    )
    status = 200 if not failed else 202 if stored else 409
    return Response(json.dumps(answer), status_code=status, media_type=DICOM_JSON)


def _endpoint(
    handler: Callable[[_Call], Awaitable[Response]], runtime_of: Any, holders: Holders
) -> Any:
    async def serve(request: Request) -> Response:
        runtime: Runtime = runtime_of(request)
        try:
            caller = await caller_of(runtime, request)
            if caller is None:
                raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
            return await handler(_Call(request, runtime, caller, holders))
        except GatewayError as exc:
            return coded_error(exc, STATUS, default=502)

    return serve


def router(runtime_of: Any) -> Router:
    """The `/dicomweb` routes."""
    s, se, i = "/studies/{study}", "/studies/{study}/series/{series}", "/instances/{sop}"
    holders = Holders()  # this process's memory of who holds which series
    table: list[tuple[str, Callable[[_Call], Awaitable[Response]]]] = [
        ("/studies", search_studies),
        ("/series", search_all_series),
        ("/instances", search_all_instances),
        (f"{s}/series", search_series),
        (f"{s}/instances", search_instances),
        (f"{se}/instances", search_instances),
        (s, retrieve),
        (se, retrieve),
        (f"{se}{i}", retrieve),
        (f"{s}/metadata", retrieve_metadata),
        (f"{se}/metadata", retrieve_metadata),
        (f"{se}{i}/frames/{{frames}}", retrieve_frames),
        (f"{se}{i}/bulkdata/{{tag}}", retrieve_bulkdata),
        (f"{se}{i}/rendered", retrieve_rendered),
        (f"{se}{i}/frames/{{frame:int}}/rendered", retrieve_rendered),
        (f"{se}{i}/thumbnail", retrieve_rendered),
        (f"{se}/thumbnail", retrieve_rendered),
        (f"{s}/thumbnail", retrieve_rendered),
    ]
    routes = [Route(path, _endpoint(h, runtime_of, holders), methods=["GET"]) for path, h in table]
    routes += [
        Route(path, _endpoint(store, runtime_of, holders), methods=["POST"])
        for path in ("/studies", s)
    ]
    return Router(routes)
