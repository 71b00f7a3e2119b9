"""`/dicomweb`: one DICOMweb (PS3.18) archive over every archive the caller may read.

QIDO-RS searches ask each archive concurrently and merge the answers by UID (one study
once, whoever holds it); an archive that failed or timed out leaves the others' answer
intact and is named in a `Warning: 299` header. WADO-RS retrievals go to an archive that
holds the object, the fastest first, the next holder when one fails before sending, and
stream instance by instance. Same bearer authentication as `/graphql`; researchers reach
research archives only; each answer carrying identity is audited like a GraphQL read.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, Router

from gateway.auth import policy
from gateway.auth.audit import Entry
from gateway.auth.principal import Principal
from gateway.core.enums import SourceRole
from gateway.core.errors import (
    AuditUnavailable,
    Forbidden,
    GatewayError,
    InvalidInput,
    SourceError,
    Unauthenticated,
)
from gateway.core.uids import is_uid
from gateway.federation import dicomweb as qido
from gateway.federation.fanout import Outcome, fan_out
from gateway.federation.merge import merge_instances, merge_series, merge_studies
from gateway.runtime import Runtime
from gateway.server.callers import UNAUTHENTICATED_HEADERS, caller_of
from gateway.sources.base import InstanceQuery, PacsSource, SeriesQuery
from resolvers.privacy import opaque
from workers.dicom.web import NotAnImage, frames, metadata

log = logging.getLogger(__name__)
DICOM_JSON = "application/dicom+json"
STATUS = {
    InvalidInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    AuditUnavailable: 503,
}


class NotHeld(GatewayError):
    """No archive the caller may read holds the object."""

    code = "NOT_FOUND"


class _Call:
    """One request: the runtime, the caller and the archives they may search."""

    def __init__(self, request: Request, runtime: Runtime, caller: Principal) -> None:
        self.request, self.runtime, self.caller = request, runtime, caller
        settings = runtime.settings
        wanted = (
            settings.ids_with_role(SourceRole.QUERY)
            if policy.sees_identity(caller)
            else settings.ids_with_role(SourceRole.RESEARCH)
        )
        self.sources = [s for s in policy.readable_sources(caller, wanted) if s in runtime.sources]
        self.root = str(request.base_url).rstrip("/") + "/dicomweb"

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
    """QIDO-RS /studies."""
    params = {k: call.request.query_params.getlist(k) for k in call.request.query_params}
    query, window = qido.study_query(params), qido.window(params)
    outcomes = await call.ask(lambda s: s.find_studies(query))
    merged = window.cut(merge_studies(_answered(outcomes)))
    refs = [f"{r.patient_id}" for m in merged for r in list(m.records.values())[:1] if r.patient_id]
    call.audit("studies", refs)
    return _json([qido.study_json(m, call.root) for m in merged], outcomes)


async def search_series(call: _Call) -> Response:
    """QIDO-RS /studies/{study}/series."""
    study = _uid(call.request.path_params["study"], "study")
    params = {k: call.request.query_params.getlist(k) for k in call.request.query_params}
    window = qido.window(params)
    outcomes = await call.ask(lambda s: s.find_series(SeriesQuery((study,))))
    merged = window.cut(merge_series(_answered(outcomes)))
    return _json([qido.series_json(m, call.root) for m in merged], outcomes)


async def search_instances(call: _Call) -> Response:
    """QIDO-RS /studies/{study}[/series/{series}]/instances."""
    study = _uid(call.request.path_params["study"], "study")
    series = call.request.path_params.get("series")
    only = (_uid(series, "series"),) if series else ()
    params = {k: call.request.query_params.getlist(k) for k in call.request.query_params}
    window = qido.window(params)
    outcomes = await call.ask(lambda s: s.find_instances(InstanceQuery(study, only)))
    merged = window.cut(merge_instances(_answered(outcomes)))
    return _json([qido.instance_json(m, call.root) for m in merged], outcomes)


async def _holders(call: _Call, study: str, series: str | None, sop: str | None) -> list[str]:
    """The readable archives holding the object, most complete then fastest first."""
    query = InstanceQuery(study, (series,) if series else (), (sop,) if sop else ())
    outcomes = await call.ask(lambda s: s.find_instances(query))
    held = [o for o in outcomes if o.ok and o.value]
    held.sort(key=lambda o: (-len(o.value or []), o.latency_ms or 0.0))
    if not held:
        raise NotHeld("no archive you may read holds this object")
    return [o.source for o in held]


BOUNDARY_PREFIX = "pacs-gateway-"


def _part(boundary: str, content_type: str, body: bytes) -> bytes:
    head = f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
    return head + body + b"\r\n"


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
    """WADO-RS of a study, a series or an instance: multipart/related application/dicom."""
    p = call.request.path_params
    study = _uid(p["study"], "study")
    series = _uid(p["series"], "series") if "series" in p else None
    sop = _uid(p["sop"], "instance") if "sop" in p else None
    holders = await _holders(call, study, series, sop)
    boundary = BOUNDARY_PREFIX + uuid.uuid4().hex

    def open_(source: PacsSource) -> AsyncIterator[bytes]:
        if sop is not None and series is not None:
            return source.retrieve_instance(study, series, sop)
        return source.retrieve_study(study, (series,) if series else ())

    first, rest = await _first_that_answers(holders, call.runtime, open_)

    async def body() -> AsyncIterator[bytes]:
        if sop is not None:  # one instance, in chunks
            yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            if first is not None:
                yield first
            async for chunk in rest:
                yield chunk
            yield b"\r\n"
        else:  # one Part 10 file per item
            if first is not None:
                yield _part(boundary, "application/dicom", first)
            async for item in rest:
                yield _part(boundary, "application/dicom", item)
        yield f"--{boundary}--\r\n".encode()

    media = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return StreamingResponse(body(), media_type=media)


async def _instances(call: _Call, study: str, series: str | None) -> AsyncIterator[bytes]:
    holders = await _holders(call, study, series, None)
    first, rest = await _first_that_answers(
        holders, call.runtime, lambda s: s.retrieve_study(study, (series,) if series else ())
    )
    if first is not None:
        yield first
    async for item in rest:
        yield item


async def retrieve_metadata(call: _Call) -> Response:
    """WADO-RS metadata of a study or a series: every instance's attributes, bulk data by
    reference to this gateway."""
    p = call.request.path_params
    study = _uid(p["study"], "study")
    series = _uid(p["series"], "series") if "series" in p else None
    out: list[dict[str, Any]] = []
    async for part10 in _instances(call, study, series):
        try:
            probe = metadata(part10, "")
        except ValueError:
            continue  # an archive's unreadable file: left out, not fatal
        series_uid = probe.get("0020000E", {}).get("Value", [""])[0]
        sop_uid = probe.get("00080018", {}).get("Value", [""])[0]
        url = f"{call.root}/studies/{study}/series/{series_uid}/instances/{sop_uid}"
        out.append(metadata(part10, url))
    names = [
        str(item.get("00100020", {}).get("Value", [""])[0]) for item in out if "00100020" in item
    ]
    call.audit("metadata", sorted(set(names)))
    return Response(json.dumps(out), media_type=DICOM_JSON)


async def retrieve_frames(call: _Call) -> Response:
    """WADO-RS frames of one instance, as stored (multipart/related octet-stream)."""
    p = call.request.path_params
    study, series, sop = (_uid(p[k], k) for k in ("study", "series", "sop"))
    try:
        numbers = [int(n) for n in str(p["frames"]).split(",")]
    except ValueError:
        raise InvalidInput("frames: a comma-separated list of frame numbers") from None
    holders = await _holders(call, study, series, sop)
    first, rest = await _first_that_answers(
        holders, call.runtime, lambda s: s.retrieve_instance(study, series, sop)
    )
    data = bytearray(first or b"")
    async for chunk in rest:
        data += chunk
    try:
        found, syntax = frames(bytes(data), numbers)
    except NotAnImage as exc:
        raise NotHeld(str(exc)) from None
    boundary = BOUNDARY_PREFIX + uuid.uuid4().hex
    kind = f"application/octet-stream; transfer-syntax={syntax}"
    body = b"".join(_part(boundary, kind, f) for f in found) + f"--{boundary}--\r\n".encode()
    media = f'multipart/related; type="application/octet-stream"; boundary={boundary}'
    return Response(body, media_type=media)


def _error(exc: GatewayError) -> Response:
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 502)
    if isinstance(exc, NotHeld):
        status = 404
    headers = UNAUTHENTICATED_HEADERS if status == 401 else None
    return JSONResponse({"error": str(exc), "code": exc.code}, status_code=status, headers=headers)


def _endpoint(handler: Callable[[_Call], Awaitable[Response]], runtime_of: Any) -> Any:
    async def serve(request: Request) -> Response:
        runtime: Runtime = runtime_of(request)
        try:
            caller = await caller_of(runtime, request)
            if caller is None:
                raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
            return await handler(_Call(request, runtime, caller))
        except GatewayError as exc:
            return _error(exc)

    return serve


def router(runtime_of: Any) -> Router:
    """The `/dicomweb` routes."""
    s, se, i = "/studies/{study}", "/studies/{study}/series/{series}", "/instances/{sop}"
    table: list[tuple[str, Callable[[_Call], Awaitable[Response]]]] = [
        ("/studies", search_studies),
        (f"{s}/series", search_series),
        (f"{s}/instances", search_instances),
        (f"{se}/instances", search_instances),
        (s, retrieve),
        (se, retrieve),
        (f"{se}{i}", retrieve),
        (f"{s}/metadata", retrieve_metadata),
        (f"{se}/metadata", retrieve_metadata),
        (f"{se}{i}/frames/{{frames}}", retrieve_frames),
    ]
    return Router([Route(path, _endpoint(h, runtime_of), methods=["GET"]) for path, h in table])
