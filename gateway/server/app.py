"""The ASGI application: /graphql (GraphiQL on GET, WebSocket subscriptions), /health, /files."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from gateway.auth.principal import OPEN_CALLER
from gateway.core.enums import AuthMode
from gateway.core.settings import Settings
from gateway.runtime import Runtime
from resolvers.context import Context, make_context
from resolvers.queries import EXAMPLES
from resolvers.schema import schema

log = logging.getLogger(__name__)
_DEFAULT_DOC = re.compile(r"const EXAMPLE_QUERY = `.*?`;", re.DOTALL)


class GatewayGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI app with a fresh context (and dataloaders) per request."""

    def __init__(self, runtime_of: Any) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
        )
        self._runtime_of = runtime_of

    @property
    def graphql_ide_html(self) -> str:
        """GraphiQL, opening on the example operations instead of strawberry's welcome text."""
        return _with_examples(super().graphql_ide_html)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        """Context for one request, with the caller its bearer token stands for (a WebSocket
        authenticates later, in `connection_init`)."""
        runtime: Runtime = self._runtime_of(request)
        address = request.client.host if request.client else None
        if runtime.settings.auth.mode == AuthMode.OPEN:
            return make_context(runtime, request, response, OPEN_CALLER, None, address)
        token = bearer(request.headers.get("authorization"))
        caller = await runtime.auth.authenticate(token) if token else None
        if caller is None and isinstance(response, Response):
            response.headers["WWW-Authenticate"] = 'Bearer realm="pacs-gateway"'
        return make_context(runtime, request, response, caller, token, address)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate a WebSocket from `connection_init`'s `Authorization`; 4403 if refused."""
        if context.caller is not None:  # open mode
            return UNSET
        params = context.connection_params or {}
        token = bearer(str(params.get("Authorization") or params.get("authorization") or ""))
        caller = await context.runtime.auth.authenticate(token) if token else None
        if caller is None:
            raise ConnectionRejectionError()
        context.caller, context.token = caller, token
        context.loaders = make_context(context.runtime, caller=caller).loaders
        return UNSET


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _with_examples(html: str) -> str:
    """GraphiQL's page with `EXAMPLES` as its default document."""
    literal = json.dumps(EXAMPLES).replace("</", "<\\/")
    return _DEFAULT_DOC.sub(lambda _: f"const EXAMPLE_QUERY = {literal};", html, count=1)


def create_app(settings: Settings) -> Starlette:
    """The gateway app; clients are created in the lifespan, migrations applied first."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = await Runtime.create(settings)
        app.state.runtime = runtime
        log.info("gateway started with %d sources", len(runtime.sources))
        try:
            yield
        finally:
            await runtime.aclose()

    async def health(request: Request) -> JSONResponse:
        body = await request.app.state.runtime.health()
        return JSONResponse(body, status_code=200 if body["database"]["up"] else 503)

    graphql = GatewayGraphQL(lambda conn: conn.app.state.runtime)
    results = Path(settings.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Mount("/files", StaticFiles(directory=results), name="files"),
        ],
        lifespan=lifespan,
    )
    return app
