"""Every metric object, with its labels; `docs/operations.md` says what each is for.

The objects live in prometheus_client's default registry (one per process). Series
appear as they are first observed, except where a fixed vocabulary is set up front.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # no `_created` series: a third fewer series, nothing lost

PREFIX = "pacs_gateway"
FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLOW = (0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)

# --- the process
INFO = Gauge(
    f"{PREFIX}_info", "Always 1; the version and the role of this process", ["version", "role"]
)

# --- archives (every upstream call goes through `gateway.sources.resilience.Guard`)
ARCHIVE_SECONDS = Histogram(
    f"{PREFIX}_archive_request_seconds",
    "Duration of one upstream call attempt to an archive, by operation",
    ["source", "operation"],
    buckets=FAST,
)
ARCHIVE_ERRORS = Counter(
    f"{PREFIX}_archive_errors",
    "Failed archive calls by error class (timeout, unavailable, protocol, ...)",
    ["source", "class"],
)
ARCHIVE_BREAKER = Gauge(
    f"{PREFIX}_archive_breaker_state",
    "Circuit breaker of an archive: 0 closed, 1 half-open, 2 open",
    ["source"],
)
ARCHIVE_UP = Gauge(
    f"{PREFIX}_archive_up", "1 when the archive answered the last health check", ["source"]
)
ARCHIVE_PING_SECONDS = Gauge(
    f"{PREFIX}_archive_ping_seconds", "Latency of the last health check of an archive", ["source"]
)
DEPENDENCY_UP = Gauge(
    f"{PREFIX}_dependency_up",
    "1 when the database or Redis answered the last health check",
    ["dependency"],
)

# --- the GraphQL API
GRAPHQL_SECONDS = Histogram(
    f"{PREFIX}_graphql_operation_seconds",
    "Duration of a GraphQL query or mutation, by operation name (anonymous grouped)",
    ["operation", "type"],
    buckets=FAST,
)
GRAPHQL_ERRORS = Counter(f"{PREFIX}_graphql_errors", "GraphQL errors by extensions.code", ["code"])
GRAPHQL_REFUSED = Counter(
    f"{PREFIX}_graphql_refused",
    "Operations refused before or instead of running, by reason (the error code)",
    ["reason"],
)
WEBSOCKETS = Gauge(f"{PREFIX}_websocket_connections", "Open GraphQL WebSocket connections")
SUBSCRIPTIONS = Gauge(f"{PREFIX}_graphql_subscriptions", "Active GraphQL subscriptions")

# --- jobs
JOBS_SUBMITTED = Counter(f"{PREFIX}_jobs_submitted", "Jobs created, by kind", ["kind"])
JOBS_FINISHED = Counter(
    f"{PREFIX}_jobs_finished",
    "Jobs that reached a final state, by kind and status (SUCCEEDED, FAILED, CANCELLED)",
    ["kind", "status"],
)
JOB_SECONDS = Histogram(
    f"{PREFIX}_job_duration_seconds",
    "From a job's (last) start to its final state, by kind",
    ["kind"],
    buckets=SLOW,
)
JOBS_RUNNING = Gauge(f"{PREFIX}_jobs_running", "Jobs this worker is running, by kind", ["kind"])
JOBS_QUEUED = Gauge(
    f"{PREFIX}_jobs_queued",
    "Jobs waiting in the queue, by kind (from the database, every reconciliation pass)",
    ["kind"],
)
REQUEUES = Counter(f"{PREFIX}_reconciler_requeues", "Jobs the reconciler put back on the queue")

# --- sync and de-identification
SYNC_INSTANCES = Counter(
    f"{PREFIX}_sync_instances_transferred",
    "Instances a sync stored in the destination",
    ["source", "destination"],
)
SYNC_BYTES = Counter(
    f"{PREFIX}_sync_bytes_transferred",
    "Bytes a sync stored in the destination",
    ["source", "destination"],
)
SYNC_MISSING = Gauge(
    f"{PREFIX}_sync_missing_after_verify",
    "Instances still missing in the destination after the pair's last verified sync",
    ["source", "destination"],
)
SYNC_LAST_SUCCESS = Gauge(
    f"{PREFIX}_sync_last_success_timestamp_seconds",
    "When the periodic sync of a [[sync]] pair last succeeded (Unix time)",
    ["source", "destination"],
)
SYNC_INTERVAL = Gauge(
    f"{PREFIX}_sync_interval_seconds", "The configured periodic sync interval (0: off)"
)
DEID_QUARANTINED = Counter(
    f"{PREFIX}_deid_quarantined",
    "Instances de-identification held back (possible burned-in text), by destination",
    ["destination"],
)
