"""Query limits: depth, tokens, aliases (fragments included), deadline, error masking.

Refused queries get a GraphQL error with `extensions.code`. Unexpected
exceptions are masked: their text may hold anything, so clients only see a
generic message; the gateway's own errors keep theirs (never patient data).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationContext,
)
from strawberry.extensions import AddValidationRules, MaskErrors, SchemaExtension
from strawberry.extensions.query_depth_limiter import create_validator

from gateway.core.errors import GatewayError
from resolvers.access import AuditIdentityReads, RequireCaller
from resolvers.cost import QueryCost
from resolvers.documents import Documents
from resolvers.metrics import OperationMetrics

MAX_DEPTH = 12
MAX_TOKENS = 5000
MAX_ALIASES = 30
DEADLINE_MARGIN_S = 3.0  # over the largest source timeout
DEADLINE_CODE = "QUERY_DEADLINE_EXCEEDED"
CACHE_SIZE = 256  # distinct documents whose parse and validation are kept


class AliasLimit(ASTValidationRule):
    """Counts aliases as they would execute: a fragment's once per spread, nested spreads
    expanded (memoised per fragment, so counting stays linear however deep the nesting)."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._memo: dict[str, int] = {}

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        """Count the operation's aliases, fragments expanded."""
        if self._count(node.selection_set, frozenset()) > MAX_ALIASES:
            self.report_error(
                GraphQLError(
                    f"too many aliases (more than {MAX_ALIASES})",
                    node,
                    extensions={"code": "QUERY_TOO_COMPLEX"},
                )
            )

    def _count(self, selection_set: SelectionSetNode | None, visiting: frozenset[str]) -> int:
        total = 0
        for sel in selection_set.selections if selection_set else ():
            if isinstance(sel, FieldNode):
                total += (sel.alias is not None) + self._count(sel.selection_set, visiting)
            elif isinstance(sel, InlineFragmentNode):
                total += self._count(sel.selection_set, visiting)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in visiting:
                name = sel.name.value
                if name not in self._memo:
                    fragment = self.context.get_fragment(name)
                    inner = fragment.selection_set if fragment else None
                    self._memo[name] = self._count(inner, visiting | {name})
                total += self._memo[name]
            if total > MAX_ALIASES:
                break  # enough to refuse
        return total


class QueryDeadline(SchemaExtension):
    """Stops a query or mutation still running after its deadline, with QUERY_DEADLINE_EXCEEDED.

    The deadline is `deadline_s` or, by default, the largest source timeout
    plus `margin_s`: room for one fan-out that times out and the work around
    it. Subscriptions are not bounded. The error names the limit only.
    """

    def __init__(
        self, *, deadline_s: float | None = None, margin_s: float = DEADLINE_MARGIN_S
    ) -> None:
        super().__init__()
        self.deadline_s = deadline_s
        self.margin_s = margin_s

    def seconds(self) -> float:
        """This operation's deadline in seconds."""
        if self.deadline_s is not None:
            return self.deadline_s
        runtime = getattr(self.execution_context.context, "runtime", None)
        sources = runtime.settings.sources if runtime is not None else ()
        return max((s.timeout_s for s in sources), default=0.0) + self.margin_s

    async def on_execute(self) -> AsyncIterator[None]:
        """Run the operation under the deadline."""
        if self.execution_context.operation_type is OperationType.SUBSCRIPTION:
            yield
            return
        seconds = self.seconds()
        scope = asyncio.timeout(seconds)
        try:
            async with scope:
                yield
        except TimeoutError:
            if not scope.expired():
                raise
            raise GraphQLError(
                f"query deadline exceeded ({seconds:g} s)", extensions={"code": DEADLINE_CODE}
            ) from None


def _visible(error: GraphQLError) -> bool:
    original = error.original_error
    return original is None or isinstance(original, GatewayError | GraphQLError)


class OperationRules(SchemaExtension):
    """A document with several operations needs `operationName` (the GraphQL spec)."""

    async def on_execute(self) -> AsyncIterator[None]:
        """Refuse before anything runs."""
        ctx = self.execution_context
        document = ctx.graphql_document
        operations = [
            d
            for d in (document.definitions if document else ())
            if isinstance(d, OperationDefinitionNode)
        ]
        # strawberry names the first operation when none was given: ask what the client sent
        if len(operations) > 1 and not getattr(ctx, "_provided_operation_name", None):
            raise GraphQLError(
                "operationName is required with several operations in one document",
                extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
            )
        yield


class ErrorCodes(SchemaExtension):
    """Adds `extensions.code` to errors that lack one."""

    def on_operation(self) -> Any:
        """Post-process the result's errors."""
        yield
        ctx = self.execution_context
        errors = list(ctx.pre_execution_errors or [])
        if ctx.result is not None and ctx.result.errors:
            errors += [e for e in ctx.result.errors if e not in errors]
        for err in errors:
            ext = dict(err.extensions or {})
            if "code" not in ext:
                ext["code"] = error_code(err)
                err.extensions = ext


def error_code(err: GraphQLError) -> str:
    """The `extensions.code` for an error raised without one."""
    original = err.original_error
    if isinstance(original, GatewayError):
        return original.code
    if isinstance(original, GraphQLError) and original.extensions:
        return str(original.extensions.get("code", "GRAPHQL_VALIDATION_FAILED"))
    if original is not None:
        return "INTERNAL_SERVER_ERROR"
    if err.message.startswith("Syntax Error"):
        return "QUERY_TOO_COMPLEX" if "tokens" in err.message else "GRAPHQL_PARSE_FAILED"
    return "GRAPHQL_VALIDATION_FAILED"


# Built once: a rule class made per request (as QueryDepthLimiter does) defeats the cache.
DepthLimit = create_validator(MAX_DEPTH, None)


def extensions(deadline_s: float | None = None) -> list[Any]:
    """Schema extensions in the order they must run (`deadline_s`: see `QueryDeadline`).

    Parsing and validation are cached per document, keyed on its significant tokens
    (validation is ~6 ms of a request otherwise), and done in a thread on a miss; the cost
    is estimated before anything runs. Metrics come first: they time everything and see
    the errors as the client gets them.
    """
    return [
        OperationMetrics,
        RequireCaller,
        OperationRules,
        QueryCost,
        AuditIdentityReads,
        lambda: QueryDeadline(deadline_s=deadline_s),
        lambda: Documents(max_tokens=MAX_TOKENS, size=CACHE_SIZE),
        lambda: AddValidationRules([DepthLimit, AliasLimit]),
        lambda: MaskErrors(should_mask_error=lambda e: not _visible(e)),
        ErrorCodes,
    ]
