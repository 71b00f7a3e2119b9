"""Authentication of the HTTP adapters: one family of renewing credentials.

`RenewingAuth` holds one credential (a bearer token, a session id) shared by
concurrent requests: fetched on first use under a lock, and renewed once when
the archive answers 401, the request then sent again. `ClientCredentials`
(OAuth2 client credentials, RFC 6749 §4.4; also refreshed before it expires)
and `JSessionAuth` (XNAT's session) only say how a credential is fetched and
sent. `build_auth` picks a source's auth from its config.
"""

from __future__ import annotations

import asyncio
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx

from gateway.core.errors import AuthError, ConfigError, SourceProtocolError
from gateway.core.settings import SourceConfig
from gateway.sources.http import DEFAULT_HEADERS, USER_AGENT
from gateway.sources.http.errors import parse_json, status_error, translate

_SESSION_ID = re.compile(r"[A-Za-z0-9._-]{8,128}")


class RenewingAuth(httpx.Auth, ABC):
    """An async httpx auth with one credential, fetched when needed and renewed once on a 401."""

    # On a 401 for a streamed body (which cannot be sent twice): True sends it again
    # anyway (httpx raises StreamConsumed, which `HttpClient.request` reports); False
    # hands the 401 back to the caller, which sends the body again itself.
    resend_streams = True

    def __init__(self, source: str) -> None:
        self.source = source
        self._lock = asyncio.Lock()
        self._credential: str | None = None

    async def credential(self, stale: str | None = None) -> str:
        """The credential; a new one when there is none, it expires, or `stale` was refused."""
        async with self._lock:
            current = self._credential
            if current is None or current == stale or not self._valid():
                current = self._credential = await self._fetch()
            return current

    def _valid(self) -> bool:
        """False when the current credential must be renewed before use."""
        return True

    @abstractmethod
    async def _fetch(self) -> str:
        """A new credential, or a `SourceError`."""

    @abstractmethod
    def _apply(self, request: httpx.Request, credential: str) -> None:
        """Put `credential` on `request`."""

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        credential = await self.credential()
        self._apply(request, credential)
        response = yield request
        if response.status_code == 401:
            credential = await self.credential(stale=credential)
            if not self.resend_streams and not isinstance(request.stream, httpx.ByteStream):
                return  # a streamed body cannot be sent twice: the caller sends it again
            self._apply(request, credential)
            yield request

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise RuntimeError(f"{type(self).__name__} is async only")

    async def aclose(self) -> None:
        """Close the client the credential is fetched with."""


class ClientCredentials(RenewingAuth):
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
        super().__init__(config.id)
        self.token_url = config.token_url
        self._credentials = (config.client_id or "", config.client_secret or "")
        self._timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._expires_at = 0.0
        self.fetches = 0

    async def token(self, stale: str | None = None) -> str:
        """A valid access token; a new one when the current one is `stale` or expiring."""
        return await self.credential(stale)

    def _valid(self) -> bool:
        return self._clock() < self._expires_at

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
            raise AuthError(
                self.source, f"token endpoint refused the client (HTTP {status})", status=status
            )
        if response.status_code != 200:
            raise status_error(response.status_code, self.source, "token request")
        body = parse_json(response, self.source, "token request")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceProtocolError(self.source, "token request: no access_token in answer")
        lifetime = body.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        self._expires_at = self._clock() + lifetime - min(30.0, lifetime * 0.1)
        return token

    def _apply(self, request: httpx.Request, credential: str) -> None:
        request.headers["Authorization"] = f"Bearer {credential}"

    async def aclose(self) -> None:
        """Close the token endpoint's client."""
        if self._client is not None:
            await self._client.aclose()


class JSessionAuth(RenewingAuth):
    """XNAT session auth: POST /data/JSESSION once, send JSESSIONID, renew once on a 401."""

    resend_streams = False  # XnatSource.import_study sends its zip again

    def __init__(self, config: SourceConfig, transport: httpx.AsyncBaseTransport | None) -> None:
        super().__init__(config.id)
        self._login = httpx.AsyncClient(
            base_url=config.url or "",
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            transport=transport,
            headers=DEFAULT_HEADERS,
        )
        self._credentials = (config.username or "", config.password or "")
        self.logins = 0

    async def session(self, stale: str | None = None) -> str:
        """The session id; a new one when there is none or `stale` was refused."""
        return await self.credential(stale)

    async def _fetch(self) -> str:
        try:
            response = await self._login.post("/data/JSESSION", auth=self._credentials)
        except httpx.HTTPError as exc:
            raise translate(exc, self.source, "login") from None
        self.logins += 1
        if response.status_code in (401, 403):
            raise AuthError(self.source, "login: credentials refused")
        if response.status_code != 200:
            raise status_error(response.status_code, self.source, "login")
        session = response.text.strip()
        if not _SESSION_ID.fullmatch(session):
            raise SourceProtocolError(self.source, "login: no session id in the answer")
        return session

    def _apply(self, request: httpx.Request, credential: str) -> None:
        request.headers["Cookie"] = f"JSESSIONID={credential}"

    async def aclose(self) -> None:
        """Close the login client."""
        await self._login.aclose()


def build_auth(
    config: SourceConfig, token_transport: httpx.AsyncBaseTransport | None = None
) -> httpx.Auth | None:
    """The httpx auth for `config.auth`."""
    if config.auth == "basic":
        return httpx.BasicAuth(config.username or "", config.password or "")
    if config.auth == "bearer":
        return ClientCredentials(config, transport=token_transport)
    return None
