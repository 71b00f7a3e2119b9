"""HTTP plumbing shared by the HTTP adapters (Orthanc REST, DICOMweb).

One httpx client per source, built from its `SourceConfig`: connect and read
timeouts, a connection pool sized from `max_concurrency`, and authentication
(`gateway.sources.http.auth`: none, HTTP basic, or an OAuth2 client-credentials
bearer token). Every httpx error and unexpected status is translated into the
gateway's error tree (`gateway.sources.http.errors`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Collection, Sequence
from typing import Any, TypeVar

import httpx
from httpcore import AsyncHTTP11Connection

from gateway.core.errors import AuthError, SourceProtocolError
from gateway.core.settings import SourceConfig
from gateway.sources.http import ACCEPT_DICOM, DEFAULT_HEADERS
from gateway.sources.http import multipart as mp
from gateway.sources.http.auth import ClientCredentials, build_auth
from gateway.sources.http.errors import parse_json, status_error, translate
from gateway.sources.resilience import Guard

# httpcore reads a response 64 KiB at a time, each read a trip through h11 and httpx:
# a 263 MB study relayed cost 4,000 of them. Reads return what the socket holds, up to this.
AsyncHTTP11Connection.READ_NUM_BYTES = 1 << 20

__all__ = [
    "DEFAULT_HEADERS",
    "HttpClient",
    "build_client",
    "gather",
    "parse_json",
    "status_error",
    "translate",
]

T = TypeVar("T")


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

    async def open_parts(self, operation: str, url: str) -> tuple[httpx.Response, bytes | None]:
        """GET a WADO-RS answer, unread, with its multipart boundary (None: one bare
        application/dicom body); an answer of any other type is a protocol error."""
        response = await self.open(operation, "GET", url, headers=ACCEPT_DICOM)
        content_type = response.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() == "application/dicom":
            return response, None
        try:
            return response, mp.boundary_of(content_type)
        except mp.MultipartError:
            await response.aclose()
            raise SourceProtocolError(
                self.source, f"{operation}: answer is not multipart/related"
            ) from None

    async def open_multipart(self, operation: str, url: str) -> tuple[str, AsyncIterator[bytes]]:
        """A WADO-RS multipart answer's content type and its body as it comes, to pass on
        (one bare Part 10 file is not a multipart: a protocol error)."""
        response, boundary = await self.open_parts(operation, url)
        if boundary is None:
            await response.aclose()
            raise SourceProtocolError(self.source, f"{operation}: answer is not multipart/related")
        return response.headers["content-type"], self.iter_body(response, operation)

    async def iter_files(self, operation: str, paths: Sequence[str]) -> AsyncIterator[bytes]:
        """Each Part 10 file of these WADO-RS answers, in turn (one part in memory)."""
        for path in paths:
            response, boundary = await self.open_parts(operation, path)
            body = self.iter_body(response, operation)
            if boundary is None:
                yield b"".join([chunk async for chunk in body])
                continue
            try:
                async for _headers, part in mp.iter_parts(body, boundary):
                    yield part
            except mp.MultipartError as exc:
                raise SourceProtocolError(self.source, f"{operation}: {exc}") from None

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
