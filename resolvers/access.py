"""Who may run an operation at all, and the audit event of each identity read.

`RequireCaller` refuses every operation of an unauthenticated caller (HTTP 401,
`extensions.code = "UNAUTHENTICATED"`) except `login` and schema introspection.
`AuditIdentityReads` writes one `phi-read` event per operation that served identity:
who, from where, which operation, how many patients or studies (opaque references).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from graphql import FieldNode, GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from gateway.auth.audit import Entry
from gateway.core.errors import AuditUnavailable

PUBLIC_FIELDS = frozenset({"login", "__schema", "__type", "__typename"})
MAX_REFS = 200  # references named in one event; the count is always exact


def _root_fields(operation: OperationDefinitionNode | None) -> Iterator[str]:
    if operation is None:
        return
    for selection in operation.selection_set.selections:
        yield selection.name.value if isinstance(selection, FieldNode) else "<fragment>"


class RequireCaller(SchemaExtension):
    """No operation but `login` (and introspection) without a valid token."""

    async def on_execute(self) -> AsyncIterator[None]:
        """Refuse before anything runs."""
        ctx = self.execution_context
        context = ctx.context
        if getattr(context, "caller", True) is None:
            operation = None
            for definition in ctx.graphql_document.definitions if ctx.graphql_document else ():
                if isinstance(definition, OperationDefinitionNode) and (
                    ctx.operation_name is None
                    or (definition.name and definition.name.value == ctx.operation_name)
                ):
                    operation = definition
                    break
            if not set(_root_fields(operation)) <= PUBLIC_FIELDS or operation is None:
                response = getattr(context, "response", None)
                if response is not None and hasattr(response, "status_code"):
                    response.status_code = 401
                raise GraphQLError(
                    "authentication required: send Authorization: Bearer <token>",
                    extensions={"code": "UNAUTHENTICATED"},
                )
        yield


class AuditIdentityReads(SchemaExtension):
    """One audit event per operation that served identity fields."""

    async def on_execute(self) -> AsyncIterator[None]:
        """Record after the operation ran."""
        yield
        context = self.execution_context.context
        refs = getattr(context, "identity_reads", None)
        if not refs:
            return
        caller = context.caller
        try:
            context.runtime.audit.submit(
                Entry(
                    actor=caller.actor if caller is not None else None,
                    action="phi-read",
                    object_type="patient-or-study",
                    address=context.address,
                    details={
                        "operation": self.execution_context.operation_name,
                        "count": len(refs),
                        "refs": sorted(refs)[:MAX_REFS],
                    },
                )
            )
        except AuditUnavailable:  # checked before serving; a race lost here is logged there
            pass
        refs.clear()
