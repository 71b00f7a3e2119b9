"""Long-lived resources shared by the gateway app and the workers.

Created once in the app's lifespan or the worker's startup, never at import
time: the database engine, the Redis client and one adapter per source.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from gateway import __version__
from gateway.auth.audit import AuditWriter
from gateway.auth.epoch import SharedEpoch
from gateway.auth.service import AuthService
from gateway.core.errors import SourceError
from gateway.core.logs import quiet_libraries
from gateway.core.settings import Settings
from gateway.core.timing import elapsed_ms
from gateway.db.engine import make_engine, migrate, ping, sessionmaker
from gateway.jobs.events import EventHub
from gateway.jobs.queue import Keys
from gateway.jobs.service import JobService
from gateway.jobs.store import JobStore
from gateway.metrics import record as metrics
from gateway.sources.base import PacsSource
from gateway.sources.registry import build_source


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one health check; `error` never holds patient data."""

    up: bool
    latency_ms: float | None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON form for /health."""
        return {"up": self.up, "latencyMs": self.latency_ms, "error": self.error}


@dataclass
class Runtime:
    """Settings plus the clients built from them."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker
    redis: ArqRedis
    keys: Keys
    sources: dict[str, PacsSource]
    started_at: float = field(default_factory=time.monotonic)
    _cpu_pool: Executor | None = None
    auth: AuthService = field(init=False)
    audit: AuditWriter = field(init=False)
    events: EventHub = field(init=False)  # one Redis subscription for every listener
    cursor_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        epoch = SharedEpoch(self.redis, self.keys.auth_epoch)
        self.auth = AuthService(self.sessions, self.settings.auth, epoch)
        self.audit = AuditWriter(self.sessions)
        self.events = EventHub(self.redis, self.keys.all_events)
        configured = self.settings.cursor_key
        # one key for every gateway sharing GATEWAY_CURSOR_KEY; else this process's own
        self.cursor_key = (
            hashlib.sha256(b"pacs-gateway/cursor\x00" + configured.encode()).digest()
            if configured
            else os.urandom(32)
        )

    @classmethod
    async def create(cls, settings: Settings, run_migrations: bool = True) -> Runtime:
        """Build every client; apply migrations first when asked."""
        metrics.configure(settings.metrics.enabled)
        if run_migrations:
            await migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        pool = ConnectionPool.from_url(
            settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        keys = Keys.for_database(settings.database_url)
        redis = ArqRedis(pool, default_queue_name=keys.queue)
        sources = {cfg.id: build_source(cfg) for cfg in settings.sources}
        return cls(settings, engine, sessionmaker(engine), redis, keys, sources)

    def job_service(self) -> JobService:
        """Job operations over this runtime's database and Redis."""
        return JobService(
            JobStore(self.sessions), self.redis, self.keys, self.settings.max_queued_jobs_per_user
        )

    def cpu_pool(self) -> Executor:
        """The process pool for CPU-heavy DICOM work, created on first use."""
        if self._cpu_pool is None:
            self._cpu_pool = ProcessPoolExecutor(
                max_workers=max(1, min(4, os.cpu_count() or 1)), initializer=quiet_libraries
            )
        return self._cpu_pool

    async def aclose(self) -> None:
        """Close every client (queued audit events are written first)."""
        with contextlib.suppress(Exception):
            await self.audit.aclose()
        await self.events.aclose()
        if self._cpu_pool is not None:
            self._cpu_pool.shutdown(wait=False, cancel_futures=True)
        for source in self.sources.values():
            with contextlib.suppress(Exception):
                await source.aclose()
        with contextlib.suppress(Exception):
            await self.redis.aclose(close_connection_pool=True)
        await self.engine.dispose()

    async def check_source(self, source_id: str) -> Check:
        """Ping one source within its timeout (the outcome is also a metric)."""
        check = await self._ping(source_id)
        seconds = check.latency_ms / 1000 if check.latency_ms is not None else None
        metrics.archive_health(source_id, check.up, seconds)
        return check

    async def _ping(self, source_id: str) -> Check:
        source = self.sources[source_id]
        start = time.perf_counter()
        try:
            latency = await asyncio.wait_for(source.ping(), source.config.timeout_s + 0.5)
        except SourceError as exc:
            return Check(False, elapsed_ms(start), f"{type(exc).__name__}: {exc.detail}")
        except TimeoutError:
            return Check(False, elapsed_ms(start), "SourceTimeout: no answer to ping")
        return Check(True, round(latency, 2))

    async def check_database(self) -> Check:
        """Run `SELECT 1`."""
        start = time.perf_counter()
        try:
            await asyncio.wait_for(ping(self.engine), 5)
        except Exception as exc:  # any driver error means "down"; its text has no patient data
            return Check(False, elapsed_ms(start), type(exc).__name__)
        return Check(True, elapsed_ms(start))

    async def check_redis(self) -> Check:
        """Send PING."""
        start = time.perf_counter()
        try:
            await asyncio.wait_for(self.redis.ping(), 5)
        except (RedisError, OSError, TimeoutError) as exc:
            return Check(False, elapsed_ms(start), type(exc).__name__)
        return Check(True, elapsed_ms(start))

    async def health(self) -> dict[str, Any]:
        """Everything /health reports, checked concurrently."""
        ids = list(self.sources)
        db, redis, *checks = await asyncio.gather(
            self.check_database(), self.check_redis(), *(self.check_source(i) for i in ids)
        )
        sources = [
            {"id": i, "kind": self.sources[i].config.kind, **c.as_json()}
            for i, c in zip(ids, checks, strict=True)
        ]
        metrics.dependency_health("database", db.up)
        metrics.dependency_health("redis", redis.up)
        ok = db.up and redis.up and all(c.up for c in checks)
        return {
            "status": "ok" if ok else "degraded",
            "version": __version__,
            "uptimeSeconds": round(time.monotonic() - self.started_at, 1),
            "database": db.as_json(),
            "redis": redis.as_json(),
            "sources": sources,
        }
