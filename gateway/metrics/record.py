"""What the code calls to count and time: one function per event, a no-op when off.

Every label value passes through a bounded vocabulary here, whatever the caller sends:
operation names must look like identifiers, job kinds and statuses are the enums,
GraphQL operation names are capped per process. Sources and sync pairs are config ids.
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Protocol

from gateway.core.enums import JobKind, JobStatus
from gateway.metrics import families as f

ANONYMOUS = "anonymous"
OTHER = "other"
MAX_OPERATION_NAMES = 100  # distinct GraphQL operation names per process; then "other"
_OPERATION = re.compile(r"[a-z][a-z0-9_]{0,39}")
_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_KINDS = frozenset(k.value for k in JobKind)
_STATUSES = frozenset(s.value for s in JobStatus)
_ERROR_CLASSES = {
    "SOURCE_TIMEOUT": "timeout",
    "SOURCE_UNAVAILABLE": "unavailable",
    "CIRCUIT_OPEN": "circuit_open",
    "SOURCE_PROTOCOL_ERROR": "protocol",
    "SOURCE_AUTH_ERROR": "auth",
    "NOT_FOUND": "not_found",
    "NOT_SUPPORTED": "not_supported",
    "CANCELLED": "cancelled",  # the caller gave up waiting (its own deadline)
}
_BREAKER_VALUES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,39}")


class HasState(Protocol):
    """A circuit breaker, as far as metrics see it."""

    @property
    def state(self) -> str:
        """ "closed", "half-open" or "open"."""
        ...


class _State:
    on = True
    operation_names: set[str] = set()  # noqa: RUF012 - one set per process, by design
    breakers: dict[str, weakref.ref[HasState]] = {}  # noqa: RUF012


def configure(enabled: bool) -> None:
    """Turn recording on or off for this process (`[metrics] enabled`)."""
    _State.on = enabled


def enabled() -> bool:
    """Whether this process records metrics."""
    return _State.on


def process(role: str, version: str) -> None:
    """Say what this process is (`pacs_gateway_info`)."""
    if _State.on:
        f.INFO.labels(version=version, role=role).set(1)


def operation_label(operation: str) -> str:
    """An adapter's operation name, or "other" when it does not look like one."""
    return operation if _OPERATION.fullmatch(operation) else OTHER


def kind_label(kind: str) -> str:
    """A job kind, or "other"."""
    return kind if kind in _KINDS else OTHER


def error_class(code: str) -> str:
    """The class of an archive error from its code (`SourceError.code`)."""
    return _ERROR_CLASSES.get(code, OTHER)


# --- archives


def archive_call(source: str, operation: str, seconds: float, error_code: str | None) -> None:
    """One upstream attempt: its duration, and its error class when it failed."""
    if not _State.on:
        return
    f.ARCHIVE_SECONDS.labels(source, operation_label(operation)).observe(seconds)
    if error_code is not None:
        f.ARCHIVE_ERRORS.labels(source, error_class(error_code)).inc()


def archive_refused(source: str, error_code: str) -> None:
    """A call that never went upstream (circuit open)."""
    if _State.on:
        f.ARCHIVE_ERRORS.labels(source, error_class(error_code)).inc()


def watch_breaker(source: str, breaker: HasState) -> None:
    """Report `breaker`'s state as the source's (the newest breaker of a source wins)."""
    _State.breakers[source] = weakref.ref(breaker)


def archive_health(source: str, up: bool, seconds: float | None) -> None:
    """The outcome of one health check of an archive."""
    if not _State.on:
        return
    f.ARCHIVE_UP.labels(source).set(1.0 if up else 0.0)
    if up and seconds is not None:
        f.ARCHIVE_PING_SECONDS.labels(source).set(seconds)


def dependency_health(dependency: str, up: bool) -> None:
    """The outcome of one health check of the database or Redis."""
    if _State.on:
        f.DEPENDENCY_UP.labels(dependency).set(1.0 if up else 0.0)


def refresh() -> None:
    """Bring values read at scrape time up to date (breaker states change with time)."""
    for source, ref in list(_State.breakers.items()):
        breaker = ref()
        if breaker is None:
            continue
        f.ARCHIVE_BREAKER.labels(source).set(_BREAKER_VALUES.get(breaker.state, 0.0))


# --- GraphQL


def graphql_name(name: str | None) -> str:
    """The label of a GraphQL operation name: anonymous, the name, or "other" past the cap."""
    if not name:
        return ANONYMOUS
    if not _GRAPHQL_NAME.fullmatch(name):
        return OTHER
    names = _State.operation_names
    if name not in names:
        if len(names) >= MAX_OPERATION_NAMES:
            return OTHER
        names.add(name)
    return name


def graphql_operation(name: str | None, type_: str, seconds: float | None) -> None:
    """One finished GraphQL operation and its duration (None: not timed)."""
    if _State.on and seconds is not None:
        f.GRAPHQL_SECONDS.labels(graphql_name(name), type_).observe(seconds)


def graphql_errors(codes: Iterable[str], refused: str | None = None) -> None:
    """The errors of one operation by code, and the reason it was refused, if it was."""
    if not _State.on:
        return
    for code in codes:
        f.GRAPHQL_ERRORS.labels(code_label(code)).inc()
    if refused is not None:
        f.GRAPHQL_REFUSED.labels(code_label(refused)).inc()


def code_label(code: str) -> str:
    """An error code (`extensions.code`), or "other" when it does not look like one."""
    return code if _CODE.fullmatch(code) else OTHER


def websocket(delta: int) -> None:
    """A GraphQL WebSocket opened (+1) or closed (-1)."""
    if _State.on:
        f.WEBSOCKETS.inc(delta)


def subscription(delta: int) -> None:
    """A subscription started (+1) or ended (-1)."""
    if _State.on:
        f.SUBSCRIPTIONS.inc(delta)


# --- jobs


def job_submitted(kind: str) -> None:
    """A new job row."""
    if _State.on:
        f.JOBS_SUBMITTED.labels(kind_label(kind)).inc()


def job_finished(kind: str, status: str, seconds: float | None) -> None:
    """A job reached a final state; `seconds` from its last start (None: never started)."""
    if not _State.on:
        return
    label = kind_label(kind)
    f.JOBS_FINISHED.labels(label, status if status in _STATUSES else OTHER).inc()
    if seconds is not None:
        f.JOB_SECONDS.labels(label).observe(max(0.0, seconds))


def job_running(kind: str, delta: int) -> None:
    """This worker started (+1) or stopped (-1) running a job."""
    if _State.on:
        f.JOBS_RUNNING.labels(kind_label(kind)).inc(delta)


def jobs_queued(counts: Mapping[str, int]) -> None:
    """Queued jobs per kind, as the database says (every kind reported, 0 when none)."""
    if not _State.on:
        return
    for kind in sorted(_KINDS):
        f.JOBS_QUEUED.labels(kind).set(counts.get(kind, 0))


def requeued(count: int) -> None:
    """The reconciler put `count` jobs back on the queue."""
    if _State.on and count:
        f.REQUEUES.inc(count)


def sync_interval(seconds: float) -> None:
    """The configured periodic sync interval."""
    if _State.on:
        f.SYNC_INTERVAL.set(seconds)


def sync_transferred(source: str, destination: str, instances: int, size: int) -> None:
    """A sync stored `instances` instances (`size` bytes) in the destination."""
    if _State.on:
        f.SYNC_INSTANCES.labels(source, destination).inc(instances)
        f.SYNC_BYTES.labels(source, destination).inc(size)


def sync_verified(source: str, destination: str, missing: int) -> None:
    """What a verified sync found still missing in the destination."""
    if _State.on:
        f.SYNC_MISSING.labels(source, destination).set(missing)


def sync_periodic_success(source: str, destination: str, at: float | None = None) -> None:
    """The periodic sync of a pair succeeded (at Unix time `at`, default now)."""
    if _State.on:
        f.SYNC_LAST_SUCCESS.labels(source, destination).set(time.time() if at is None else at)


def deid_quarantined(destination: str, count: int = 1) -> None:
    """De-identification held back `count` instances bound for `destination`."""
    if _State.on and count:
        f.DEID_QUARANTINED.labels(destination).inc(count)
