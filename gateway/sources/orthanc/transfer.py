"""Orthanc bulk transfer: concurrent file fetches, ZIP uploads, and its change feed.

- retrieve: images one `GET /instances/{id}/file` each, several in flight; small files
  in ZIP archives of about 4 MB built by Orthanc (`/tools/create-archive`);
- store: several files in one `POST /instances` as a ZIP archive (Orthanc
  1.8.2+ unpacks it and answers one status per file, in order); a batch
  Orthanc refuses, or answers oddly, is sent again file by file so that only
  the bad file fails;
- changes: `GET /changes` from a stored sequence number; study-level events
  (NewStudy, StableStudy) name what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import zipfile
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from gateway.core.errors import NotFound, SourceProtocolError
from gateway.sources.http.client import HttpClient, gather, parse_json

STORED = ("Success", "AlreadyStored")
ZIP_FILES = 32
ARCHIVE_FILES = 32
ARCHIVE_BYTES = 4 * 1024 * 1024
LARGE_FILE = 64 * 1024  # files this big or bigger are fetched one request each
FILES_PER_ARCHIVE_SLOT = 3  # single-file requests in flight per archive slot of the window
ZIP_BYTES = 2 * 1024 * 1024
CHANGES_PAGE = 1000
CHANGES_PAGES = 20
STUDY_EVENTS = ("NewStudy", "StableStudy")


async def fetch_files(
    http: HttpClient, op: str, instance_ids: Sequence[str], window: int
) -> AsyncIterator[bytes]:
    """Each instance's Part 10 file, in order, `window` requests in flight.

    The first file comes alone (`GET /instances/{id}/file`); its size decides the rest.
    Large files (images) come one request each, `window * FILES_PER_ARCHIVE_SLOT` in
    flight: Orthanc deflates archives at about 7 MB/s, far below what it serves files at.
    Small files come in ZIP archives built by Orthanc (`POST /tools/create-archive`: one
    request per archive instead of one per file) of about `ARCHIVE_BYTES` each, inflated
    off the event loop; if Orthanc refuses archives, file by file.
    """
    if not instance_ids:
        return
    first = await _one_file(http, op, instance_ids[0])
    large = len(first) >= LARGE_FILE
    size = 1 if large else max(1, min(ARCHIVE_FILES, ARCHIVE_BYTES // max(1, len(first))))
    in_flight = window * FILES_PER_ARCHIVE_SLOT if large else window
    yield first
    del first

    async def fetch(ids: Sequence[str]) -> list[bytes]:
        if len(ids) > 1:
            try:
                body = {"Resources": list(ids), "Synchronous": True}
                response = await http.request(op, "POST", "/tools/create-archive", json=body)
                return await asyncio.to_thread(_unzip, response.content, len(ids), http.source)
            except SourceProtocolError:
                pass  # an Orthanc without archives: file by file below
        return [await _one_file(http, op, i) for i in ids]

    rest = instance_ids[1:]
    pending: deque[asyncio.Task[list[bytes]]] = deque()
    try:
        for start in range(0, len(rest), size):
            pending.append(asyncio.create_task(fetch(rest[start : start + size])))
            if len(pending) >= in_flight:
                for data in await pending.popleft():
                    yield data
        while pending:
            for data in await pending.popleft():
                yield data
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task


async def _one_file(http: HttpClient, op: str, instance_id: str) -> bytes:
    response = await http.open(op, "GET", f"/instances/{instance_id}/file")
    return b"".join([chunk async for chunk in http.iter_body(response, op)])


def _unzip(content: bytes, expected: int, source: str) -> list[bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            files = [archive.read(n) for n in names]
    except (zipfile.BadZipFile, OSError):
        raise SourceProtocolError(source, "retrieve: the archive is not a valid ZIP") from None
    if len(files) != expected:
        raise SourceProtocolError(source, "retrieve: the archive lacks instances")
    return files


def zip_batches(files: Sequence[bytes]) -> list[list[int]]:
    """Indexes of `files` grouped into upload batches (by count and by size)."""
    batches: list[list[int]] = []
    size = 0
    for i, data in enumerate(files):
        if not batches or len(batches[-1]) >= ZIP_FILES or size + len(data) > ZIP_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(i)
        size += len(data)
    return batches


async def store_zip(
    http: HttpClient, files: Sequence[bytes], store_one: Callable[[bytes], Awaitable[bool]]
) -> list[bool]:
    """Store `files` in one ZIP upload; whether each was stored."""
    if len(files) == 1:
        return [await store_one(files[0])]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i, data in enumerate(files):
            archive.writestr(f"{i:05d}.dcm", data)
    try:
        response = await http.request(
            "store",
            "POST",
            "/instances",
            content=buffer.getvalue(),
            headers={"Content-Type": "application/zip"},
            # safe to send again (AlreadyStored), and Orthanc closes a connection idle for
            # 1 s: one reused just then is lost before the request reaches it
            idempotent=True,
        )
        body = parse_json(response, http.source, "store")
    except SourceProtocolError:
        body = None
    if isinstance(body, list) and len(body) == len(files):
        return [isinstance(x, dict) and x.get("Status") in STORED for x in body]
    return [await store_one(data) for data in files]


async def changed_study_ids(http: HttpClient, since: int | None) -> tuple[list[str], int]:
    """Orthanc ids of studies with study-level change events after `since`; the last seq.

    With `since` None: no studies, only the feed's current end.
    """
    if since is None:
        body = parse_json(
            await http.request("changes", "GET", "/changes?last"), http.source, "changes"
        )
        return [], int(body.get("Last", 0)) if isinstance(body, dict) else 0
    ids: list[str] = []
    last = since
    for _ in range(CHANGES_PAGES):
        url = f"/changes?since={last}&limit={CHANGES_PAGE}"
        body = parse_json(await http.request("changes", "GET", url), http.source, "changes")
        if not isinstance(body, dict):
            raise SourceProtocolError(http.source, "changes: unexpected answer")
        for change in body.get("Changes") or []:
            if change.get("ResourceType") == "Study" and change.get("ChangeType") in STUDY_EVENTS:
                ids.append(str(change.get("ID")))
        last = int(body.get("Last", last))
        if body.get("Done", True):
            break
    return list(dict.fromkeys(ids)), last


async def study_uids(http: HttpClient, orthanc_ids: Sequence[str]) -> list[str]:
    """StudyInstanceUIDs of Orthanc study ids (deleted ones are left out)."""

    async def one(orthanc_id: str) -> str | None:
        try:
            body = parse_json(
                await http.request("changes", "GET", f"/studies/{orthanc_id}"),
                http.source,
                "changes",
            )
        except (SourceProtocolError, NotFound):
            return None
        tags = body.get("MainDicomTags") if isinstance(body, dict) else None
        return (
            str(tags["StudyInstanceUID"])
            if isinstance(tags, dict) and tags.get("StudyInstanceUID")
            else None
        )

    found = await gather(*(one(i) for i in orthanc_ids))
    return [uid for uid in found if uid]
