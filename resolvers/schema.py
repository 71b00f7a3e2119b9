"""The strawberry schema and its SDL export (`pacs-gateway schema`)."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import strawberry
from graphql import GraphQLError
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from gateway.core.errors import GatewayError
from resolvers.identity import IdentityMutation, IdentityQuery
from resolvers.jobs import JobQuery, Subscription
from resolvers.jobs import Mutation as JobMutation
from resolvers.limits import error_code, extensions
from resolvers.metrics import count_errors
from resolvers.queries import Query as ReadQuery

log = logging.getLogger("resolvers")


class GatewaySchema(strawberry.Schema):
    """strawberry's schema, logging errors without the query text or any message.

    strawberry's own logging prints each error with the query excerpt it points
    at, and graphql-core's messages quote argument values: patient data.
    """

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Give each error a code; log the code, an unexpected exception's type and stack;
        count them (metrics)."""
        for error in errors:
            if "code" not in (error.extensions or {}):  # parse errors pass no extension hook
                error.extensions = {**(error.extensions or {}), "code": error_code(error)}
            original = error.original_error
            code = (error.extensions or {}).get("code", "")
            if original is None or isinstance(original, GatewayError | GraphQLError):
                log.info("request refused: %s", code or type(error).__name__)
                continue
            stack = "".join(traceback.format_tb(original.__traceback__))
            log.error("unexpected %s in a resolver\n%s", type(original).__name__, stack)
        count_errors(errors)


Query = merge_types("Query", (ReadQuery, JobQuery, IdentityQuery))
Mutation = merge_types("Mutation", (JobMutation, IdentityMutation))
schema = GatewaySchema(
    query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions()
)

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schema.graphql"


def schema_sdl() -> str:
    """The schema as SDL, as committed in schema.graphql."""
    return schema.as_str() + "\n"


def write_schema(path: Path = SCHEMA_FILE) -> Path:
    """Write the SDL to `path` (default: schema.graphql at the repository root)."""
    path.write_text(schema_sdl(), encoding="utf-8")
    return path
