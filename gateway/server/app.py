"""The ASGI application: /graphql (GraphiQL on GET, WebSocket subscriptions), /health, /files,
/import, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketClose
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from gateway import __version__
from gateway.auth import policy
from gateway.auth.audit import Entry
from gateway.auth.principal import OPEN_CALLER, Principal
from gateway.core.enums import AuthMode, JobKind
from gateway.core.errors import AuditUnavailable
from gateway.core.settings import Settings
from gateway.core.timing import METER, Meter, metered
from gateway.jobs.store import JobStore
from gateway.metrics import record as metrics
from gateway.runtime import Runtime
from gateway.server import dicomweb, full_grid, viewer
from gateway.server.callers import UNAUTHENTICATED_HEADERS, bearer, caller_of
from gateway.server.importer import import_upload
from gateway.server.metrics import MetricsEndpoint
from gateway.server.oidc_login import OidcLogin
from gateway.server.ratelimit import (
    TARPIT_S,
    SharedBuckets,
    TimeShares,
    TokenBuckets,
    caller_key,
)
from gateway.server.security import Hardened
from gateway.server.ui import Dashboard, wants_ide
from resolvers.context import Context, make_context
from resolvers.limits import MAX_TOKENS
from resolvers.queries import EXAMPLES
from resolvers.schema import schema

log = logging.getLogger(__name__)
FILES_KIND = JobKind.RTSTRUCT  # the one job kind that writes files (results_dir/rtstruct/<id>/)
_JOB_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class GatewayGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI app with a fresh context (and dataloaders) per request.

    Strawberry's own GraphiQL page (scripts from a CDN) is off; a browser's GET is answered
    by `dashboard.ide()`: GraphiQL bundled into the dashboard, opening on `EXAMPLES`.
    Each caller's queries and mutations over HTTP draw from their token bucket (`buckets`):
    an empty one answers 429 with `Retry-After` and a RATE_LIMITED error. Each request is
    charged the time it took of this process to its caller's time budget (`shares`); a
    caller in debt waits until repaid, or is answered the same 429 if that takes over
    `TARPIT_S`; so is a caller with `max_concurrent_per_caller` requests being served.
    """

    def __init__(
        self,
        runtime_of: Any,
        dashboard: Dashboard | None = None,
        buckets: SharedBuckets | None = None,
        shares: TimeShares | None = None,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
        )
        self._runtime_of = runtime_of
        self.dashboard = dashboard or Dashboard(examples=EXAMPLES)
        self.buckets = buckets or SharedBuckets(TokenBuckets(0, 1))
        self.shares = shares or TimeShares(TokenBuckets(0, 1))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request; an open WebSocket is counted while it lasts."""
        if scope["type"] == "http" and wants_ide(Request(scope)):
            await self.dashboard.ide()(scope, receive, send)
            return
        if scope["type"] != "websocket":
            await self._limited(scope, receive, send)
            return
        metrics.websocket(1)
        try:
            await super().__call__(scope, receive, send)
        finally:
            metrics.websocket(-1)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An HTTP request within its caller's limits (checked before its body is read, so
        that a refusal costs an authentication, not a parse), metered and charged."""
        request = Request(scope)
        runtime: Runtime = self._runtime_of(request)
        open_mode = runtime.settings.auth.mode == AuthMode.OPEN
        caller = await caller_of(runtime, request)
        scope.setdefault("state", {})["caller"] = caller  # get_context needs no second look
        address = request.client.host if request.client else None
        key = caller_key(caller, address, open_mode)
        wait = await self.buckets.take(key)
        if not wait and self.shares.full(key):  # as many at once as it may: one must end
            wait = TARPIT_S
        owed = 0.0 if wait else self.shares.owed(key)
        if 0 < owed <= TARPIT_S:
            await asyncio.sleep(owed)  # a short debt: served once repaid
        elif owed:
            wait = owed
        if wait:
            await asyncio.sleep(min(wait, TARPIT_S))  # asking again at once gains nothing
            await _too_many(self.buckets.retry_after(wait))(scope, receive, send)
            return
        meter = Meter()
        reset = METER.set(meter)
        contended = self.shares.begin(key)
        try:
            await metered(super().__call__(scope, receive, send), meter)
        finally:
            METER.reset(reset)
            self.shares.end(key, meter.seconds, contended)

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
        state = request.scope.get("state") or {}
        if "caller" in state:  # HTTP: authenticated by `_limited`
            caller = state["caller"]
        else:
            caller = await runtime.auth.authenticate(token) if token else None
        if caller is None and isinstance(response, Response):
            response.headers.update(UNAUTHENTICATED_HEADERS)
        return make_context(runtime, request, response, caller, token, address)

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Any,
        context: Context,
        root_value: None,
        request_data: Any,
    ) -> ExecutionResult:
        """Queries and mutations over HTTP; a subscription only over WebSocket (refused here
        with BAD_REQUEST rather than run as a query)."""
        if "subscription" in (request_data.query or "") and _is_subscription(request_data):
            error = GraphQLError(
                "subscriptions are served over WebSocket (graphql-transport-ws)",
                extensions={"code": "BAD_REQUEST"},
            )
            return ExecutionResult(data=None, errors=[error])
        return await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )

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


def _too_many(retry_after: int) -> JSONResponse:
    """429 with `Retry-After` and a RATE_LIMITED GraphQL error."""
    error = {
        "message": "too many requests: slow down and retry later",
        "extensions": {"code": "RATE_LIMITED", "retryAfter": retry_after},
    }
    return JSONResponse(
        {"data": None, "errors": [error]},
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


def _is_subscription(request_data: Any) -> bool:
    try:
        document = parse(request_data.query, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return False  # the schema answers the syntax error with its code
    chosen = request_data.operation_name
    return any(
        isinstance(d, OperationDefinitionNode)
        and d.operation is OperationType.SUBSCRIPTION
        and (chosen is None or (d.name is not None and d.name.value == chosen))
        for d in document.definitions
    )


class JobFiles:
    """`/files/rtstruct/<job id>/...`: job outputs, to a caller who may see the job.

    The same bearer authentication as `/graphql` (anyone in open mode): 401 without a valid
    token. A caller reads the outputs of their own jobs (admins every job's); like
    `rtStructResults`, callers who see identity (admin, radiologist) read every RT-STRUCT
    output, the watcher's too. A job the caller may not see answers 404, as one that does
    not exist; a path leaving the results directory is refused by StaticFiles.
    """

    def __init__(self, directory: Path, runtime_of: Any) -> None:
        self.static = StaticFiles(directory=directory)
        self._runtime_of = runtime_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await WebSocketClose()(scope, receive, send)
            return
        request = Request(scope)
        runtime: Runtime = self._runtime_of(request)
        caller = await caller_of(runtime, request)
        if caller is None:
            response: Response = JSONResponse(
                {"error": "authentication required: send Authorization: Bearer <token>"},
                status_code=401,
                headers=UNAUTHENTICATED_HEADERS,
            )
        else:
            path = self.static.get_path(scope)
            if await self._may_read(runtime, caller, path, request):
                if self.static.directory is not None and ".." not in Path(path).parts:
                    await full_grid.ensure(Path(self.static.directory) / path)
                response = await self.static.get_response(path, scope)
            else:
                response = JSONResponse({"error": "not found"}, status_code=404)
        await response(scope, receive, send)

    @staticmethod
    async def _may_read(runtime: Runtime, caller: Principal, path: str, request: Request) -> bool:
        """Whether `path` (normalised, relative to the results directory) is an output of a
        job the caller may see; a refusal of an existing job is audited."""
        kind, job_id, *rest = [*Path(path).parts, "", ""]
        if kind != FILES_KIND.lower() or not _JOB_ID.fullmatch(job_id) or not rest[0]:
            return False
        job = await JobStore(runtime.sessions).get(job_id)
        if job is None or job.kind != FILES_KIND:
            return False
        if policy.sees_identity(caller) or policy.may_see_job(caller, job.owner):
            return True
        refusal = Entry(
            actor=caller.actor,
            action="file-read",
            outcome="refused",
            object_type="job",
            object_ref=job_id,
            address=request.client.host if request.client else None,
        )
        with contextlib.suppress(AuditUnavailable):  # refused either way
            runtime.audit.submit(refusal)
        return False


def create_app(settings: Settings) -> Starlette:
    """The gateway app; clients are created in the lifespan, migrations applied first."""

    def runtime_of(conn: Request | WebSocket) -> Runtime:
        runtime: Runtime = conn.app.state.runtime
        return runtime

    scrape = MetricsEndpoint(settings.metrics, runtime_of)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = await Runtime.create(settings)
        app.state.runtime = runtime
        buckets.share(runtime.redis, runtime.keys.prefix)  # one rate per caller, every process
        metrics.process("gateway", __version__)
        log.info("gateway started with %d sources", len(runtime.sources))
        try:
            yield
        finally:
            await scrape.aclose()
            await runtime.aclose()

    async def health(request: Request) -> JSONResponse:
        body = await request.app.state.runtime.health()
        return JSONResponse(body, status_code=200 if body["database"]["up"] else 503)

    dashboard = Dashboard(examples=EXAMPLES)
    buckets = SharedBuckets(TokenBuckets(settings.rate_per_s, settings.burst))
    budget = TokenBuckets(settings.time_per_s, settings.time_burst_s)  # seconds, per caller
    shares = TimeShares(budget, settings.max_concurrent_per_caller)
    graphql = GatewayGraphQL(runtime_of, dashboard, buckets, shares)
    results = Path(settings.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    routes = [
        Route("/health", health),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Mount("/files", JobFiles(results, runtime_of), name="files"),
        Route("/import", import_upload, methods=["POST"]),
        *OidcLogin(runtime_of).routes(),  # /auth/config, /auth/oidc/login, /auth/oidc/callback
    ]
    if settings.dicomweb.enabled:  # off: both answer 404
        routes.append(Mount("/dicomweb", dicomweb.router(runtime_of), name="dicomweb"))
        routes.append(Mount("/viewer", viewer.router(runtime_of), name="viewer"))
    if settings.metrics.enabled:  # no token: Prometheus has none; allow-listed instead
        routes.append(Route("/metrics", scrape.serve, methods=["GET"]))
    routes += dashboard.routes()  # last: its fallback takes only what no API route took
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(
        Hardened,
        allowed_hosts=settings.allowed_hosts,
        max_body_bytes=settings.max_body_bytes,
    )
    return app
