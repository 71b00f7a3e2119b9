"""httpx errors and HTTP answers into the gateway's error tree.

Messages carry the operation and the technical cause, never a URL (query
strings can hold patient names) or a response body.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway.core.errors import (
    AuthError,
    NotFound,
    NotSupported,
    SourceError,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)

_UNAVAILABLE = {502, 503}
_TIMEOUT = {408, 504}


_LOST = "disconnected without sending a response"  # httpcore's words


def translate(exc: httpx.HTTPError, source: str, operation: str) -> SourceError:
    """The gateway error for an httpx transport error."""
    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__.replace("Timeout", " timeout").lower()
        return SourceTimeout(source, f"{operation}: {kind}")
    if isinstance(exc, httpx.ConnectError):
        return SourceUnavailable(source, f"{operation}: cannot connect")
    if isinstance(exc, httpx.RemoteProtocolError):
        if _LOST in str(exc):  # closed before answering: on reuse, a connection it had closed
            return SourceUnavailable(source, f"{operation}: connection lost")
        return SourceProtocolError(source, f"{operation}: malformed HTTP answer")
    if isinstance(exc, httpx.DecodingError):
        return SourceProtocolError(source, f"{operation}: undecodable body")
    if isinstance(exc, httpx.NetworkError):
        return SourceUnavailable(source, f"{operation}: connection lost")
    return SourceProtocolError(source, f"{operation}: HTTP failure ({type(exc).__name__})")


def status_error(status: int, source: str, operation: str) -> SourceError:
    """The gateway error for an unexpected HTTP status (carried as its `status`)."""
    message = f"{operation}: HTTP {status}"
    if status in (401, 403):
        return AuthError(source, message, status=status)
    if status == 404:
        return NotFound(source, message, status=status)
    if status in (405, 501):
        return NotSupported(source, message, status=status)
    if status in _UNAVAILABLE or status == 429:
        return SourceUnavailable(source, message, status=status)
    if status in _TIMEOUT:
        return SourceTimeout(source, message, status=status)
    return SourceProtocolError(source, message, status=status)


def parse_json(response: httpx.Response, source: str, operation: str) -> Any:
    """The JSON body of a read response; an empty body (e.g. 204) is None."""
    if not response.content.strip():
        return None
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        raise SourceProtocolError(source, f"{operation}: body is not valid JSON") from None
