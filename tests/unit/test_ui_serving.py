"""The dashboard's files as the gateway serves them (gateway.server.ui): history-API
fallback, hashed assets cached for a year, API paths never answered with the SPA, and a
clear 503 without a build."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.server.ui import API_PREFIXES, IMMUTABLE, Dashboard, is_api_path

INDEX = '<!doctype html><html><head><script type="module" src="/assets/i-abc.js"></script></head><body><div id="root"></div></body></html>'  # noqa: E501


async def _api(request: Request) -> JSONResponse:
    return JSONResponse({"api": True})


def _client(dist: Path, api: bool = True) -> TestClient:
    dashboard = Dashboard(dist, "query Example { sources { id } }")
    routes = [Route("/health", _api)] if api else []
    return TestClient(Starlette(routes=[*routes, *dashboard.routes()]))


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A fake build: index.html and one hashed asset."""
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "i-abc.js").write_text("console.log(1)")
    return tmp_path


@pytest.mark.parametrize(
    "path", ["/", "/jobs", "/patients/MRN1", "/studies/1.2.3?x=1", "/login", "/import", "/tokens"]
)
def test_page_paths_fall_back_to_index(built: Path, path: str) -> None:
    r = _client(built).get(path)
    assert r.status_code == 200 and r.text == INDEX
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"


def test_assets_are_immutable(built: Path) -> None:
    r = _client(built).get("/assets/i-abc.js")
    assert r.status_code == 200 and r.text == "console.log(1)"
    assert r.headers["cache-control"] == IMMUTABLE
    missing = _client(built).get("/assets/nope.js")
    assert missing.status_code == 404 and "cache-control" not in missing.headers


@pytest.mark.parametrize("prefix", API_PREFIXES)
def test_api_paths_never_fall_back(built: Path, prefix: str) -> None:
    for path in (prefix, f"{prefix}/anything/below"):
        assert is_api_path(path)
        r = _client(built, api=False).get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("application/json")
    assert not is_api_path("/graphqlx") and not is_api_path("/healthy")


def test_an_api_route_still_answers(built: Path) -> None:
    client = _client(built)
    assert client.get("/health").json() == {"api": True}
    assert client.post("/health").status_code == 405, "a wrong method stays 405"
    assert client.post("/jobs").status_code == 405


def test_without_a_build_pages_say_to_run_make_setup(tmp_path: Path) -> None:
    client = _client(tmp_path / "dist")
    for path in ("/", "/jobs", "/assets/i-abc.js"):
        r = client.get(path)
        assert r.status_code == 503 and "make setup" in r.text, path
        assert r.headers["content-type"].startswith("text/plain")
    assert client.get("/health").status_code == 200


def test_ide_page_embeds_examples_as_data(built: Path) -> None:
    html = Dashboard(built, 'query A { x(a: "</script>") }').ide().body.decode()
    assert '<script type="application/json" id="graphiql-examples">' in html
    assert '</script>\\"' not in html and "\\u003c/script>" in html
