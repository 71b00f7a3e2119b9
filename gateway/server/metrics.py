"""`GET /metrics` of the gateway: Prometheus text format, no user token, allow-listed.

Prometheus scrapes without a token, so the route is outside authentication and is
refused (403) to any client address outside `[metrics] allow` (loopback by default).
A scrape also starts a health check of every archive, the database and Redis in the
background (at most every `health_check_min_s`), so `archive_up` follows the archives
without traffic of its own when nobody scrapes; the values served are the last check's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway.core.settings import MetricsConfig
from gateway.metrics.expose import render
from gateway.runtime import Runtime


class MetricsEndpoint:
    """The /metrics route; `aclose` in the app's lifespan stops a check still running."""

    def __init__(self, config: MetricsConfig, runtime_of: Any) -> None:
        self.config = config
        self._runtime_of = runtime_of
        self._checked_at = -float("inf")
        self._check: asyncio.Task[Any] | None = None

    async def serve(self, request: Request) -> Response:
        """Serve this process's metrics to an allowed address; 403 to any other."""
        if not self.config.allows(request.client.host if request.client else None):
            return PlainTextResponse("forbidden: address not in [metrics] allow\n", 403)
        self._start_health_check(self._runtime_of(request))
        body, kind = render()
        return Response(body, headers={"Content-Type": kind})

    def _start_health_check(self, runtime: Runtime) -> None:
        now = time.monotonic()
        if self._check is not None and not self._check.done():
            return
        if now - self._checked_at < self.config.health_check_min_s:
            return
        self._checked_at = now
        self._check = asyncio.create_task(runtime.health())
        self._check.add_done_callback(_consume)

    async def aclose(self) -> None:
        """Cancel a health check still running (the runtime is closing)."""
        if self._check is not None and not self._check.done():
            self._check.cancel()
            with contextlib.suppress(BaseException):
                await self._check


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed check is simply no new values
