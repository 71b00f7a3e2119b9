"""`POST /import?to=<archive>`: an upload of DICOM files becomes an IMPORT job.

The body is a multipart form with one or more files (each a DICOM file or a ZIP), a ZIP
(`Content-Type: application/zip`) or one DICOM file (`application/dicom`). It is streamed
to a spool under the results directory (`gateway.jobs.spool`), never held in memory,
bounded by `[import] max_bytes` (413 beyond it); then the job is submitted and the answer
is `202 {"jobId": ...}`. Unpacking, checking and storing happen in the job.

The same bearer authentication as `/graphql` (anyone in open mode): 401 without a valid
token, 403 when the roles policy refuses the archive (`gateway.auth.policy`: researchers
import into research archives only). Errors are `{"code": ..., "error": ...}` and never
name a patient value; submissions and refusals are audited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import IO, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from gateway.auth import policy
from gateway.auth.audit import Entry
from gateway.auth.principal import Principal
from gateway.core.enums import JobKind
from gateway.core.errors import (
    AuditUnavailable,
    Forbidden,
    GatewayError,
    InvalidInput,
    TooLarge,
    Unauthenticated,
)
from gateway.jobs import spool as spools
from gateway.jobs.specs import ImportSpec
from gateway.runtime import Runtime
from gateway.server.callers import caller_of, coded_error
from gateway.sources.http import multipart as mp

RAW_TYPES = {
    "application/zip": "upload.zip",
    "application/x-zip-compressed": "upload.zip",
    "application/dicom": "upload.dcm",
    "application/octet-stream": "upload",
}
_STATUS: dict[type[GatewayError], int] = {
    Unauthenticated: 401,
    Forbidden: 403,
    TooLarge: 413,
    AuditUnavailable: 503,
}
_PLACEHOLDER_SPOOL = "0" * 32  # checks the destination before a byte is read


async def _caller(runtime: Runtime, request: Request) -> Principal:
    caller = await caller_of(runtime, request)
    if caller is None:
        raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
    return caller


class _Writer:
    """Writes the upload's files into a spool, counting every byte against the bound."""

    def __init__(self, spool: spools.Spool, limit: int) -> None:
        self.spool, self.limit = spool, limit
        self.size = 0
        self.current: IO[bytes] | None = None

    async def open(self, name: str | None) -> None:
        await self.close()
        self.current = await asyncio.to_thread(self.spool.part(name).open, "wb")

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(f"an upload is at most {self.limit} bytes ([import] max_bytes)")
        if self.current is not None and chunk:
            await asyncio.to_thread(self.current.write, chunk)

    async def close(self) -> None:
        if self.current is not None:
            await asyncio.to_thread(self.current.close)
            self.current = None


async def _receive(request: Request, writer: _Writer) -> None:
    """Stream the body into the spool: each form file, or the whole raw body."""
    media, _ = mp.parse_content_type(request.headers.get("content-type", ""))
    chunks: AsyncIterator[bytes] = request.stream()
    if media == "multipart/form-data":
        try:
            boundary = mp.boundary_of(request.headers["content-type"])
            async for event in mp.iter_events(chunks, boundary):
                if isinstance(event, mp.Headers):
                    _, params = mp.parse_content_type(event.fields.get("content-disposition", ""))
                    if "filename" in params:  # a file; other form fields are ignored
                        await writer.open(params["filename"])
                    else:
                        await writer.close()
                elif isinstance(event, mp.Data):
                    await writer.write(event.chunk)
                else:
                    await writer.close()
        except mp.MultipartError as exc:
            raise InvalidInput(f"the multipart body is malformed: {exc}") from None
    elif media in RAW_TYPES:
        await writer.open(RAW_TYPES[media])
        async for chunk in chunks:
            await writer.write(chunk)
    else:
        raise InvalidInput(
            "send a multipart form of files, an application/zip or an application/dicom body"
        )
    await writer.close()
    if not writer.spool.names:
        raise InvalidInput("the upload holds no file")


def _audit(runtime: Runtime, caller: Principal | None, request: Request, **fields: Any) -> None:
    entry = Entry(
        actor=caller.actor if caller else None,
        object_type="job",
        address=request.client.host if request.client else None,
        **fields,
    )
    runtime.audit.submit(entry)


async def import_upload(request: Request) -> JSONResponse:
    """Spool the upload and submit its IMPORT job."""
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    caller: Principal | None = None
    try:
        caller = await _caller(runtime, request)
        body = {"to": request.query_params.get("to"), "spool": _PLACEHOLDER_SPOOL}
        dest = ImportSpec.parse(body, settings).destination
        policy.check_submit(caller, JobKind.IMPORT, [dest], settings)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.imports.max_bytes:
            raise TooLarge(
                f"an upload is at most {settings.imports.max_bytes} bytes ([import] max_bytes)"
            )
    except Forbidden as exc:
        with contextlib.suppress(AuditUnavailable):  # refused either way
            kind = {"kind": JobKind.IMPORT.value}
            _audit(runtime, caller, request, action="job-submit", outcome="refused", details=kind)
        return coded_error(exc, _STATUS, default=400)
    except GatewayError as exc:
        return coded_error(exc, _STATUS, default=400)
    await asyncio.to_thread(spools.sweep, settings)
    spool = await asyncio.to_thread(spools.new_spool, settings)
    writer = _Writer(spool, settings.imports.max_bytes)
    try:
        await _receive(request, writer)
        await asyncio.to_thread(spool.seal)
        spec = ImportSpec(spool=spool.id, destination=dest)
        job = await runtime.job_service().submit(spec, caller.actor, caller.user_id)
    except GatewayError as exc:
        await writer.close()
        await asyncio.to_thread(spool.discard)
        return coded_error(exc, _STATUS, default=400)
    except ClientDisconnect:
        await writer.close()
        await asyncio.to_thread(spool.discard)
        return coded_error(InvalidInput("the upload ended early"), _STATUS, default=400)
    except BaseException:
        await writer.close()
        await asyncio.to_thread(spool.discard)
        raise
    details: dict[str, Any] = {"kind": JobKind.IMPORT.value, "files": len(spool.names)}
    details["bytes"] = writer.size
    with contextlib.suppress(AuditUnavailable):  # the job is on record in its own row
        _audit(runtime, caller, request, action="job-submit", object_ref=job.id, details=details)
    return JSONResponse({"jobId": job.id}, status_code=202)
