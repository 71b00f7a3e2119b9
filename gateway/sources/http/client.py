"""HTTP plumbing shared by the HTTP adapters (Orthanc REST, DICOMweb).

One httpx client per source, built from its `SourceConfig`: connect and read
timeouts, a connection pool sized from `max_concurrency`, and authentication
(none, HTTP basic, or an OAuth2 client-credentials bearer token that is fetched
on first use, refreshed before it expires, and renewed once when the archive
answers 401). Every httpx error and unexpected status is translated here into
the gateway's error tree; messages carry the operation and the technical cause,
never a URL (query strings can hold patient names) or a response body.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection
from typing import Any, TypeVar

import httpx

from gateway.core.errors import (
    AuthError,
    ConfigError,
    NotFound,
    NotSupported,
    SourceError,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.core.settings import SourceConfig
from gateway.sources.resilience import Guard

T = TypeVar("T")
USER_AGENT = "pacs-gateway"
# No compression: archives sit on the LAN, and Orthanc, asked for gzip, spends
# ~18 ms compressing each 512 KB instance (and ~10 ms per 400 KB JSON answer).
DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
_UNAVAILABLE = {502, 503}
_TIMEOUT = {408, 504}


async def gather(*calls: Awaitable[T]) -> list[T]:
    """Run calls concurrently; on the first failure cancel the others, then raise it."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def translate(exc: httpx.HTTPError, source: str, operation: str) -> SourceError:
    """The gateway error for an httpx transport error."""
    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__.replace("Timeout", " timeout").lower()
        return SourceTimeout(source, f"{operation}: {kind}")
    if isinstance(exc, httpx.ConnectError):
        return SourceUnavailable(source, f"{operation}: cannot connect")
    if isinstance(exc, httpx.RemoteProtocolError):
        return SourceProtocolError(source, f"{operation}: malformed HTTP answer")
    if isinstance(exc, httpx.DecodingError):
        return SourceProtocolError(source, f"{operation}: undecodable body")
    if isinstance(exc, httpx.NetworkError):
        return SourceUnavailable(source, f"{operation}: connection lost")
    return SourceProtocolError(source, f"{operation}: HTTP failure ({type(exc).__name__})")


def status_error(status: int, source: str, operation: str) -> SourceError:
    """The gateway error for an unexpected HTTP status."""
    message = f"{operation}: HTTP {status}"
    if status in (401, 403):
        return AuthError(source, message)
    if status == 404:
        return NotFound(source, message)
    if status in (405, 501):
        return NotSupported(source, message)
    if status in _UNAVAILABLE or status == 429:
        return SourceUnavailable(source, message)
    if status in _TIMEOUT:
        return SourceTimeout(source, message)
    return SourceProtocolError(source, message)


def parse_json(response: httpx.Response, source: str, operation: str) -> Any:
    """The JSON body of a read response; an empty body (e.g. 204) is None."""
    if not response.content.strip():
        return None
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        raise SourceProtocolError(source, f"{operation}: body is not valid JSON") from None


class ClientCredentials(httpx.Auth):
    """OAuth2 client-credentials bearer auth (RFC 6749 §4.4) with refresh and one renewal."""

    def __init__(
        self,
        config: SourceConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not config.token_url:
            raise ConfigError(f"'sources.{config.id}.token_url' is required for bearer auth")
        self.source = config.id
        self.token_url = config.token_url
        self._credentials = (config.client_id or "", config.client_secret or "")
        self._timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0

    async def token(self, stale: str | None = None) -> str:
        """A valid access token; a new one when the current one is `stale` or expiring."""
        async with self._lock:
            fresh = self._token is not None and self._clock() < self._expires_at
            if fresh and self._token != stale:
                assert self._token is not None
                return self._token
            return await self._fetch()

    async def _fetch(self) -> str:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, transport=self._transport)
        try:
            response = await self._client.post(
                self.token_url,
                data={"grant_type": "client_credentials"},
                auth=self._credentials,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            )
        except httpx.HTTPError as exc:
            raise translate(exc, self.source, "token request") from None
        self.fetches += 1
        if response.status_code in (400, 401, 403):
            status = response.status_code
            raise AuthError(self.source, f"token endpoint refused the client (HTTP {status})")
        if response.status_code != 200:
            raise status_error(response.status_code, self.source, "token request")
        body = parse_json(response, self.source, "token request")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceProtocolError(self.source, "token request: no access_token in answer")
        lifetime = body.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        self._token = token
        self._expires_at = self._clock() + lifetime - min(30.0, lifetime * 0.1)
        return token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            token = await self.token(stale=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise RuntimeError("ClientCredentials is async only")

    async def aclose(self) -> None:
        """Close the token endpoint's client."""
        if self._client is not None:
            await self._client.aclose()


def build_auth(
    config: SourceConfig, token_transport: httpx.AsyncBaseTransport | None = None
) -> httpx.Auth | None:
    """The httpx auth for `config.auth`."""
    if config.auth == "basic":
        return httpx.BasicAuth(config.username or "", config.password or "")
    if config.auth == "bearer":
        return ClientCredentials(config, transport=token_transport)
    return None


def build_client(
    config: SourceConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    token_transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An httpx client for one source: base URL, timeouts, pool limits, auth."""
    if not config.url:
        raise SourceProtocolError(config.id, "no url configured")
    timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
    limits = httpx.Limits(
        max_connections=config.max_concurrency * 2,
        max_keepalive_connections=config.max_concurrency,
    )
    return httpx.AsyncClient(
        base_url=config.url,
        timeout=timeout,
        limits=limits,
        auth=build_auth(config, token_transport),
        transport=transport,
        headers=DEFAULT_HEADERS,
        follow_redirects=False,
    )


class HttpClient:
    """A source's guarded httpx client: every call timed, retried, translated."""

    def __init__(
        self,
        config: SourceConfig,
        guard: Guard,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        token_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.source = config.id
        self.guard = guard
        self.client = build_client(config, transport=transport, token_transport=token_transport)

    async def request(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        ok: Collection[int] = (),
        idempotent: bool = True,
        timeout_s: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request under the guard and read its body; raise on a non-2xx not in `ok`."""

        async def call() -> httpx.Response:
            try:
                response = await self.client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                raise translate(exc, self.source, operation) from None
            except httpx.StreamConsumed:  # a 401 renewal cannot resend a one-shot body
                raise AuthError(
                    self.source, f"{operation}: token renewed, but a streamed body cannot be resent"
                ) from None
            if not (200 <= response.status_code < 300 or response.status_code in ok):
                raise status_error(response.status_code, self.source, operation)
            return response

        return await self.guard.call(operation, call, idempotent=idempotent, timeout_s=timeout_s)

    async def json(self, operation: str, method: str, url: str, **kwargs: Any) -> Any:
        """`request`, then the body parsed as JSON (None when empty)."""
        response = await self.request(operation, method, url, **kwargs)
        return parse_json(response, self.source, operation)

    async def open(self, operation: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request under the guard and return it with its body still unread.

        The guard covers the request up to the response headers; the body is
        then read with `iter_body`, each read bounded by the read timeout.
        """

        async def call() -> httpx.Response:
            try:
                request = self.client.build_request(method, url, **kwargs)
                response = await self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise translate(exc, self.source, operation) from None
            if not 200 <= response.status_code < 300:
                await response.aclose()
                raise status_error(response.status_code, self.source, operation)
            return response

        return await self.guard.call(operation, call, idempotent=True)

    async def iter_body(self, response: httpx.Response, operation: str) -> AsyncIterator[bytes]:
        """The chunks of an opened response's body; closes the response."""
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise translate(exc, self.source, operation) from None
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """Close the client and the token endpoint's client."""
        await self.client.aclose()
        auth = self.client.auth
        if isinstance(auth, ClientCredentials):
            await auth.aclose()
