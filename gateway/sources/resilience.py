"""Resilience shared by every adapter: deadline, concurrency, retries, breaker, timing.

An adapter wraps each upstream call in `Guard.call`. The call itself must
already translate library errors into `gateway.core.errors.SourceError`s; the guard
adds one overall deadline per call (covering the wait for a concurrency slot,
every attempt and the backoff between them), retries idempotent reads on
transient errors while time remains, opens the circuit after N consecutive
failures of the source (unreachable, too slow, or answering 5xx/garbage), and
times every call (`CallStats` for the API, `gateway.metrics` for Prometheus).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.core.errors import (
    CircuitOpen,
    SourceError,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.core.settings import SourceConfig
from gateway.metrics import record as metrics
from gateway.metrics import tracing

T = TypeVar("T")
TRANSIENT = (SourceUnavailable, SourceTimeout)


def source_at_fault(err: SourceError) -> bool:
    """True when `err` says the source itself is failing, so it counts towards the breaker.

    Unreachable, too slow, or answering a server error or garbage: yes. An
    answer that faults the request (not found, not supported, credentials
    refused, another 4xx `status`): no, the source is up.
    """
    if isinstance(err, TRANSIENT):
        return True
    if isinstance(err, SourceProtocolError):
        return err.status is None or not 400 <= err.status < 500
    return False


class CircuitBreaker:
    """Closed → open after `threshold` consecutive failures → half-open after `cooldown_s`."""

    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at: float | None = None
        self._probing = False
        self._clock = clock

    @property
    def state(self) -> str:
        """ "closed", "open" or "half-open"."""
        if self.opened_at is None:
            return "closed"
        if self._clock() - self.opened_at >= self.cooldown_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """True when a call may go upstream now (one probe at a time when half-open)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        """Record a success: close the circuit."""
        self.failures = 0
        self.opened_at = None
        self._probing = False

    def release(self) -> None:
        """A call ended without an outcome (cancelled): let the next caller probe."""
        self._probing = False

    def failure(self) -> None:
        """Record a failure: open the circuit at the threshold, or re-open after a failed probe."""
        self.failures += 1
        if self._probing or self.failures >= self.threshold:
            self.opened_at = self._clock()
        self._probing = False


@dataclass
class CallStats:
    """Timing of a source's calls, for the API (latency per source) and metrics."""

    calls: int = 0
    errors: int = 0
    last_ms: float | None = None
    recent_ms: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    by_operation: dict[str, int] = field(default_factory=dict)

    def record(self, operation: str, ms: float, ok: bool) -> None:
        """Add one call's outcome."""
        self.calls += 1
        self.by_operation[operation] = self.by_operation.get(operation, 0) + 1
        if not ok:
            self.errors += 1
        self.last_ms = ms
        self.recent_ms.append(ms)

    def median_ms(self) -> float | None:
        """Median latency of recent calls."""
        if not self.recent_ms:
            return None
        values = sorted(self.recent_ms)
        return values[len(values) // 2]


class Guard:
    """Deadline, bounded concurrency, retries, circuit breaker and timing for one source."""

    def __init__(self, config: SourceConfig, backoff_s: float = 0.1) -> None:
        self.source = config.id
        self.timeout_s = config.timeout_s
        self.retries = config.retries
        self.backoff_s = backoff_s
        self.semaphore = asyncio.Semaphore(config.max_concurrency)
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_s)
        self.stats = CallStats()
        metrics.watch_breaker(self.source, self.breaker)

    async def call(
        self,
        operation: str,
        fn: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = True,
        timeout_s: float | None = None,
    ) -> T:
        """Run `fn` under the guard within one deadline (`timeout_s`, default the source's).

        The deadline covers waiting for a concurrency slot, every attempt and
        the backoff between them; a retry starts only while time remains.
        Raises only `SourceError`s. One trace span covers the call, retries included.
        """
        label = metrics.operation_label(operation)
        attributes = {"pacs.source": self.source, "pacs.operation": label}
        with tracing.span(f"archive {label}", attributes):
            return await self._call(operation, fn, idempotent, timeout_s)

    async def _call(
        self,
        operation: str,
        fn: Callable[[], Awaitable[T]],
        idempotent: bool,
        timeout_s: float | None,
    ) -> T:
        budget = timeout_s if timeout_s is not None else self.timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            if self.breaker.state == "open":
                raise self._open(operation)
            start = time.perf_counter()
            upstream = False
            try:
                async with asyncio.timeout_at(deadline), self.semaphore:
                    if not self.breaker.allow():  # another caller is probing
                        raise self._open(operation)
                    upstream = True
                    result = await fn()
            except TimeoutError:
                where = "no answer" if upstream else "no free connection slot"
                err: SourceError = SourceTimeout(
                    self.source, f"{operation}: {where} within {budget:g}s"
                )
            except SourceError as exc:
                if not upstream:
                    raise
                err = exc
            except asyncio.CancelledError:  # the caller gave up: no outcome, but no stuck probe
                if upstream:
                    self._timed(operation, start, "CANCELLED")
                    self.breaker.release()
                raise
            else:
                self._timed(operation, start, None)
                self.breaker.success()
                return result
            self._timed(operation, start, err.code)
            if upstream:
                if source_at_fault(err):
                    self.breaker.failure()
                else:
                    self.breaker.success()  # the source answered; the request was at fault
            delay = self.backoff_s * (2**attempt)
            last = attempt == attempts - 1
            if not isinstance(err, TRANSIENT) or last or deadline - loop.time() <= delay:
                raise err
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _timed(self, operation: str, start: float, error_code: str | None) -> None:
        """Record one attempt's outcome: `error_code` None when it succeeded."""
        seconds = time.perf_counter() - start
        self.stats.record(operation, seconds * 1000, ok=error_code is None)
        metrics.archive_call(self.source, operation, seconds, error_code)

    def _open(self, operation: str) -> CircuitOpen:
        metrics.archive_refused(self.source, CircuitOpen.code)
        return CircuitOpen(self.source, f"{operation}: circuit open after repeated failures")
