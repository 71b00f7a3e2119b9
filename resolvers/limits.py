"""Query limits: depth, tokens, aliases (fragments included), fields, deadline, error masking.

Refused queries get a GraphQL error with `extensions.code`. Unexpected
exceptions are masked: their text may hold anything, so clients only see a
generic message; the gateway's own errors keep theirs (never patient data).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
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
from gateway.core.settings import Settings
from resolvers.access import AuditIdentityReads, RequireCaller
from resolvers.cost import QueryCost
from resolvers.documents import Documents
from resolvers.metrics import OperationMetrics

MAX_DEPTH = 12
MAX_TOKENS = 1000  # GraphiQL's introspection query has 183, the dashboard's largest 126
MAX_ALIASES = 30
DEADLINE_MARGIN_S = 3.0  # over the largest source timeout
DEADLINE_CODE = "QUERY_DEADLINE_EXCEEDED"
CACHE_SIZE = 256  # distinct documents whose parse and validation are kept
MAX_REPEATS = 20  # field selections merged into one response path (see FieldLimit)
# the bound without a runtime (schema tests): Settings' default, written there once
DEFAULT_MAX_FIELDS = cast(int, Settings.__dataclass_fields__["max_fields"].default)


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


def field_counts(
    document: DocumentNode, max_fields: int, max_repeats: int = MAX_REPEATS
) -> tuple[int, int]:
    """(field selections, most of them merged into one response path) in `document`, as
    validation sees them: each operation and each fragment, a fragment spread in where used
    (once per selection set, not into itself). Fields under fields merged into one path
    merge too, so repeats multiply through nesting. Stops once either count is over its
    bound: linear in what it counts, whatever the fragments."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    Sets = list[tuple[SelectionSetNode, frozenset[str]]]  # with the fragments they are in
    paths: deque[Sets] = deque()
    for d in document.definitions:
        if isinstance(d, FragmentDefinitionNode):
            paths.append([(d.selection_set, frozenset({d.name.value}))])
        elif isinstance(d, OperationDefinitionNode):
            paths.append([(d.selection_set, frozenset())])
    fields = merged = 0
    while paths:  # one response path at a time: its fields by response name
        counts: dict[str, int] = {}
        below: dict[str, Sets] = {}
        spread: set[str] = set()
        todo = paths.popleft()[::-1]
        while todo:
            selection_set, within = todo.pop()
            for sel in selection_set.selections:
                if isinstance(sel, FieldNode):
                    name = (sel.alias or sel.name).value
                    counts[name] = same = counts.get(name, 0) + 1
                    fields, merged = fields + 1, max(merged, same)
                    if fields > max_fields or merged > max_repeats:
                        return fields, merged
                    if sel.selection_set is not None:
                        below.setdefault(name, []).append((sel.selection_set, within))
                elif isinstance(sel, InlineFragmentNode):
                    todo.append((sel.selection_set, within))
                elif isinstance(sel, FragmentSpreadNode):
                    name = sel.name.value
                    if name in fragments and name not in within and name not in spread:
                        spread.add(name)
                        todo.append((fragments[name].selection_set, within | {name}))
        paths.extend(below.values())
    return fields, merged


class FieldLimit(SchemaExtension):
    """Refuses, before validation, a document with more field selections than `[gateway]
    max_fields` or more than MAX_REPEATS merged into one response path (QUERY_TOO_COMPLEX).

    Validation compares every pair of fields merged into one path (graphql-core's
    OverlappingFieldsCanBeMerged): 300 repeated `sources { id health { up } }` took 1-2 s
    of CPU, 5 x 5 x 5 nested repeats 0.3 s. Within both bounds it takes at most tens of
    milliseconds; counting is linear and runs on every request (cached documents too).
    """

    async def on_validate(self) -> AsyncIterator[None]:
        """Count, then refuse or let validation run."""
        ctx = self.execution_context
        document = ctx.graphql_document
        if ctx.pre_execution_errors is None and document is not None:
            runtime = getattr(ctx.context, "runtime", None)
            settings: Settings | None = getattr(runtime, "settings", None)
            cap = settings.max_fields if settings is not None else DEFAULT_MAX_FIELDS
            fields, merged = field_counts(document, cap, MAX_REPEATS)
            message = None
            if merged > MAX_REPEATS:
                message = f"a field selected more than {MAX_REPEATS} times in one place"
            elif fields > cap:
                message = f"too many fields (more than {cap})"
            if message is not None:
                error = GraphQLError(message, extensions={"code": "QUERY_TOO_COMPLEX"})
                ctx.pre_execution_errors = [error]
        yield


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
        FieldLimit,  # before Documents: refused before the validation it bounds
        lambda: Documents(max_tokens=MAX_TOKENS, size=CACHE_SIZE),
        lambda: AddValidationRules([DepthLimit, AliasLimit]),
        lambda: MaskErrors(should_mask_error=lambda e: not _visible(e)),
        ErrorCodes,
    ]
