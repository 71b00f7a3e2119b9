"""arq worker settings: startup builds the runtime, then reconciles and schedules.

Background tasks of every worker: reconciliation (jobs the DB says are active
but no queue or live worker holds are re-enqueued: a killed worker, a Redis
restart), the periodic `[[sync]]` pairs, and, with `rtstruct_auto`, new
structure sets (one worker of many starts each periodic task). Each worker serves its
own Prometheus `/metrics` on `[metrics] worker_port` (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from arq.connections import RedisSettings

from gateway import __version__
from gateway.auth.syslog import Forwarder, Target
from gateway.core.enums import JobKind, JobStatus, SourceRole
from gateway.core.errors import SourceError
from gateway.core.settings import Settings
from gateway.core.timing import as_utc
from gateway.index.refresh import Refreshed, refresh
from gateway.jobs.queue import Keys
from gateway.jobs.service import JobService
from gateway.jobs.specs import SyncSpec
from gateway.metrics import record as metrics
from gateway.metrics.expose import WorkerEndpoint
from gateway.runtime import Runtime
from workers.jobs import RUNNERS, rtstruct
from workers.runner import run_job

log = logging.getLogger(__name__)
RECONCILE_EVERY_S = 2.0
POLL_DELAY_S = 0.05  # how often an idle worker looks at the queue: a job starts this soon
SYSLOG_EVERY_S = 1.0  # audit events reach syslog within about this


async def ping(ctx: dict[str, Any]) -> str:
    """A no-op job to check that workers are consuming the queue."""
    return "pong"


async def _every(seconds: float, name: str, fn: Any) -> None:
    while True:
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the loop alive; the next pass retries
            log.warning("%s: %s", name, type(exc).__name__)
        await asyncio.sleep(seconds)


async def reconcile(service: JobService) -> list[str]:
    """One reconciliation pass; its re-queues and the queue depth per kind are metrics."""
    fixed = await service.reconcile()
    metrics.requeued(len(fixed))
    metrics.jobs_queued(await service.store.queued_by_kind())
    return fixed


async def last_periodic_syncs(runtime: Runtime, service: JobService) -> None:
    """Start each pair's last-success metric from the database, so a restarted worker
    still tells how long ago its pair last synced; a pair with no success on record starts
    at now (the alert then fires if none succeeds within three intervals)."""
    pairs = {(p.source, p.destination) for p in runtime.settings.sync}
    for pair in pairs:
        metrics.sync_periodic_success(*pair)
    for input, at in await service.store.succeeded_recently(JobKind.SYNC, "scheduler"):
        pair = (str(input.get("from")), str(input.get("to")))
        if pair in pairs and input.get("periodic"):
            pairs.discard(pair)
            metrics.sync_periodic_success(*pair, at=as_utc(at).timestamp())


async def periodic_sync(runtime: Runtime, service: JobService) -> None:
    """Submit one SYNC job per `[[sync]]` pair, from one worker per interval."""
    settings = runtime.settings
    lock = runtime.keys.tick("sync")
    interval_ms = int(settings.sync_interval_s * 1000)
    if not settings.sync or not await runtime.redis.set(lock, "1", nx=True, px=interval_ms):
        return
    for pair in settings.sync:
        spec = SyncSpec(source=pair.source, destination=pair.destination, all=True, periodic=True)
        await service.submit(spec, "scheduler")


async def refresh_indexes(runtime: Runtime) -> list[Refreshed]:
    """Bring every built key index up to date, from one worker per interval."""
    settings = runtime.settings
    lock = runtime.keys.tick("index")
    if not await runtime.redis.set(lock, "1", nx=True, px=int(settings.index_interval_s * 1000)):
        return []
    done: list[Refreshed] = []
    for source_id in settings.ids_with_role(SourceRole.QUERY):
        try:
            found = await refresh(
                runtime.sessions, runtime.sources[source_id], settings.index_reconcile_s
            )
        except SourceError as exc:  # this archive is away: the others still refresh
            log.warning("index of %s not refreshed: %s", source_id, type(exc).__name__)
            continue
        if found is not None:
            done.append(found)
    return done


async def watch_rtstructs(runtime: Runtime, service: JobService) -> int:
    """Submit an RTSTRUCT job for each structure set not processed yet; how many were new.

    One worker of many scans per interval; series already in a job are skipped.
    """
    lock = runtime.keys.tick("rtstruct")
    every_ms = int(runtime.settings.rtstruct_poll_s * 1000)
    if not await runtime.redis.set(lock, "1", nx=True, px=every_ms):
        return 0
    seen: set[str] = set()
    busy: set[str] = set()  # studies a whole-study job is still working on
    for status, asked, result in await service.store.of_kind(JobKind.RTSTRUCT):
        if asked.get("seriesInstanceUid"):
            seen.add(str(asked["seriesInstanceUid"]))
        elif status in (JobStatus.QUEUED, JobStatus.RUNNING):
            busy.add(str(asked.get("studyInstanceUid")))
        for part in result.get("structureSets") or [result]:
            if part.get("seriesInstanceUid"):
                seen.add(str(part["seriesInstanceUid"]))
    submitted = 0
    for cfg in runtime.settings.sources:
        if not (cfg.has_role("query") and cfg.has_role("retrieve")):
            continue
        for spec in await rtstruct.discover(runtime, cfg.id, seen):
            if spec.study_uid in busy:
                continue  # found again once that job has finished
            await service.submit(spec, "watcher")
            seen.add(spec.series_uid or "")
            submitted += 1
    return submitted


async def start_metrics(runtime: Runtime, service: JobService) -> WorkerEndpoint | None:
    """This worker's `/metrics` endpoint (None when off or its port is taken)."""
    settings = runtime.settings
    if not settings.metrics.enabled:
        return None
    metrics.process("worker", __version__)
    periodic = settings.sync_interval_s if settings.sync else 0.0
    metrics.sync_interval(periodic)
    if periodic > 0:
        with contextlib.suppress(Exception):  # a database hiccup: the next success sets it
            await last_periodic_syncs(runtime, service)
    if settings.metrics.worker_port == 0:
        return None
    endpoint = WorkerEndpoint(settings.metrics)
    return endpoint if await endpoint.start() else None


def worker_settings(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `arq.worker.Worker`, bound to `settings`."""
    keys = Keys.for_database(settings.database_url)

    async def startup(ctx: dict[str, Any]) -> None:
        runtime = await Runtime.create(settings)
        service = runtime.job_service()
        ctx.update(
            runtime=runtime,
            runners=dict(RUNNERS),
            worker_token=uuid.uuid4().hex,
            metrics_endpoint=await start_metrics(runtime, service),
        )
        tasks = [
            asyncio.create_task(_every(RECONCILE_EVERY_S, "reconcile", lambda: reconcile(service)))
        ]
        if settings.sync and settings.sync_interval_s > 0:
            sync = asyncio.create_task(
                _every(settings.sync_interval_s, "sync", lambda: periodic_sync(runtime, service))
            )
            tasks.append(sync)
        if settings.index_interval_s > 0:
            tasks.append(
                asyncio.create_task(
                    _every(settings.index_interval_s, "index", lambda: refresh_indexes(runtime))
                )
            )
        if settings.auth.audit_syslog:
            forwarder = Forwarder(
                runtime.sessions,
                runtime.redis,
                runtime.keys.audit_syslog,
                runtime.keys.tick("audit-syslog"),
                Target.parse(settings.auth.audit_syslog),
                settings.auth.audit_syslog_facility,
            )
            ctx["syslog"] = forwarder
            tasks.append(
                asyncio.create_task(_every(SYSLOG_EVERY_S, "audit-syslog", forwarder.forward))
            )
        if settings.rtstruct_auto:
            watch = asyncio.create_task(
                _every(
                    settings.rtstruct_poll_s, "rtstruct", lambda: watch_rtstructs(runtime, service)
                )
            )
            tasks.append(watch)
        ctx["background"] = tasks

    async def shutdown(ctx: dict[str, Any]) -> None:
        for task in ctx.get("background", []):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        forwarder: Forwarder | None = ctx.get("syslog")
        if forwarder is not None:
            forwarder.close()
        endpoint: WorkerEndpoint | None = ctx.get("metrics_endpoint")
        if endpoint is not None:
            await endpoint.aclose()
        runtime: Runtime | None = ctx.get("runtime")
        if runtime is not None:
            await runtime.aclose()

    return {
        "functions": [run_job, ping],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": keys.queue,
        "max_jobs": 4,
        "poll_delay": POLL_DELAY_S,
        "job_timeout": 24 * 3600,
        "keep_result": 0,
        "max_tries": 1000,
        "handle_signals": True,
    }
