"""schema.graphql is generated from the code and must not drift."""

from __future__ import annotations

from resolvers.schema import SCHEMA_FILE, schema_sdl


def test_schema_graphql_matches_code() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_sdl(), (
        "schema.graphql is out of date: run `make schema`"
    )
