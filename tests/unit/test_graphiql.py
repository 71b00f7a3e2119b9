"""GraphiQL opens on example operations that are valid against the schema."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from graphql import parse, validate
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.core.settings import Settings
from gateway.server.app import GatewayGraphQL
from gateway.server.ui import Dashboard
from resolvers.queries import EXAMPLES
from resolvers.schema import schema

OPERATIONS = ("SearchPatientsByName", "CompareStudy", "SourcesHealth")


def test_examples_are_valid_named_operations() -> None:
    document = parse(EXAMPLES)
    names = [d.name.value for d in document.definitions if d.name]  # type: ignore[attr-defined]
    assert names == list(OPERATIONS)
    assert validate(schema._schema, document) == []


def test_graphiql_opens_on_the_examples(tmp_path: Path) -> None:
    """The bundled GraphiQL (a route of the dashboard) gets the examples as a JSON block."""
    (tmp_path / "index.html").write_text(
        '<html><head><script type="module" src="/assets/x.js"></script></head></html>'
    )
    runtime = SimpleNamespace(settings=Settings(sources=()), sources={})
    graphql = GatewayGraphQL(lambda conn: runtime, Dashboard(tmp_path, EXAMPLES))
    client = TestClient(Starlette(routes=[Route("/graphql", graphql, methods=["GET"])]))
    r = client.get("/graphql", headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for name in OPERATIONS:
        assert f"query {name} {{" in r.text
    assert 'patients(filter: { name: \\"SMITH*\\" }' in r.text
    assert '<script type="application/json" id="graphiql-examples">' in r.text
    assert "unpkg" not in r.text and "Welcome to GraphiQL" not in r.text


def test_graphiql_without_a_build_says_to_run_make_setup(tmp_path: Path) -> None:
    runtime = SimpleNamespace(settings=Settings(sources=()), sources={})
    graphql = GatewayGraphQL(lambda conn: runtime, Dashboard(tmp_path / "none", EXAMPLES))
    client = TestClient(Starlette(routes=[Route("/graphql", graphql, methods=["GET"])]))
    r = client.get("/graphql", headers={"Accept": "text/html"})
    assert r.status_code == 503 and "make setup" in r.text
