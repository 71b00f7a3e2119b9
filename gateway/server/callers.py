"""Who is calling a non-GraphQL route (`/files`, `/import`, `/dicomweb`): the same bearer
authentication as `/graphql`, everyone an admin in open mode."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from gateway.auth.principal import OPEN_CALLER, Principal
from gateway.core.enums import AuthMode
from gateway.core.errors import GatewayError
from gateway.runtime import Runtime


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def caller_of(runtime: Runtime, request: HTTPConnection) -> Principal | None:
    """The caller a request's bearer token stands for; None without a valid one."""
    if runtime.settings.auth.mode == AuthMode.OPEN:
        return OPEN_CALLER
    token = bearer(request.headers.get("authorization"))
    return await runtime.auth.authenticate(token) if token else None


UNAUTHENTICATED_HEADERS = {"WWW-Authenticate": 'Bearer realm="pacs-gateway"'}


def coded_error(
    exc: GatewayError, statuses: Mapping[type[GatewayError], int], default: int
) -> JSONResponse:
    """A refusal as JSON `{"code", "error"}` with the status of the first class in
    `statuses` that `exc` is (`default` otherwise); 401 names the Bearer scheme."""
    status = next((s for kind, s in statuses.items() if isinstance(exc, kind)), default)
    headers = UNAUTHENTICATED_HEADERS if status == 401 else None
    return JSONResponse({"code": exc.code, "error": str(exc)}, status_code=status, headers=headers)
