"""GraphQL metrics: one timing per operation (not per field: per-field hooks cost 8x in
strawberry), the codes of its errors, refusals, active subscriptions."""

from __future__ import annotations

import time
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from gateway.metrics import record as metrics

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


class OperationMetrics(SchemaExtension):
    """Times each operation: first in the extension list, so it covers every other one."""

    def __init__(self) -> None:
        super().__init__()
        self._subscription = False

    def on_operation(self) -> Iterator[None]:
        """Time the operation; record it however it ends."""
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._subscription:
                metrics.subscription(-1)
            if metrics.enabled():
                self._record(time.perf_counter() - start)

    def on_execute(self) -> Iterator[None]:
        """A subscription is active from its execution on."""
        if self.execution_context.operation_type.value == "subscription":
            self._subscription = True
            metrics.subscription(1)
        yield

    def _record(self, seconds: float) -> None:
        ctx = self.execution_context
        try:
            kind = ctx.operation_type.value
        except Exception:  # no document (parse failure) or no such operation
            kind = "unknown"
        timed = None if self._subscription else seconds
        metrics.graphql_operation(ctx.operation_name, kind, timed)


def count_errors(errors: list[GraphQLError]) -> None:
    """Count an operation's errors by code, and its refusal (the first refusing code).

    Called from the schema's `process_errors`, which sees every error once, with its code,
    before masking: parse errors raised by the parser cache never reach `on_operation`.
    """
    codes = [str((e.extensions or {}).get("code") or UNCODED) for e in errors]
    metrics.graphql_errors(codes, next((c for c in codes if c in REFUSALS), None))
