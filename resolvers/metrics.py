"""GraphQL metrics and the operation's log line: one timing per operation (not per field:
per-field hooks cost 8x in strawberry), the codes of its errors, refusals, active
subscriptions; the request id, caller id and operation name bound to its log lines."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from gateway.core.logs import bind
from gateway.metrics import record as metrics
from gateway.metrics import tracing

log = logging.getLogger("resolvers.operations")
# Codes that mean the operation was refused rather than run (wholly or in part).
REFUSALS = frozenset(
    {
        "UNAUTHENTICATED",
        "QUERY_TOO_COMPLEX",
        "QUERY_DEADLINE_EXCEEDED",
        "GRAPHQL_PARSE_FAILED",
        "GRAPHQL_VALIDATION_FAILED",
    }
)
UNCODED = "INTERNAL_SERVER_ERROR"  # what an error without a code is (a masked one)
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")


def request_id(context: Any) -> str:
    """The caller's `X-Request-ID` when it is a plain token, else a new one."""
    request = getattr(context, "request", None)
    given = request.headers.get("x-request-id") if request is not None else None
    return given if given and REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]


class OperationMetrics(SchemaExtension):
    """Times and logs each operation: first in the extension list, so it covers every
    other one, and every line logged meanwhile carries its request id and caller id."""

    def __init__(self) -> None:
        super().__init__()
        self._subscription = False

    def on_operation(self) -> Iterator[None]:
        """Time the operation; record and log it however it ends."""
        start = time.perf_counter()
        context = self.execution_context.context
        rid = request_id(context)
        response = getattr(context, "response", None)
        if response is not None and hasattr(response, "status_code"):  # HTTP, not WebSocket
            response.headers["X-Request-ID"] = rid
        caller = getattr(getattr(context, "caller", None), "actor", None)
        with bind(request_id=rid, caller=caller), tracing.span("graphql") as span:
            try:
                yield
            finally:
                if self._subscription:
                    metrics.subscription(-1)
                kind, name = self._record(time.perf_counter() - start)
                if span.is_recording():
                    span.update_name(f"graphql {kind} {name}")
                    span.set_attributes(
                        {"graphql.operation.type": kind, "graphql.operation.name": name}
                    )

    def on_execute(self) -> Iterator[None]:
        """A subscription is active from its execution on."""
        if self.execution_context.operation_type.value == "subscription":
            self._subscription = True
            metrics.subscription(1)
        yield

    def _record(self, seconds: float) -> tuple[str, str]:
        ctx = self.execution_context
        try:
            kind = ctx.operation_type.value
        except Exception:  # no document (parse failure) or no such operation
            kind = "unknown"
        timed = None if self._subscription else seconds
        metrics.graphql_operation(ctx.operation_name, kind, timed)
        name = ctx.operation_name or "anonymous"
        name = name if _NAME.fullmatch(name) else "other"
        errors = len(ctx.pre_execution_errors or ()) or len(
            (ctx.result.errors or []) if ctx.result is not None else []
        )
        log.info(
            "graphql %s",
            kind,
            extra={
                "operation": name,
                "type": kind,
                "duration_ms": round(seconds * 1000, 1),
                "errors": errors,
            },
        )
        return kind, name


def count_errors(errors: list[GraphQLError]) -> None:
    """Count an operation's errors by code, and its refusal (the first refusing code).

    Called from the schema's `process_errors`, which sees every error once, with its code,
    before masking: parse errors raised by the parser cache never reach `on_operation`.
    """
    codes = [str((e.extensions or {}).get("code") or UNCODED) for e in errors]
    metrics.graphql_errors(codes, next((c for c in codes if c in REFUSALS), None))
