"""ANONYMIZE job: one study from a source, de-identified (PS3.15 Annex E), into a destination.

Phases: "fetch" (stream the study, one instance at a time), "anonymize" (in the
process pool, each output re-read, and checked with `dciodvfy` when dicom3tools
is installed; an instance that does not validate is not stored and is reported in
the result's `failed`, by its new SOP Instance UID and the attribute keywords at
fault, never a value, while the rest of the study goes on), "store" (in batches;
an XNAT-like destination gets its import service with project, subject =
pseudonym and session label), "verify" (the
destination lists the new study), then the optional encrypted mapping and an
audit event. New UIDs and pseudonyms are keyed hashes, so a re-run stores the
same instances again: idempotent.

The pseudonym link: once the job is done (succeeded, or failed or cancelled after
de-identified data reached the destination), the stored input keeps the original
`studyInstanceUid` only as a keyed hash (`input_ref`), so the job row never holds an
original identifier next to its pseudonym. A transient source error is left as it is:
the runner retries it from the stored input. A redacted job cannot be re-run by
`retryJob` (nothing in clear is left to run it); submitting the study again can, and
stores the same instances.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import select

from gateway.auth import audit
from gateway.auth.audit import Entry
from gateway.core.errors import (
    ConfigError,
    JobError,
    NotFound,
    SourceError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.db.models import AuditEvent
from gateway.deid import load_cipher, save_mapping
from gateway.jobs.specs import AnonymizeSpec
from gateway.jobs.store import JobStore
from gateway.metrics import record as metrics
from gateway.runtime import Runtime
from gateway.sources.base import InstanceQuery, PacsSource
from workers.dicom.deid import EDITION, DeidConfig, DeidReport
from workers.dicom.deid.validate import InvalidOutput, process_instance
from workers.jobs.base import JobHandle

log = logging.getLogger(__name__)

BATCH = 25
WINDOW = 4  # instances in the process pool at once
REDACTED = "hmac:"  # prefix of a study UID replaced by its keyed hash in a finished job


@runtime_checkable
class ProjectImporter(Protocol):
    """A destination that imports a session into a project (XNAT's import service)."""

    async def import_study(
        self, files: Sequence[bytes], project: str, subject: str, label: str
    ) -> Any:
        """Import de-identified Part 10 files as one session."""
        ...


async def run(job: JobHandle, runtime: Runtime, spec: AnonymizeSpec) -> dict[str, Any]:
    """De-identify one study into the destination; the result as in the contract."""
    started = time.monotonic()
    key = runtime.settings.deid_key
    if not key:
        raise JobError("de-identification key is not configured (GATEWAY_DEID_KEY)")
    cipher = None
    if spec.keep_mapping:
        try:
            cipher = load_cipher(runtime.settings.mapping_key)
        except ConfigError as exc:
            raise JobError(f"keepMapping: {exc}") from None
    options, project = spec.options, spec.project_or_default
    config = DeidConfig(key, project, options)
    source = runtime.sources[spec.source]
    dest = runtime.sources[spec.destination]
    study_uid = spec.study_uid

    total = await _count(source, study_uid)
    await job.progress(0.0, "fetch", "retrieving the study")
    run_ = _Run(job, runtime, config, dest, total)

    def result_of(verified: bool | None) -> dict[str, Any]:
        return {
            "anonymizedPatientId": run_.pseudonym,
            "anonymizedStudyInstanceUid": run_.new_study_uid,
            "destination": dest.id,
            "project": project,
            "instances": run_.instances,
            "quarantined": run_.quarantined,
            "failed": run_.failed,
            "durationSeconds": round(time.monotonic() - started, 3),
            "options": sorted(options),
            "profile": f"{EDITION} Annex E Basic Application Level Confidentiality Profile",
            "actions": dict(sorted(run_.actions.items())),
            "verified": verified,
            "mappingKept": cipher is not None,
        }

    try:
        try:
            await run_.consume(source.retrieve_study(study_uid))
        except NotFound:
            raise JobError("the source does not hold this study") from None
        await run_.flush()
        if run_.instances == 0:
            if run_.failed:
                raise JobError(
                    f"no instance of the study validated ({len(run_.failed)} failed validation, "
                    f"{len(run_.quarantined)} quarantined)"
                )
            if not run_.quarantined:
                raise JobError("the source returned no instance of this study")
            raise JobError("every instance of the study was quarantined (possible burned-in text)")
        await job.checkpoint()
        await job.progress(0.95, "verify", "checking the destination")
        verified = await _verify(dest, run_.new_study_uid, run_.instances)
        if cipher is not None and run_.identity:
            await save_mapping(
                runtime.sessions, cipher, project, run_.pseudonym, run_.new_study_uid, run_.identity
            )
    except Exception as exc:
        if run_.instances:  # de-identified data reached the destination: the trail says so
            await _audit(runtime, job.id, spec, result_of(None), type(exc).__name__)
            if _final(job, exc):
                try:
                    await _forget_original(runtime, job.id, key)
                except Exception as why:  # the job's own failure is what gets reported
                    log.warning("job %s: input not redacted: %s", job.id, type(why).__name__)
        raise
    result = result_of(verified)
    await _audit(runtime, job.id, spec, result)
    await _forget_original(runtime, job.id, key)
    await job.progress(1.0, "done", f"{run_.instances} instances de-identified")
    return result


def input_ref(key: str, study_uid: str) -> str:
    """The keyed hash a finished job keeps instead of the original study UID: HMAC-SHA256
    under the de-identification key, in a domain of its own (never a UID the
    de-identification derives), hex, prefixed `hmac:`."""
    msg = b"job-input\x1fstudyInstanceUid\x1f" + study_uid.encode("utf-8")
    return REDACTED + hmac.new(key.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def _final(job: JobHandle, exc: Exception) -> bool:
    """Whether the run ends the job: not a transient source error (the runner retries it
    from the stored input), not a lost lease (another worker carries on)."""
    if isinstance(exc, SourceUnavailable | SourceTimeout):
        return False
    return not getattr(job, "lease_lost", False)


async def _forget_original(runtime: Runtime, job_id: str, key: str) -> None:
    """Replace the stored input's study UID by its keyed hash (no-op for an unknown job)."""
    store = JobStore(runtime.sessions)
    row = await store.get(job_id)
    if row is None:
        return
    stored = dict(row.input or {})
    uid = stored.get("studyInstanceUid")
    if not isinstance(uid, str) or uid.startswith(REDACTED):
        return
    await store.redact_input(job_id, {**stored, "studyInstanceUid": input_ref(key, uid)})


class _Run:
    """The streaming pipeline of one run: pool window, batches, counters."""

    def __init__(
        self, job: JobHandle, runtime: Runtime, config: DeidConfig, dest: PacsSource, total: int
    ) -> None:
        self.job, self.runtime, self.config, self.dest = job, runtime, config, dest
        self.total = max(total, 1)
        self.pending: list[asyncio.Future[tuple[bytes | None, DeidReport, dict[str, str]]]] = []
        self.batch: list[bytes] = []
        self.instances = 0
        self.quarantined: list[dict[str, str]] = []
        self.failed: list[dict[str, Any]] = []
        self.actions: Counter[str] = Counter()
        self.identity: dict[str, str] = {}
        self.pseudonym = ""
        self.new_study_uid = ""
        self.done = 0

    async def consume(self, files: Any) -> None:
        """Feed every retrieved instance through the pool, keeping `WINDOW` in flight."""
        loop = asyncio.get_running_loop()
        pool = self.runtime.cpu_pool()
        async for data in files:
            await self.job.checkpoint()
            self.pending.append(loop.run_in_executor(pool, process_instance, data, self.config))
            if len(self.pending) >= WINDOW:
                await self._collect(self.pending.pop(0))

    async def flush(self) -> None:
        """Collect what is still in the pool and store the last batch."""
        while self.pending:
            await self._collect(self.pending.pop(0))
        await self._store()

    async def _collect(self, future: asyncio.Future[Any]) -> None:
        failed: InvalidOutput | None = None
        try:
            out, report, identity = await future
        except InvalidOutput as exc:  # this instance did not validate: reported, not stored
            failed = exc
        except ValueError as exc:  # the output did not re-read
            raise JobError(f"validation failed: {exc}") from None
        self.done += 1
        if failed is not None:
            self.failed.append(
                {
                    "anonymizedSopInstanceUid": failed.sop_uid,
                    "attributes": list(failed.attributes),
                    "reason": failed.kind,
                }
            )
        else:
            if not self.identity:
                self.identity = identity
            if out is None:
                item = {
                    "anonymizedSopInstanceUid": report.sop_uid,
                    "reason": report.quarantined or "",
                }
                self.quarantined.append(item)
                metrics.deid_quarantined(self.dest.id)
            else:
                self.instances += 1
                self.actions.update(report.actions)
                self.pseudonym = self.pseudonym or report.patient_pseudonym
                self.new_study_uid = self.new_study_uid or report.study_uid
                self.batch.append(out)
        fraction = 0.9 * self.done / max(self.total, self.done)
        await self.job.progress(fraction, "anonymize", f"{self.done} of {self.total} instances")
        if len(self.batch) >= BATCH:
            await self._store()

    async def _store(self) -> None:
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        await self.job.checkpoint()
        await self.job.progress(0.9 * self.done / self.total, "store", f"{len(batch)} instances")
        if isinstance(self.dest, ProjectImporter):
            label = f"{self.pseudonym}_{self.new_study_uid[-8:]}"
            await self.dest.import_study(batch, self.config.project, self.pseudonym, label)
            return
        result = await self.dest.store(batch)
        if result.failed:
            raise JobError(f"destination refused {len(result.failed)} of {len(batch)} instances")


async def _count(source: PacsSource, study_uid: str) -> int:
    try:
        return len(await source.find_instances(InstanceQuery(study_uid)))
    except SourceError:
        return 0  # progress only; retrieval says whether the study exists


async def _verify(dest: PacsSource, study_uid: str, expected: int) -> bool | None:
    """True when the destination lists every stored instance; None when it cannot be asked."""
    try:
        found = await dest.find_instances(InstanceQuery(study_uid))
    except SourceError:
        return None
    if len(found) < expected:
        raise JobError(f"destination lists {len(found)} of {expected} stored instances")
    return True


async def _audit(
    runtime: Runtime,
    job_id: str,
    spec: AnonymizeSpec,
    result: dict[str, Any],
    failure: str | None = None,
) -> None:
    """One audit event per job and outcome, not per attempt; no patient data, the new study
    UID as reference. A run that failed after storing is recorded as "anonymize-incomplete"."""
    actor, ref = f"job:{job_id}", result["anonymizedStudyInstanceUid"]
    action = "anonymize" if failure is None else "anonymize-incomplete"
    job = await JobStore(runtime.sessions).get(job_id)
    detail = {
        "requestedBy": job.requested_by if job is not None else None,
        "failure": failure,
        "source": spec.source,
        "destination": result["destination"],
        "project": result["project"],
        "profile": result["profile"],
        "options": result["options"],
        "instances": result["instances"],
        "quarantined": len(result["quarantined"]),
        "failed": len(result.get("failed", [])),
        "actions": result["actions"],
        "mappingKept": result["mappingKept"],
    }
    async with runtime.sessions() as session, session.begin():
        seen = await session.scalar(
            select(AuditEvent.id).where(
                AuditEvent.actor == actor,
                AuditEvent.action == action,
                AuditEvent.object_ref == ref,
            )
        )
        if seen is None:
            entry = Entry(
                actor=actor, action=action, object_type="study", object_ref=ref, details=detail
            )
            await audit.append(session, entry)
