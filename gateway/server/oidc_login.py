"""The browser login through the OIDC provider: the authorization code flow with PKCE.

The dashboard's CSP lets a page fetch from the gateway only, so the gateway does the
exchange, not the SPA:

- `GET /auth/config`: `{"oidc": true|false}`, unauthenticated: whether the login page
  offers "Sign in with your organisation".
- `GET /auth/oidc/login?next=/path`: a PKCE verifier (S256), a state and a nonce are kept
  in a short-lived cookie (HttpOnly, SameSite=Lax, path /auth/oidc, HMAC-signed with a key
  derived from the gateway's cursor key, so every gateway sharing `GATEWAY_CURSOR_KEY`
  accepts it); then 302 to the provider's authorization endpoint (from the issuer's
  discovery document, cached by the verifier).
- `GET /auth/oidc/callback?code&state`: the state checked against the cookie, the code and
  the verifier POSTed to the provider's token endpoint server-side, the ID token checked
  (issuer, audience = client id, signature, expiry, nonce) and the credential verified
  exactly as a bearer token (`OidcVerifier.verify`: the access token, else the ID token
  when its audience is `oidc_audience`); then 302 to `/login#oidc=<token>&expires=..&next=..`.
  The fragment is never sent to a server nor logged; the SPA keeps the token as its
  session. Any failure is 302 to `/login#error=<code>` (`ERRORS`).

Success and failure are audited as local logins are (`login`, `login-failed`); no token,
code or verifier is ever logged. Without `[auth] oidc_client_id` (or without an issuer)
the two `/auth/oidc/` paths answer 404.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.auth import audit
from gateway.auth.audit import Entry
from gateway.auth.oidc import OidcVerifier, Verified, exchange_code, looks_like_jwt, pkce_challenge
from gateway.runtime import Runtime

log = logging.getLogger(__name__)

COOKIE = "pgw_oidc"
COOKIE_PATH = "/auth/oidc"
FLOW_TTL_S = 600  # a login must come back from the provider within this long
# The codes `/login#error=` may carry (the login page explains each)
ERRORS = {
    "provider": "the provider refused or the user cancelled",
    "state": "no login of this browser is waiting for this answer (or it is too old)",
    "unavailable": "the provider's discovery document could not be had",
    "exchange": "the provider did not exchange the code for tokens",
    "token": "the provider's tokens were refused (signature, audience, nonce, expiry, roles)",
}
_CONTROL = {chr(c) for c in range(0x20)} | {"\x7f", "\\"}


def local_next(raw: str | None) -> str:
    """`raw` when it is a path on this gateway, else "/": it starts with one "/" and holds
    no backslash or control character (browsers read "/\\evil" and "/\\t/evil" as "//evil")."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or len(raw) > 2048:
        return "/"
    return "/" if any(c in _CONTROL for c in raw) else raw


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(key: bytes, data: dict[str, Any]) -> str:
    """`data` as a cookie value: base64url JSON and its HMAC-SHA256."""
    body = _b64(json.dumps(data, separators=(",", ":")).encode())
    return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def unseal(key: bytes, value: str | None, now: float, ttl_s: float = FLOW_TTL_S) -> dict[str, Any]:
    """The data of a cookie `seal` made with `key` less than `ttl_s` ago; {} otherwise."""
    body, _, mac = (value or "").partition(".")
    if not body or not mac:
        return {}
    wanted = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(mac, wanted):
        return {}
    try:
        data = json.loads(_unb64(body))
    except ValueError:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("t"), int | float):
        return {}
    return data if 0 <= now - data["t"] <= ttl_s else {}


class OidcLogin:
    """The three routes, over the runtime of the running app."""

    def __init__(self, runtime_of: Callable[[Request], Runtime]) -> None:
        self._runtime_of = runtime_of

    def routes(self) -> list[BaseRoute]:
        """`/auth/config`, `/auth/oidc/login`, `/auth/oidc/callback` (GET)."""
        return [
            Route("/auth/config", self.config, methods=["GET"]),
            Route("/auth/oidc/login", self.login, methods=["GET"], name="oidc_login"),
            Route("/auth/oidc/callback", self.callback, methods=["GET"], name="oidc_callback"),
        ]

    def _verifier(self, runtime: Runtime) -> OidcVerifier | None:
        """The issuer's verifier when the browser login is configured, else None."""
        if not runtime.settings.auth.oidc_client_id:
            return None
        return runtime.auth.oidc

    async def config(self, request: Request) -> Response:
        """What the login page offers."""
        on = self._verifier(self._runtime_of(request)) is not None
        return JSONResponse({"oidc": on}, headers={"cache-control": "no-store"})

    async def login(self, request: Request) -> Response:
        """Start a login: remember it in the cookie, send the browser to the provider."""
        runtime = self._runtime_of(request)
        verifier = self._verifier(runtime)
        if verifier is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        endpoint = await verifier.endpoint("authorization_endpoint")
        if endpoint is None:
            return _to_login({"error": "unavailable"})
        auth = runtime.settings.auth
        flow: dict[str, Any] = {
            "s": secrets.token_urlsafe(32),
            "n": secrets.token_urlsafe(32),
            "v": secrets.token_urlsafe(64),  # 86 characters: RFC 7636 asks 43 to 128
            "x": local_next(request.query_params.get("next")),
            "t": int(time.time()),
        }
        params = {
            "response_type": "code",
            "client_id": auth.oidc_client_id,
            "redirect_uri": _redirect_uri(request),
            "scope": auth.oidc_scopes,
            "state": flow["s"],
            "nonce": flow["n"],
            "code_challenge": pkce_challenge(flow["v"]),
            "code_challenge_method": "S256",
        }
        joiner = "&" if "?" in endpoint else "?"
        response = RedirectResponse(endpoint + joiner + urlencode(params), status_code=302)
        response.headers["cache-control"] = "no-store"
        response.set_cookie(
            COOKIE,
            seal(_key(runtime), flow),
            max_age=FLOW_TTL_S,
            path=COOKIE_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )
        return response

    async def callback(self, request: Request) -> Response:
        """The provider's answer: exchange the code, verify, hand the token to the SPA."""
        runtime = self._runtime_of(request)
        verifier = self._verifier(runtime)
        if verifier is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        flow = unseal(_key(runtime), request.cookies.get(COOKIE), time.time())
        outcome = await self._finish(request, runtime, verifier, flow)
        address = request.client.host if request.client else None
        if isinstance(outcome, str):
            await audit.record(
                runtime.sessions,
                Entry(
                    actor=None,
                    action="login-failed",
                    outcome="refused",
                    object_type="user",
                    address=address,
                    details={"via": "oidc", "reason": outcome},
                ),
            )
            log.info("OIDC login refused: %s", outcome)
            response = _to_login({"error": outcome})
        else:
            principal = outcome[1].principal
            await audit.record(
                runtime.sessions,
                Entry(
                    actor=principal.actor,
                    action="login",
                    object_type="user",
                    object_ref=principal.user_id,
                    address=address,
                    details={"via": "oidc"},
                ),
            )
            expires = datetime.fromtimestamp(outcome[1].expires_at, UTC)
            response = _to_login(
                {
                    "oidc": outcome[0],
                    "expires": expires.isoformat(timespec="seconds"),
                    "next": local_next(flow.get("x")),
                }
            )
        response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")
        return response

    async def _finish(
        self, request: Request, runtime: Runtime, verifier: OidcVerifier, flow: dict[str, Any]
    ) -> tuple[str, Verified] | str:
        """(the credential for the SPA, its verification), or the error code."""
        params = request.query_params
        if "error" in params:
            return "provider"
        state, code = params.get("state") or "", params.get("code") or ""
        wanted = flow.get("s")
        if not isinstance(wanted, str) or not code or not hmac.compare_digest(state, wanted):
            return "state"
        token_endpoint = await verifier.endpoint("token_endpoint")
        found = await verifier.discovery()
        if token_endpoint is None or found is None:
            return "unavailable"
        auth = runtime.settings.auth
        assert auth.oidc_client_id is not None
        async with httpx.AsyncClient(timeout=verifier.timeout_s) as http:
            answer = await exchange_code(
                http,
                token_endpoint,
                code=code,
                code_verifier=str(flow.get("v")),
                redirect_uri=_redirect_uri(request),
                client_id=auth.oidc_client_id,
                client_secret=auth.oidc_client_secret,
                auth_methods=found.get("token_endpoint_auth_methods_supported"),
                timeout_s=verifier.timeout_s,
            )
        if answer is None:
            return "exchange"
        id_token = answer.get("id_token")
        if isinstance(id_token, str):
            claims = await verifier.verify_id_token(id_token, auth.oidc_client_id, str(flow["n"]))
            if claims is None:
                return "token"
        else:
            id_token = None
        for candidate in (answer.get("access_token"), id_token):
            if isinstance(candidate, str) and looks_like_jwt(candidate):
                verified = await verifier.verify(candidate)
                if verified is not None:
                    return candidate, verified
        return "token"


def _key(runtime: Runtime) -> bytes:
    """The cookie's HMAC key: derived from the cursor key (one per gateway fleet)."""
    return hmac.new(runtime.cursor_key, b"pacs-gateway/oidc-login", hashlib.sha256).digest()


def _redirect_uri(request: Request) -> str:
    """This gateway's callback, as the browser reaches it (Host is checked by `Hardened`)."""
    return str(request.url_for("oidc_callback"))


def _to_login(fragment: dict[str, str]) -> Response:
    """302 to the login page with `fragment` after "#" (never sent to a server)."""
    response = RedirectResponse("/login#" + urlencode(fragment), status_code=302)
    response.headers["cache-control"] = "no-store"
    return response
