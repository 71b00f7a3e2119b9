"""The IMPORT job: the DICOM files of an upload, checked, stored into one archive, verified.

Input: `gateway.jobs.specs.ImportSpec` (a spool of `gateway.jobs.spool`, an archive).
Phases: `unpack` (list the files, ZIPs safely: `workers.jobs.unpack`), `validate` (each
file one DICOM instance: `workers.dicom.intake`), `check` (what the archive holds
already), `store` (the rest, in batches), `verify` (each sent instance listed by the
archive). An instance is either stored and verified, or listed as failed; one the
archive holds already is counted, not sent again, so a re-run stores nothing twice.

The spool is removed when the job succeeds or is cancelled; a failed job keeps it so a
retry (or the transient-error re-run) finds the upload again.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import JobCancelled, JobError, NotFound, NotSupported, SourceProtocolError
from gateway.jobs import spool
from gateway.jobs.specs import ImportSpec
from gateway.runtime import Runtime
from gateway.sources.base import InstanceQuery, PacsSource
from workers.dicom.intake import Instance, NotAnInstance, as_part10, check
from workers.jobs.base import JobHandle
from workers.jobs.unpack import Member, Refusal, UploadRefused, batches, list_upload

STORE_FILES = 16  # files per store call
STORE_BYTES = 64 << 20  # bytes per store call, about
MAX_LISTED = 1000  # refused files named in the result; the counts are always exact


@dataclass
class Outcome:
    """What the job did so far: the counts and the refused files of its result."""

    destination: str
    files: int = 0
    stored: int = 0
    already: int = 0
    duplicates: int = 0
    failed: int = 0
    bytes: int = 0
    refused: list[Refusal] = field(default_factory=list)
    studies: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)

    def result(self) -> dict[str, Any]:
        """The job's result (JSON)."""
        return {
            "to": self.destination,
            "files": self.files,
            "stored": self.stored,
            "alreadyPresent": self.already,
            "refused": len(self.refused) - self.failed,
            "duplicates": self.duplicates,
            "failed": self.failed,
            "bytes": self.bytes,
            "studyInstanceUids": sorted(self.studies)[:MAX_LISTED],
            "refusedFiles": [{"file": r.name, "reason": r.reason} for r in self.refused][
                :MAX_LISTED
            ],
            "refusedFilesOmitted": max(0, len(self.refused) - MAX_LISTED),
            "durationSeconds": round(time.monotonic() - self.started, 3),
        }


@dataclass(frozen=True, slots=True)
class Checked:
    """A member that is one valid instance."""

    member: Member
    instance: Instance


def _inspect(member: Member) -> Instance | str:
    """The member's instance, or why it is refused."""
    try:
        data = member.read()
    except (ValueError, OSError) as exc:
        return str(exc) if isinstance(exc, ValueError) else "unreadable"
    try:
        return check(data)
    except NotAnInstance as exc:
        return str(exc)


def _load(members: Sequence[Member]) -> list[bytes]:
    return [as_part10(m.read()) for m in members]


async def _held(source: PacsSource, study_uid: str) -> set[str]:
    """SOP Instance UIDs the archive lists for a study."""
    try:
        found = await source.find_instances(InstanceQuery(study_uid=study_uid))
    except NotFound:
        return set()
    return {i.sop_instance_uid for i in found}


async def _validate(
    job: JobHandle, runtime: Runtime, members: Sequence[Member], out: Outcome
) -> list[Checked]:
    """Check each member in the process pool (parsing is CPU work, and pydicom's warnings,
    which tell a truncated item, are process-wide state)."""
    good: list[Checked] = []
    first: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    for n, member in enumerate(members):
        verdict = await loop.run_in_executor(runtime.cpu_pool(), _inspect, member)
        if isinstance(verdict, str):
            out.refused.append(Refusal(member.name, verdict))
        elif verdict.sop_instance_uid in first:
            out.duplicates += 1
            out.refused.append(Refusal(member.name, "the same instance as another file"))
        else:
            first[verdict.sop_instance_uid] = member.name
            good.append(Checked(member, verdict))
        if n % 16 == 15 or n == len(members) - 1:
            await job.progress(0.05 + 0.35 * (n + 1) / len(members), "validate", f"{n + 1} files")
            await job.checkpoint()
    return good


async def _store(
    job: JobHandle, dest: PacsSource, todo: Sequence[Checked], out: Outcome
) -> dict[str, str]:
    """Send `todo` in batches; why each instance the archive refused was refused."""
    refused: dict[str, str] = {}
    done = 0
    by_member = {c.member: c for c in todo}
    for group in batches([c.member for c in todo], STORE_FILES, STORE_BYTES):
        files = await asyncio.to_thread(_load, group)
        try:
            answer = await dest.store(files)
        except (SourceProtocolError, NotSupported) as exc:  # this batch refused as a whole
            why = f"the archive refused it ({exc.code})"
            refused.update({by_member[m].instance.sop_instance_uid: why for m in group})
        else:
            refused.update({uid: "the archive refused it" for uid in answer.failed})
            out.bytes += answer.bytes or sum(len(f) for f in files)
        done += len(group)
        await job.progress(0.5 + 0.4 * done / max(1, len(todo)), "store", f"{done}/{len(todo)}")
        await job.checkpoint()  # between batches: nothing is cut short
    return refused


async def _import(
    job: JobHandle, dest: PacsSource, parts: list[tuple[Any, str]], runtime: Runtime, out: Outcome
) -> None:
    await job.progress(0.0, "unpack", f"{len(parts)} uploaded file(s)")
    try:
        listing = await asyncio.to_thread(list_upload, parts, runtime.settings.imports)
    except UploadRefused as exc:
        raise JobError(str(exc), out.result()) from None
    out.files = len(listing.members) + len(listing.refused)
    out.refused += listing.refused
    await job.checkpoint()
    good = await _validate(job, runtime, listing.members, out)
    await job.progress(0.4, "check", f"{len(good)} instance(s) to look up")
    studies: dict[str, list[Checked]] = defaultdict(list)
    for c in good:
        studies[c.instance.study_uid].append(c)
    held = {study: await _held(dest, study) for study in studies}
    todo = [c for c in good if c.instance.sop_instance_uid not in held[c.instance.study_uid]]
    out.already = len(good) - len(todo)
    sending = {c.instance.sop_instance_uid for c in todo}
    out.studies = {c.instance.study_uid for c in good if c.instance.sop_instance_uid not in sending}
    await job.checkpoint()
    refused = await _store(job, dest, todo, out)
    await job.progress(0.9, "verify", f"{len(todo)} instance(s)")
    sent = {c.instance.study_uid for c in todo}
    now = {study: await _held(dest, study) for study in sorted(sent)}
    for c in todo:
        uid = c.instance.sop_instance_uid
        if uid in now[c.instance.study_uid]:
            out.stored += 1
            out.studies.add(c.instance.study_uid)
        else:
            out.failed += 1
            why = refused.get(uid, "not listed by the archive after storing")
            out.refused.append(Refusal(c.member.name, why))


async def run(job: JobHandle, runtime: Runtime, spec: ImportSpec) -> dict[str, Any]:
    """Import the upload; the result holds the counts and the refused files."""
    settings = runtime.settings
    path = spool.spool_path(settings, spec.spool)
    parts = await asyncio.to_thread(spool.read_manifest, path)
    if parts is None:
        raise JobError(
            "the upload is no longer on the server (imported already, or kept longer than "
            "[import] spool_keep_s): upload it again"
        )
    out = Outcome(spec.destination)
    try:
        await _import(job, runtime.sources[spec.destination], parts, runtime, out)
    except JobCancelled as exc:
        await asyncio.to_thread(spool.remove, settings, spec.spool)
        raise JobCancelled(str(exc), out.result()) from None
    result = out.result()
    if out.failed:
        raise JobError(f"{out.failed} instance(s) not stored (retry to send them again)", result)
    await asyncio.to_thread(spool.remove, settings, spec.spool)
    await job.progress(1.0, "verify", f"{out.stored} stored, {out.already} already present")
    return result
