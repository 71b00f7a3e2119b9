"""The strawberry schema and its SDL export (`pacs-gateway schema`)."""

from __future__ import annotations

from pathlib import Path

import strawberry
from strawberry.tools import merge_types

from resolvers.jobs import JobQuery, Mutation, Subscription
from resolvers.limits import extensions
from resolvers.queries import Query as ReadQuery

Query = merge_types("Query", (ReadQuery, JobQuery))
schema = strawberry.Schema(
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
