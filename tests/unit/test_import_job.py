"""The IMPORT job's own rules, with an in-memory archive: nothing half-stored, a retry sends
only what is missing, the spool kept on failure and removed on success or cancel."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pydicom
import pytest

from gateway.core.errors import JobCancelled, JobError
from gateway.core.settings import Settings
from gateway.jobs import spool
from gateway.jobs.specs import ImportSpec
from gateway.runtime import Runtime
from gateway.sources.base import InstanceQuery, InstanceRecord, StoreResult
from tests.jobs_support import big_study
from workers.jobs import importing
from workers.jobs.base import RecordingHandle

STUDY, FILES = big_study(4, seed=2323, rows=8)


def _sop(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


class Archive:
    """Holds instances by SOP UID; refuses those in `refuse`; counts what it was sent."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}
        self.refuse: set[str] = set()
        self.sent: list[str] = []

    async def find_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        return [
            InstanceRecord(sop, "series", study)
            for sop, study in self.held.items()
            if study == query.study_uid
        ]

    async def store(self, files: Sequence[bytes]) -> StoreResult:
        stored, failed = [], []
        for data in files:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            sop = str(ds.SOPInstanceUID)
            self.sent.append(sop)
            if sop in self.refuse:
                failed.append(sop)
            else:
                self.held[sop] = str(ds.StudyInstanceUID)
                stored.append(sop)
        return StoreResult(tuple(stored), tuple(failed), sum(map(len, files)))


class FakeRuntime:
    def __init__(self, settings: Settings, archive: Archive) -> None:
        self.settings = settings
        self.sources = {"dest": archive}
        self._pool = ThreadPoolExecutor(1)

    def cpu_pool(self) -> ThreadPoolExecutor:
        return self._pool


def _upload(settings: Settings) -> ImportSpec:
    sp = spool.new_spool(settings)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for n, data in enumerate(FILES):
            archive.writestr(f"series/{n}.dcm", data)
        archive.writestr("notes.txt", b"no")
    sp.part("upload.zip").write_bytes(out.getvalue())
    sp.seal()
    return ImportSpec(spool=sp.id, destination="dest")


def _run(runtime: FakeRuntime, spec: ImportSpec, **handle: Any) -> dict[str, Any]:
    return asyncio.run(
        importing.run(RecordingHandle("imp", **handle), cast(Runtime, runtime), spec)
    )


def test_a_refused_instance_fails_the_job_and_a_retry_sends_only_it(tmp_path: Path) -> None:
    settings = Settings(sources=(), results_dir=tmp_path)
    archive = Archive()
    archive.held[_sop(FILES[0])] = STUDY  # held before: counted, never sent
    archive.refuse.add(_sop(FILES[1]))
    runtime, spec = FakeRuntime(settings, archive), _upload(settings)
    with pytest.raises(JobError) as failed:
        _run(runtime, spec)
    result = failed.value.result or {}
    assert (result["stored"], result["alreadyPresent"], result["failed"]) == (2, 1, 1)
    assert result["refused"] == 1  # notes.txt
    reasons = {r["file"]: r["reason"] for r in result["refusedFiles"]}
    assert reasons["upload.zip/series/1.dcm"] == "the archive refused it"
    assert _sop(FILES[0]) not in archive.sent
    assert spool.spool_path(settings, spec.spool).exists(), "kept for the retry"

    archive.refuse.clear()
    archive.sent.clear()
    again = _run(runtime, spec)
    assert (again["stored"], again["alreadyPresent"], again["failed"]) == (1, 3, 0)
    assert archive.sent == [_sop(FILES[1])], "only what was missing is sent"
    assert set(archive.held) == {_sop(f) for f in FILES}
    assert not spool.spool_path(settings, spec.spool).exists(), "removed once succeeded"
    with pytest.raises(JobError, match="no longer on the server"):
        _run(runtime, spec)


def test_a_cancelled_import_removes_its_spool(tmp_path: Path) -> None:
    settings = Settings(sources=(), results_dir=tmp_path)
    archive = Archive()
    runtime, spec = FakeRuntime(settings, archive), _upload(settings)
    with pytest.raises(JobCancelled):
        _run(runtime, spec, cancel_after=0)
    assert not archive.sent
    assert not spool.spool_path(settings, spec.spool).exists()
