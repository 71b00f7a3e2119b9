"""Query cost: a static estimate of the work an operation asks for, refused over a budget.

The estimate is taken before anything runs, on the validated document and the request's
variables: roughly the objects the answer holds plus the archive requests it makes. Each
object costs 1; a field that asks the archives (`FAN_OUT`) costs as many requests per
configured query source; a list multiplies what is selected under it by its size: a
connection's page by its `first` argument (or that argument's default), others by
`LIST_SIZES` or `DEFAULT_LIST`. Lists held in memory once per source (`presentIn`,
`sourceResults`, ...) or a few items long (`conflicts`) cost only their selections.
Scalars and introspection cost nothing; a field selected twice counts twice. Over
`[gateway] max_query_cost`, the operation is refused with QUERY_TOO_COSTLY and the
estimate in `extensions`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
)
from strawberry.extensions import SchemaExtension

from gateway.core.settings import Settings
from resolvers.common import MAX_PAGE

CODE = "QUERY_TOO_COSTLY"
# the budget without a runtime (schema tests): Settings' default, written there once
DEFAULT_MAX_COST = cast(int, Settings.__dataclass_fields__["max_query_cost"].default)
DEFAULT_LIST = 10  # items assumed in a list without a page size (series of a study, ...)
LIST_SIZES = {"Series.instances": 100, "Job.events": 20}
SMALL_LISTS = {"FieldConflict": 2}  # a few attributes differ, if any
# requests each field (or each object of a type) makes per query source
FAN_OUT = {
    "Query.patients": 1,
    "Query.patient": 1,
    "Query.studies": 1,
    "Query.study": 1,
    "Query.compareStudy": 1,
    "Query.comparePatient": 1,
    "Patient.studies": 1,
    "Study.patient": 1,
    "Study.series": 1,
    "Series.instances": 1,
}
ONE_REQUEST = {"Source.health": 1}  # a live check of that one source
TYPE_FAN_OUT = {"StudyComparison": 2}  # series and instances of the study in each source
SOURCE_SIZED = frozenset({"Source", "SourceResult", "SourceCounts", "SourceValue", "StudyInSource"})
CAP = 10**12  # estimates are reported up to this


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: Mapping[str, Any]
    defaults: Mapping[str, Any]
    sources: int
    memo: dict[tuple[str, str, int | None], int] = field(default_factory=dict)

    def page(self, node: FieldNode, parent: GraphQLObjectType) -> int | None:
        """The `first` argument of a paged field (its default when absent or null)."""
        definition = parent.fields[node.name.value].args.get("first")
        if definition is None:
            return None
        value: Any = definition.default_value
        for arg in node.arguments or ():
            if arg.name.value != "first":
                continue
            if isinstance(arg.value, IntValueNode):
                value = int(arg.value.value)
            elif isinstance(arg.value, VariableNode):
                name = arg.value.name.value
                value = self.variables.get(name, self.defaults.get(name, value))
            elif isinstance(arg.value, NullValueNode):
                value = None
        if value is None:
            value = definition.default_value
        if not isinstance(value, int) or isinstance(value, bool):
            return MAX_PAGE
        return min(max(value, 0), MAX_PAGE)

    def cost(self, selections: SelectionSetNode | None, parent: Any, page: int | None) -> int:
        """Unit cost of `selections` on `parent` (one object of it)."""
        total = 0
        if selections is None or parent is None:
            return 0
        for sel in selections.selections or ():
            if isinstance(sel, FieldNode):
                total += self.field(sel, parent, page)
            elif isinstance(sel, InlineFragmentNode):
                inner = parent
                if sel.type_condition is not None:
                    inner = self.schema.get_type(sel.type_condition.name.value) or parent
                total += self.cost(sel.selection_set, inner, page)
            elif isinstance(sel, FragmentSpreadNode):
                total += self.spread(sel.name.value, page)
            if total > CAP:
                return CAP
        return total

    def spread(self, name: str, page: int | None) -> int:
        fragment = self.fragments.get(name)
        if fragment is None:
            return 0
        key = (name, fragment.type_condition.name.value, page)
        if key not in self.memo:
            self.memo[key] = 0  # a cycle (refused by validation anyway) counts nothing
            parent = self.schema.get_type(fragment.type_condition.name.value)
            self.memo[key] = self.cost(fragment.selection_set, parent, page)
        return self.memo[key]

    def field(self, node: FieldNode, parent: Any, page: int | None) -> int:
        name = node.name.value
        fields = getattr(parent, "fields", None)
        if name.startswith("__") or not fields or name not in fields:
            return 0
        out_type = fields[name].type
        named: GraphQLNamedType = get_named_type(out_type)
        if isinstance(out_type, GraphQLNonNull):
            out_type = out_type.of_type
        coordinate = f"{parent.name}.{name}"
        requests = FAN_OUT.get(coordinate, 0) * self.sources + ONE_REQUEST.get(coordinate, 0)
        if not isinstance(named, GraphQLObjectType):
            return requests
        item = TYPE_FAN_OUT.get(named.name, 0) * self.sources
        inner = self.cost(node.selection_set, named, self.page(node, parent))
        if not isinstance(out_type, GraphQLList):
            return min(CAP, requests + 1 + item + inner)
        if named.name in SOURCE_SIZED:  # in memory, one per source: their selections count
            return min(CAP, requests + self.sources * (item + inner))
        if named.name in SMALL_LISTS:
            return min(CAP, requests + SMALL_LISTS[named.name] * (item + inner))
        size = page if name == "edges" and page is not None else None
        if size is None:
            size = LIST_SIZES.get(coordinate, DEFAULT_LIST)
        return min(CAP, requests + 1 + size * (1 + item + inner))


def estimate(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    sources: int,
) -> int:
    """The static cost of the operation `operation_name` of `document` (see the module)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    root = schema.get_root_type(operation.operation)
    walk = _Walk(schema, fragments, variables or {}, _defaults(operation), max(sources, 1))
    return walk.cost(operation.selection_set, root, None)


def _defaults(operation: OperationDefinitionNode) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        value = definition.default_value
        if isinstance(value, IntValueNode):
            out[definition.variable.name.value] = int(value.value)
    return out


class QueryCost(SchemaExtension):
    """Refuses an operation whose estimate exceeds the budget, before it runs."""

    async def on_execute(self) -> AsyncIterator[None]:
        """Estimate, then refuse or run."""
        ctx = self.execution_context
        runtime = getattr(ctx.context, "runtime", None)
        settings: Settings | None = getattr(runtime, "settings", None)
        budget = settings.max_query_cost if settings is not None else DEFAULT_MAX_COST
        sources = len(settings.ids_with_role("query")) if settings is not None else 1
        document = ctx.graphql_document
        if document is not None:
            name = ctx.operation_name
            cost = estimate(ctx.schema._schema, document, name, ctx.variables, sources)
            if cost > budget:
                raise GraphQLError(
                    f"query too costly: estimated {cost}, at most {budget}",
                    extensions={"code": CODE, "cost": cost, "maxCost": budget},
                )
        yield
