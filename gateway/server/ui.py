"""The dashboard (the React SPA built into `ui/dist` by `make setup`), served by the gateway.

- `/` and every other path that is not the API answers `index.html` (history-API fallback:
  the SPA routes in the browser); API paths (`API_PREFIXES`) never fall back, an unknown
  one is a 404.
- `/assets/*`: Vite's content-hashed files, `cache-control: public, max-age=31536000,
  immutable`; `index.html` itself is `no-cache` so a new build is picked up at once.
- GraphiQL is a lazy route of the same SPA: a browser's GET of `/graphql` (see
  `wants_ide`) answers `index.html` with the example operations embedded as JSON data
  (no inline script: the CSP allows none from outside the gateway).
- Without a build (`ui/dist/index.html` missing) those pages answer 503 with a short text
  saying to run `make setup`; the API is unaffected.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

PathLike = str | os.PathLike[str]

DIST = Path(__file__).resolve().parents[2] / "ui" / "dist"
# `/import` is not among them: its route takes POST only, and a browser's GET of it is the
# dashboard's Import page
API_PREFIXES = ("/graphql", "/health", "/files", "/metrics", "/dicomweb", "/viewer")
IMMUTABLE = "public, max-age=31536000, immutable"
MISSING = (
    "The dashboard is not built (ui/dist/index.html is missing): run `make setup` "
    "(npm ci and the production build in ui/). The API at /graphql works without it.\n"
)
EXAMPLES_ID = "graphiql-examples"


def is_api_path(path: str) -> bool:
    """Whether `path` belongs to the API (never answered with the dashboard)."""
    return any(path == p or path.startswith(p + "/") for p in API_PREFIXES)


def wants_ide(request: Request) -> bool:
    """A browser's GET of /graphql (HTML accepted, no `query` parameter): GraphiQL."""
    accept = request.headers.get("accept", "")
    return (
        request.method in ("GET", "HEAD")
        and "query" not in request.query_params
        and ("text/html" in accept or "*/*" in accept)
    )


class Assets(StaticFiles):
    """`ui/dist/assets`: hashed file names, so cached for a year and never revalidated."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """The file, with the long-lived cache header."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["cache-control"] = IMMUTABLE
        return response


class Dashboard:
    """The built SPA in `dist`: its index page, its assets and GraphiQL's page."""

    def __init__(self, dist: Path = DIST, examples: str = "") -> None:
        self.dist = dist
        self.examples = examples
        self.assets = Assets(directory=dist / "assets", check_dir=False)

    def index_html(self) -> str | None:
        """`index.html` of the build, or None when there is no build."""
        try:
            return (self.dist / "index.html").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def page(self, html: str | None = None) -> Response:
        """The SPA's page (or the 503 text when the UI is not built)."""
        html = html if html is not None else self.index_html()
        if html is None:
            return PlainTextResponse(MISSING, status_code=503)
        return HTMLResponse(html, headers={"cache-control": "no-cache"})

    def ide(self) -> Response:
        """GraphiQL: the SPA's page with the example operations as a JSON data block."""
        html = self.index_html()
        if html is not None and self.examples:
            literal = json.dumps(self.examples).replace("<", "\\u003c")
            block = f'<script type="application/json" id="{EXAMPLES_ID}">{literal}</script>'
            html = html.replace("</head>", f"    {block}\n  </head>", 1)
        return self.page(html)

    async def fallback(self, request: Request) -> Response:
        """Any path no route took: the SPA for a page path, 404 for the API's."""
        if is_api_path(request.url.path):
            return JSONResponse({"error": "not found"}, status_code=404)
        return self.page()

    async def serve_assets(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`/assets/...` (404 for a file that is not there, 503 text with no build)."""
        if scope["type"] == "http" and not (self.dist / "assets").is_dir():
            await PlainTextResponse(MISSING, status_code=503)(scope, receive, send)
            return
        await self.assets(scope, receive, send)

    def routes(self) -> list[BaseRoute]:
        """The dashboard's routes, to mount after every API route (the fallback takes any
        path)."""
        return [
            Mount("/assets", self.serve_assets, name="assets"),
            Route("/{path:path}", self.fallback, methods=["GET"]),  # HEAD too; others 405
        ]
