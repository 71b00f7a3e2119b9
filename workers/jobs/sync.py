"""The SYNC job: copy what the destination lacks, then verify instance by instance.

Idempotent: each run compares both archives afresh, so a run after a crash
only moves what is still missing, and archives accept an instance they hold
again without duplicating it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete

from gateway.core.errors import InvalidInput, JobCancelled, JobError, NotFound
from gateway.core.settings import Settings
from gateway.db.models import SyncRun, utcnow
from gateway.runtime import Runtime
from gateway.sources.base import (
    InstanceQuery,
    InstanceRecord,
    PacsSource,
    StudyQuery,
    StudyRecord,
)
from gateway.sources.dicomjson import is_uid
from workers.jobs.base import JobHandle
from workers.jobs.changes import detect, load_cursor, save_cursor
from workers.jobs.sync_plan import STRATEGIES, StudyPlan, extra_in, missing_after, plan_study
from workers.jobs.transfer import transfer

STUDY_CONCURRENCY = 4


def validate(input: dict[str, Any], settings: Settings) -> None:
    """Refuse an input that cannot run, with a message naming the field."""
    ids = {s.id: s for s in settings.sources}
    src, dst = input.get("from"), input.get("to")
    if src not in ids:
        raise InvalidInput(f"from: unknown source {src!r}")
    if dst not in ids:
        raise InvalidInput(f"to: unknown source {dst!r}")
    if src == dst:
        raise InvalidInput("from and to must be different sources")
    if not ids[dst].has_role("store"):
        raise InvalidInput(f"to: source {dst!r} does not have the store role")
    chosen = [k for k in ("studyInstanceUids", "patientId", "all") if input.get(k)]
    if len(chosen) != 1:
        raise InvalidInput("give exactly one of studyInstanceUids, patientId, all")
    uids = input.get("studyInstanceUids") or []
    if not all(isinstance(u, str) and is_uid(u) for u in uids):
        raise InvalidInput("studyInstanceUids: not valid UIDs")
    strategy = input.get("conflictStrategy") or "REPORT_ONLY"
    if strategy not in STRATEGIES:
        raise InvalidInput(f"conflictStrategy: one of {', '.join(STRATEGIES)}")


async def select_studies(source: PacsSource, input: dict[str, Any]) -> list[StudyRecord]:
    """The source's studies the input names (unknown UIDs are simply absent)."""
    if input.get("studyInstanceUids"):
        query = StudyQuery(study_uids=tuple(input["studyInstanceUids"]))
    elif input.get("patientId"):
        query = StudyQuery(patient_id=input["patientId"])
    else:
        query = StudyQuery()
    try:
        return await source.find_studies(query)
    except NotFound:
        return []


async def _instances(source: PacsSource, study_uid: str) -> list[InstanceRecord]:
    try:
        return await source.find_instances(InstanceQuery(study_uid=study_uid))
    except NotFound:
        return []


async def _studies_by_uid(source: PacsSource, uids: Sequence[str]) -> dict[str, StudyRecord]:
    if not uids:
        return {}
    try:
        found = await source.find_studies(StudyQuery(study_uids=tuple(uids)))
    except NotFound:
        return {}
    return {s.study_uid: s for s in found}


async def run(job: JobHandle, runtime: Runtime, input: dict[str, Any]) -> dict[str, Any]:
    """Plan, transfer (unless dry run), verify, record; the result as in the contract."""
    validate(input, runtime.settings)
    start = time.monotonic()
    src, dst = runtime.sources[input["from"]], runtime.sources[input["to"]]
    strategy = input.get("conflictStrategy") or "REPORT_ONLY"
    dry_run, verify = bool(input.get("dryRun")), input.get("verify", True) is not False

    await job.progress(0.0, "plan", "selecting studies")
    cursor: str | None = None
    if input.get("periodic"):  # only what changed since the last periodic run
        changes = await detect(src, await load_cursor(runtime, input["from"], input["to"]))
        cursor = changes.cursor
        studies = (
            changes.studies if changes.studies is not None else await select_studies(src, input)
        )
    else:
        studies = await select_studies(src, input)
    uids = [s.study_uid for s in studies]
    not_found = sorted(set(input.get("studyInstanceUids") or []) - set(uids))
    held = await _studies_by_uid(dst, uids)
    gate = asyncio.Semaphore(STUDY_CONCURRENCY)

    async def plan_one(study: StudyRecord) -> tuple[StudyPlan, list[InstanceRecord]]:
        async with gate:
            if study.study_uid in held:
                source_list, dest_list = await asyncio.gather(
                    _instances(src, study.study_uid), _instances(dst, study.study_uid)
                )
            else:  # the destination said it has no such study: nothing to list there
                source_list, dest_list = await _instances(src, study.study_uid), []
        plan = plan_study(
            study.study_uid, source_list, dest_list, strategy, study, held.get(study.study_uid)
        )
        return plan, source_list

    planned = await asyncio.gather(*(plan_one(s) for s in studies))
    await job.checkpoint()
    total = sum(len(p.to_send) for p, _ in planned) or 1
    done = 0
    outcomes: list[dict[str, Any]] = []

    async def tick(n: int) -> None:
        nonlocal done
        done += n
        await job.progress(0.05 + 0.85 * done / total, "transfer", f"{done}/{total} instances")
        await job.checkpoint()

    for plan, source_list in planned:
        outcome = _outcome(plan)
        if not dry_run and plan.to_send:
            try:
                moved = await transfer(
                    src, dst, plan.study_uid, plan.to_send, plan.whole_series, tick=tick
                )
            except JobCancelled as exc:  # stopped between stored batches: say how far it got
                outcomes.append({**outcome, "outcome": "CANCELLED", "transferred": None})
                seconds = time.monotonic() - start
                result = _result(input, outcomes, not_found, dry_run, False, seconds)
                await _record(runtime, job.id, input, outcomes)
                raise JobCancelled(str(exc), result) from None
            outcome.update(transferred=moved.stored, failed=moved.failed, bytes=moved.bytes)
        if verify and not dry_run and not plan.skipped:
            now_held = await _instances(dst, plan.study_uid)
            outcome["missingAfter"] = missing_after(source_list, now_held)
            outcome["extraInDestination"] = extra_in(source_list, now_held)
            outcome["verified"] = outcome["missingAfter"] == 0 and not outcome["failed"]
        outcomes.append(outcome)
    await job.progress(0.95, "record", "recording the outcome")
    result = _result(input, outcomes, not_found, dry_run, verify, time.monotonic() - start)
    await _record(runtime, job.id, input, outcomes)
    unsynced = sum(o["missingAfter"] or 0 for o in outcomes if o["outcome"] != "SKIPPED")
    if verify and not dry_run and unsynced:
        raise JobError(f"{unsynced} instance(s) still missing after sync", result)
    if cursor is not None and not dry_run:
        await save_cursor(runtime, input["from"], input["to"], cursor)
    return result


def _outcome(plan: StudyPlan) -> dict[str, Any]:
    return {
        "studyInstanceUid": plan.study_uid,
        "sourceInstances": plan.source_count,
        "missing": len(plan.missing),
        "conflicts": len(plan.conflicting),
        "conflictFields": list(plan.conflict_fields),
        "outcome": "SKIPPED" if plan.skipped else "SYNCED",
        "transferred": 0,
        "skipped": len(plan.conflicting) + (len(plan.missing) if plan.skipped else 0),
        "failed": 0,
        "bytes": 0,
        "missingAfter": len(plan.missing) if plan.skipped else None,
        "extraInDestination": None,
        "verified": None,
    }


def _result(
    input: dict[str, Any],
    outcomes: list[dict[str, Any]],
    not_found: list[str],
    dry_run: bool,
    verify: bool,
    seconds: float,
) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(o.get(key) or 0) for o in outcomes)

    return {
        "from": input["from"],
        "to": input["to"],
        "dryRun": dry_run,
        "conflictStrategy": input.get("conflictStrategy") or "REPORT_ONLY",
        "studies": outcomes,
        "studiesNotFound": not_found,
        "instancesToTransfer": total("missing"),
        "instancesTransferred": total("transferred"),
        "instancesSkipped": total("skipped"),
        "instancesFailed": total("failed"),
        "conflicts": total("conflicts"),
        "bytes": total("bytes"),
        "verified": (
            all(o["verified"] for o in outcomes if o["outcome"] != "SKIPPED")
            if verify and not dry_run
            else None
        ),
        "missingAfter": total("missingAfter") if verify and not dry_run else None,
        "durationSeconds": round(seconds, 3),
    }


async def _record(
    runtime: Runtime, job_id: str, input: dict[str, Any], outcomes: list[dict[str, Any]]
) -> None:
    """One sync_runs row per study; a re-run of the job replaces its rows."""
    async with runtime.sessions() as session, session.begin():
        await session.execute(delete(SyncRun).where(SyncRun.job_id == job_id))
        for o in outcomes:
            session.add(
                SyncRun(
                    job_id=job_id,
                    source=input["from"],
                    destination=input["to"],
                    study_uid=o["studyInstanceUid"],
                    outcome="DRY_RUN" if input.get("dryRun") else o["outcome"],
                    instances_transferred=o["transferred"] or 0,
                    instances_skipped=o["skipped"],
                    bytes=o["bytes"],
                    verified=bool(o["verified"]),
                    missing_after=int(o["missingAfter"] or 0),
                    detail={"conflicts": o["conflicts"], "fields": o["conflictFields"]},
                    finished_at=utcnow(),
                )
            )
