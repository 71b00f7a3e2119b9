"""The gateway's own error tree.

Adapters translate every library error (httpx, pynetdicom, redis, pydicom) into
one of these at the edge. Messages never contain patient data: they name the
source, the operation and the technical cause only.

    GatewayError
    ├── ConfigError            bad configuration file or environment
    ├── InvalidInput           a mutation's input is refused (BAD_USER_INPUT)
    │   ├── TooLarge           an upload beyond its configured bound (PAYLOAD_TOO_LARGE, 413)
    │   └── QuotaExceeded      the caller has as many queued jobs as allowed (QUOTA_EXCEEDED)
    ├── Unauthenticated        no valid token (UNAUTHENTICATED)
    ├── Forbidden              the caller's roles do not allow it (FORBIDDEN)
    ├── AuditUnavailable       the audit trail cannot keep up; identity is not served
    ├── JobError               a job failed for good (not retried)
    │   └── JobCancelled       a job stopped at a safe point on request
    └── SourceError            anything a PACS call can fail with
        ├── SourceUnavailable  connection refused, DNS, circuit open
        │   └── CircuitOpen    failing fast during a breaker cool-down
        ├── SourceTimeout      connect, read or overall deadline exceeded
        ├── SourceProtocolError  unexpected status, garbage body, bad DICOM
        ├── AuthError          credentials refused (after one token renewal)
        ├── NotFound           the UID is unknown to this source
        └── NotSupported       the source cannot do this operation
"""

from __future__ import annotations

from typing import Any

SHOWN_CHARS = 64


def shown(value: object) -> str:
    """`repr(value)` cut to a few dozen characters: an error names what it refuses without
    echoing a long (possibly abusive) input back."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    code = "GATEWAY_ERROR"


class ConfigError(GatewayError):
    """The configuration is invalid; the message names the key."""

    code = "CONFIG_ERROR"


class InvalidInput(GatewayError):
    """A request's input is refused; the message says which field and why."""

    code = "BAD_USER_INPUT"


class TooLarge(InvalidInput):
    """An upload is larger than its configured bound (HTTP 413)."""

    code = "PAYLOAD_TOO_LARGE"


class QuotaExceeded(InvalidInput):
    """A submission beyond the caller's quota of queued jobs; the message names the bound."""

    code = "QUOTA_EXCEEDED"


class Unauthenticated(GatewayError):
    """No valid token: the caller is unknown (HTTP 401)."""

    code = "UNAUTHENTICATED"


class Forbidden(GatewayError):
    """The caller's roles or sources do not allow this; the message says what, never data."""

    code = "FORBIDDEN"


class TooManySubscriptions(Forbidden):
    """The caller holds as many open subscriptions as one caller may."""

    code = "TOO_MANY_SUBSCRIPTIONS"


class AuditUnavailable(GatewayError):
    """The audit trail cannot keep up: identity is not served unaudited (HTTP 503)."""

    code = "AUDIT_UNAVAILABLE"


class JobError(GatewayError):
    """A job failed for a reason a retry will not fix; the message is shown to users.

    `result` is kept as the job's result (e.g. what a sync did before verification failed).
    """

    code = "JOB_FAILED"

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result


class JobCancelled(JobError):
    """A job stopped at a safe point because cancelling was requested."""

    code = "JOB_CANCELLED"


class SourceError(GatewayError):
    """A call to one PACS failed.

    `status` is the HTTP status the archive answered, when the failure is one;
    the circuit breaker reads it (a 4xx faults the request, not the source).
    """

    code = "SOURCE_ERROR"

    def __init__(self, source: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.detail = message
        self.status = status


class SourceUnavailable(SourceError):
    """The PACS cannot be reached."""

    code = "SOURCE_UNAVAILABLE"


class CircuitOpen(SourceUnavailable):
    """The circuit breaker is open: failing fast without calling the PACS."""

    code = "CIRCUIT_OPEN"


class SourceTimeout(SourceError):
    """The PACS did not answer in time."""

    code = "SOURCE_TIMEOUT"


class SourceProtocolError(SourceError):
    """The PACS answered something the gateway cannot use."""

    code = "SOURCE_PROTOCOL_ERROR"


class AuthError(SourceError):
    """The PACS refused the gateway's credentials."""

    code = "SOURCE_AUTH_ERROR"


class NotFound(SourceError):
    """The object is not held by this PACS."""

    code = "NOT_FOUND"


class NotSupported(SourceError):
    """The PACS kind does not offer this operation."""

    code = "NOT_SUPPORTED"
