"""Who may run an operation at all, and the audit event of each identity read.

`RequireCaller` refuses every operation of an unauthenticated caller (HTTP 401,
`extensions.code = "UNAUTHENTICATED"`) except `login` and schema introspection.
`AuditIdentityReads` writes one `phi-read` event per operation that served identity:
who, from where, which operation, how many patients or studies (opaque references); and
one `refused` event per operation in which fields were refused (FORBIDDEN).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from gateway.auth.audit import Entry
from gateway.core.errors import AuditUnavailable, Forbidden

PUBLIC_FIELDS = frozenset({"login", "__schema", "__type", "__typename"})
MAX_REFS = 200  # references named in one event; the count is always exact


def _root_fields(
    selections: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> Iterator[str]:
    """Schema names of an operation's root fields, fragments at the root expanded."""
    for selection in selections.selections if selections is not None else ():
        if isinstance(selection, FieldNode):
            yield selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = fragments.get(selection.name.value)
            inner = fragment.selection_set if fragment is not None else None
            yield from _root_fields(inner, fragments, seen | {selection.name.value})


def _operation(ctx: ExecutionContext) -> OperationDefinitionNode | None:
    for definition in ctx.graphql_document.definitions if ctx.graphql_document else ():
        if isinstance(definition, OperationDefinitionNode) and (
            ctx.operation_name is None
            or (definition.name and definition.name.value == ctx.operation_name)
        ):
            return definition
    return None


class RequireCaller(SchemaExtension):
    """No operation but `login` (and introspection) without a valid token; one `login` per
    operation (aliases would otherwise try many passwords, each costing an argon2 hash)."""

    async def on_execute(self) -> AsyncIterator[None]:
        """Refuse before anything runs."""
        ctx = self.execution_context
        context = ctx.context
        operation = _operation(ctx)
        fragments = {
            d.name.value: d
            for d in (ctx.graphql_document.definitions if ctx.graphql_document else ())
            if isinstance(d, FragmentDefinitionNode)
        }
        fields = list(_root_fields(operation.selection_set if operation else None, fragments))
        if getattr(context, "caller", True) is None and (
            operation is None or not set(fields) <= PUBLIC_FIELDS
        ):
            response = getattr(context, "response", None)
            if response is not None and hasattr(response, "status_code"):
                response.status_code = 401
            raise GraphQLError(
                "authentication required: send Authorization: Bearer <token>",
                extensions={"code": "UNAUTHENTICATED"},
            )
        if fields.count("login") > 1:
            raise GraphQLError("one login per request", extensions={"code": "BAD_USER_INPUT"})
        yield


class AuditIdentityReads(SchemaExtension):
    """One audit event per operation that served identity fields, and one per operation
    refused something (FORBIDDEN: which fields, how many; never a value)."""

    async def on_execute(self) -> AsyncIterator[None]:
        """Record after the operation ran."""
        yield
        context = self.execution_context.context
        if not hasattr(context, "identity_reads"):
            return
        refs = context.identity_reads
        if refs:
            self._submit(
                context,
                Entry(
                    actor=None,
                    action="phi-read",
                    object_type="patient-or-study",
                    details={
                        "operation": self.execution_context.operation_name,
                        "count": len(refs),
                        "refs": sorted(refs)[:MAX_REFS],
                    },
                ),
            )
            refs.clear()
        refused = _refused_fields(getattr(self.execution_context.result, "errors", None))
        if refused:
            self._submit(
                context,
                Entry(
                    actor=None,
                    action="refused",
                    outcome="refused",
                    object_type="field",
                    details={
                        "operation": self.execution_context.operation_name,
                        "count": len(refused),
                        "fields": sorted(set(refused)),
                    },
                ),
            )

    @staticmethod
    def _submit(context: Any, entry: Entry) -> None:
        caller = context.caller
        entry = replace(
            entry, actor=caller.actor if caller is not None else None, address=context.address
        )
        try:
            context.runtime.audit.submit(entry)
        except AuditUnavailable:  # checked before serving; a race lost here is logged there
            pass


# Mutations that write their own, more precise event when they refuse (job-submit, ...).
SELF_AUDITED = frozenset(
    {"syncStudies", "anonymizeStudy", "processRtStruct", "cancelJob", "retryJob", "reidentify"}
)


def _refused_fields(errors: list[GraphQLError] | None) -> list[str]:
    """Schema names (not the client's aliases) of the fields refused with FORBIDDEN."""
    out = []
    for error in errors or ():
        if not isinstance(error.original_error, Forbidden):
            continue
        node = error.nodes[0] if error.nodes else None
        name = node.name.value if isinstance(node, FieldNode) else "?"
        if name not in SELF_AUDITED:
            out.append(name)
    return out
