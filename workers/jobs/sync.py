"""The SYNC job: copy what the destination lacks, then verify instance by instance.

Idempotent: each run compares both archives afresh, so a run after a crash
only moves what is still missing, and archives accept an instance they hold
again without duplicating it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import delete

from gateway.core.errors import JobCancelled, JobError, NotFound
from gateway.db.models import SyncRun, utcnow
from gateway.index.feed import detect
from gateway.jobs.specs import SyncSpec
from gateway.metrics import record as metrics
from gateway.runtime import Runtime
from gateway.sources.base import (
    InstanceQuery,
    InstanceRecord,
    PacsSource,
    SeriesQuery,
    StudyQuery,
    StudyRecord,
)
from workers.jobs.base import JobHandle
from workers.jobs.changes import load_cursor, save_cursor
from workers.jobs.sync_plan import (
    STUDY_FIELDS,
    StudyPlan,
    differing,
    extra_in,
    missing_after,
    plan_study,
)
from workers.jobs.transfer import Moved, Shipment, transfer

STUDY_CONCURRENCY = 8
SERIES_BATCH = 200  # studies per series-count request
UID_QUERY_LIMIT = 1000  # a full sync of more studies lists the destination instead
LIST_EVERY_STUDY_UP_TO = 1000  # larger runs list only the studies that were not in sync


async def select_studies(source: PacsSource, spec: SyncSpec) -> list[StudyRecord]:
    """The source's studies the spec names (unknown UIDs are simply absent)."""
    if spec.study_uids:
        query = StudyQuery(study_uids=spec.study_uids)
    elif spec.patient_id:
        query = StudyQuery(patient_id=spec.patient_id)
    else:
        query = StudyQuery()
    try:
        return await source.find_studies(query)
    except NotFound:
        return []


async def _instances(
    source: PacsSource, study_uid: str, series: Sequence[str] = ()
) -> list[InstanceRecord]:
    try:
        return await source.find_instances(
            InstanceQuery(study_uid=study_uid, series_uids=tuple(series))
        )
    except NotFound:
        return []


SeriesCounts = dict[str, dict[str, int | None]]  # study UID -> series UID -> instances


async def _series_counts(source: PacsSource, study_uids: Sequence[str]) -> SeriesCounts:
    """Series counts of many studies, SERIES_BATCH studies per request."""
    out: SeriesCounts = {}
    for i in range(0, len(study_uids), SERIES_BATCH):
        try:
            found = await source.find_series(SeriesQuery(tuple(study_uids[i : i + SERIES_BATCH])))
        except NotFound:
            continue
        for s in found:
            out.setdefault(s.study_uid, {})[s.series_uid] = s.instance_count
    return out


async def differing_series(
    src: PacsSource, dst: PacsSource, study_uids: Sequence[str]
) -> dict[str, list[str] | None]:
    """Per study, the source's series whose instance count the destination does not
    match (None when an archive does not report series counts: compare every instance)."""
    mine, theirs = await asyncio.gather(
        _series_counts(src, study_uids), _series_counts(dst, study_uids)
    )
    out: dict[str, list[str] | None] = {}
    for uid in study_uids:
        a, b = mine.get(uid, {}), theirs.get(uid, {})
        if any(n is None for n in a.values()) or any(n is None for n in b.values()):
            out[uid] = None
        else:
            out[uid] = sorted(s for s, n in a.items() if b.get(s) != n)
    return out


async def _held(
    source: PacsSource, uids: Sequence[str], listing: bool = False
) -> dict[str, StudyRecord]:
    """The destination's records of the studies `uids`: one UID-list query, or with
    `listing` its whole study list (for a full sync of many studies: one listing rather
    than a UID list as long as the archive)."""
    if not uids:
        return {}
    query = StudyQuery() if listing else StudyQuery(study_uids=tuple(uids))
    try:
        found = await source.find_studies(query)
    except NotFound:
        return {}
    wanted = set(uids)
    return {s.study_uid: s for s in found if s.study_uid in wanted}


async def run(job: JobHandle, runtime: Runtime, spec: SyncSpec) -> dict[str, Any]:
    """Plan, transfer (unless dry run), verify, record; the result as in the contract."""
    start = time.monotonic()
    src, dst = runtime.sources[spec.source], runtime.sources[spec.destination]
    strategy = spec.conflict_strategy
    dry_run, verify = spec.dry_run, spec.verify

    await job.progress(0.0, "plan", "selecting studies")
    cursor: str | None = None
    if spec.periodic:  # only what changed since the last periodic run
        changes = await detect(src, await load_cursor(runtime, spec.source, spec.destination))
        cursor = changes.cursor
        studies = (
            changes.studies if changes.studies is not None else await select_studies(src, spec)
        )
    else:
        studies = await select_studies(src, spec)
    uids = [s.study_uid for s in studies]
    not_found = sorted(set(spec.study_uids) - set(uids))
    held = await _held(dst, uids, listing=spec.all and len(uids) > UID_QUERY_LIMIT)
    gate = asyncio.Semaphore(STUDY_CONCURRENCY)

    async def plan_one(study: StudyRecord) -> Planned:
        """Compare in levels: study counts and attributes, then series counts, then the
        instances of the series that differ only."""
        uid, theirs = study.study_uid, held.get(study.study_uid)
        async with gate:
            if theirs is None:  # the destination said it has no such study
                source_list = await _instances(src, uid)
                return Planned(plan_study(uid, source_list, [], strategy, study), source_list)
            series = narrowed.get(uid)  # None: a study-level conflict, or no series counts
            if series == []:  # every series count matches after all
                return Planned(in_sync(study), [], by_counts=True)
            source_list, dest_list = await asyncio.gather(
                _instances(src, uid, series or ()), _instances(dst, uid, series or ())
            )
        plan = plan_study(uid, source_list, dest_list, strategy, study, theirs)
        if series:  # narrowed to some series: the study's own count is the source's size
            plan = replace(plan, source_count=study.instance_count or plan.source_count)
        return Planned(plan, source_list, tuple(series or ()))

    # settled by study counts with no task and no plan each (most studies, at scale); up to
    # LIST_EVERY_STUDY_UP_TO studies each still gets its line in the result
    listing = len(studies) <= LIST_EVERY_STUDY_UP_TO
    rest: list[StudyRecord] = []
    agreeing: list[str] = []  # held alike at study level: series counts may narrow them
    slots: list[Planned | None] = []  # None: compared below
    for study in studies:
        theirs = held.get(study.study_uid)
        if theirs is not None and not differing(study, theirs, STUDY_FIELDS):
            if same_counts(study, theirs):
                if listing:
                    slots.append(Planned(in_sync(study), [], by_counts=True))
                continue
            agreeing.append(study.study_uid)
        rest.append(study)
        slots.append(None)
    narrowed = await differing_series(src, dst, agreeing)  # in batches of studies
    compared = await asyncio.gather(*(plan_one(s) for s in rest))
    found = iter(compared)
    planned = [p if p is not None else next(found) for p in slots]
    # settled by counts: at study level, or at series level once compared
    settled = len(studies) - len(rest) + sum(p.by_counts for p in compared)
    await job.checkpoint()
    total = sum(len(p.plan.to_send) for p in planned) or 1
    done = 0

    async def tick(n: int) -> None:
        nonlocal done
        done += n
        await job.progress(0.05 + 0.85 * done / total, "transfer", f"{done}/{total} instances")
        await job.checkpoint()

    # every study's instances through one transfer pipeline: a store batch may hold
    # instances of several studies, so many small studies cost few requests
    shipments = [
        Shipment(p.plan.study_uid, p.plan.to_send, p.plan.whole_series)
        for p in planned
        if p.plan.to_send and not dry_run
    ]
    moved = await transfer(src, dst, shipments, tick=tick) if shipments else Moved({})
    gate = asyncio.Semaphore(STUDY_CONCURRENCY)

    async def settle(item: Planned) -> dict[str, Any]:
        """The outcome of one study: what was sent, then verified."""
        plan, source_list = item.plan, item.source_list
        outcome = _outcome(plan)
        if item.by_counts:
            outcome["comparedBy"] = "counts"
            if verify and not dry_run:
                outcome.update(missingAfter=0, extraInDestination=0, verified=True)
            return outcome
        sent = moved.per_study.get(plan.study_uid)
        if sent is not None:
            outcome.update(transferred=sent.stored, failed=sent.failed, bytes=sent.bytes)
            metrics.sync_transferred(spec.source, spec.destination, sent.stored, sent.bytes)
            if moved.stopped is not None and sent.stored + sent.failed < len(plan.to_send):
                outcome["outcome"] = "CANCELLED"  # stopped before all of it was sent
                return outcome
        if verify and not dry_run and not plan.skipped:
            async with gate:
                now_held = await _instances(dst, plan.study_uid, item.series)
            outcome["missingAfter"] = missing_after(source_list, now_held)
            outcome["extraInDestination"] = extra_in(source_list, now_held)
            outcome["verified"] = outcome["missingAfter"] == 0 and not outcome["failed"]
        return outcome

    outcomes: list[dict[str, Any]] = list(await asyncio.gather(*(settle(p) for p in planned)))
    if moved.stopped is not None and not isinstance(moved.stopped, JobCancelled):
        raise moved.stopped  # e.g. the lease was lost: the runner decides
    if moved.stopped is not None:  # cancelled between stored batches: say how far it got
        seconds = time.monotonic() - start
        result = _result(spec, outcomes, not_found, dry_run, False, seconds, settled)
        await _record(runtime, job.id, spec, outcomes)
        raise JobCancelled(str(moved.stopped), result) from None
    await job.progress(0.95, "record", "recording the outcome")
    result = _result(spec, outcomes, not_found, dry_run, verify, time.monotonic() - start, settled)
    await _record(runtime, job.id, spec, outcomes)
    unsynced = sum(o["missingAfter"] or 0 for o in outcomes if o["outcome"] != "SKIPPED")
    if verify and not dry_run:
        metrics.sync_verified(spec.source, spec.destination, unsynced)
    if verify and not dry_run and unsynced:
        raise JobError(f"{unsynced} instance(s) still missing after sync", result)
    if cursor is not None and not dry_run:
        await save_cursor(runtime, spec.source, spec.destination, cursor)
    if spec.periodic and not dry_run:
        metrics.sync_periodic_success(spec.source, spec.destination)
    return result


@dataclass(frozen=True, slots=True)
class Planned:
    """A study's plan, the source instances it was made from (only those of `series` when
    the comparison was narrowed to them) and whether counts alone settled it."""

    plan: StudyPlan
    source_list: list[InstanceRecord]
    series: tuple[str, ...] = ()
    by_counts: bool = False


def same_counts(mine: StudyRecord, theirs: StudyRecord) -> bool:
    """Both archives report the same series and instance counts for a study (with no
    study attribute differing, it is taken as in sync without listing its instances)."""
    counts = (mine.series_count, mine.instance_count, theirs.series_count, theirs.instance_count)
    return None not in counts and (mine.series_count, mine.instance_count) == (
        theirs.series_count,
        theirs.instance_count,
    )


def in_sync(study: StudyRecord) -> StudyPlan:
    """The plan of a study both archives hold alike: nothing to send."""
    return StudyPlan(study.study_uid, study.instance_count or 0, ())


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
    spec: SyncSpec,
    outcomes: list[dict[str, Any]],
    not_found: list[str],
    dry_run: bool,
    verify: bool,
    seconds: float,
    settled: int = 0,
) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(o.get(key) or 0) for o in outcomes)

    return {
        "from": spec.source,
        "to": spec.destination,
        "dryRun": dry_run,
        "conflictStrategy": spec.conflict_strategy.value,
        "studies": outcomes,
        "studiesNotFound": not_found,
        "studiesInSync": settled,  # settled by counts (listed in `studies` up to 1,000 studies)
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
    runtime: Runtime, job_id: str, spec: SyncSpec, outcomes: list[dict[str, Any]]
) -> None:
    """One sync_runs row per study; a re-run of the job replaces its rows."""
    async with runtime.sessions() as session, session.begin():
        await session.execute(delete(SyncRun).where(SyncRun.job_id == job_id))
        for o in outcomes:
            if o.get("comparedBy") == "counts":
                continue  # nothing happened to it: no history row
            session.add(
                SyncRun(
                    job_id=job_id,
                    source=spec.source,
                    destination=spec.destination,
                    study_uid=o["studyInstanceUid"],
                    outcome="DRY_RUN" if spec.dry_run else o["outcome"],
                    instances_transferred=o["transferred"] or 0,
                    instances_skipped=o["skipped"],
                    bytes=o["bytes"],
                    verified=bool(o["verified"]),
                    missing_after=int(o["missingAfter"] or 0),
                    detail={"conflicts": o["conflicts"], "fields": o["conflictFields"]},
                    finished_at=utcnow(),
                )
            )
