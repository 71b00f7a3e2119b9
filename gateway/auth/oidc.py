"""OIDC bearer tokens: JWTs from a hospital's identity provider (Keycloak, ...).

The issuer's signing keys come from its JWKS (found through
`{issuer}/.well-known/openid-configuration`), are cached by `kid`, and are fetched again
when a token names a `kid` not yet known (key rotation), at most once per
`refresh_interval_s`. Only asymmetric algorithms are accepted: never `none`, never HS*
(a public key used as an HMAC secret). A token must carry `iss`, `aud`, `exp` and `sub`;
roles come from `roles_claim` (a dotted path such as Keycloak's `realm_access.roles`).

The browser login (authorization code flow with PKCE, `gateway/server/oidc_login.py`)
uses the same discovery document for the provider's endpoints (`OidcVerifier.discovery`,
one fetch for both), `exchange_code` for the back-channel exchange, and `verify_id_token`
for the ID token (audience = the client id, and the login's nonce).

Nothing here raises to the caller: a refused token or an unreachable issuer is `None`
and a log line that never quotes the token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt

from gateway.auth.principal import Principal
from gateway.core.enums import Role

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")
_FAMILY = {"RSA": ("RS256", "RS384", "RS512", "PS256"), "EC": ("ES256", "ES384")}
_CURVE = {"ES256": "P-256", "ES384": "P-384"}
LEEWAY_S = 30.0  # clock skew tolerated on exp and nbf
REFRESH_INTERVAL_S = 30.0  # at most one JWKS fetch per this many seconds
RETRY_EMPTY_S = 5.0  # sooner while no key was ever fetched (issuer down at start)
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_ROLES = {r.value.lower(): r for r in Role}
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # an OAuth `error` value fit for a log


@dataclass(frozen=True, slots=True)
class Verified:
    """A verified token: who it stands for and until when (`exp`, seconds since the epoch)."""

    principal: Principal
    expires_at: float


def looks_like_jwt(token: str) -> bool:
    """True for three base64url parts separated by dots (our own tokens have no dots)."""
    return bool(_JWT.match(token))


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """The value at `path`: the claim of that exact name (namespaced URL claims contain
    dots), else a dotted walk through nested objects (`realm_access.roles`); None if absent."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def roles_of(claims: Mapping[str, Any], roles_claim: str) -> frozenset[Role]:
    """Our roles among the claim's values (a list, or one space- or comma-separated
    string), matched case-insensitively; other values are ignored."""
    value = claim(claims, roles_claim)
    if isinstance(value, str):
        names: list[Any] = value.replace(",", " ").split()
    elif isinstance(value, list | tuple):
        names = list(value)
    else:
        return frozenset()
    keys = (n.strip().lower() for n in names if isinstance(n, str))
    return frozenset(_ROLES[k] for k in keys if k in _ROLES)


def principal_from_claims(claims: Mapping[str, Any], roles_claim: str) -> Principal | None:
    """The caller verified claims stand for; None without `sub` or without any of our roles."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        return None
    roles = roles_of(claims, roles_claim)
    if not roles:
        return None
    name = claims.get("preferred_username")
    username = name if isinstance(name, str) and name.strip() else sub
    return Principal(
        user_id=f"oidc:{sub}",
        username=username,
        roles=roles,
        sources=None,
        via="oidc",
        token_id=None,
    )


def signing_keys(jwks: Any) -> dict[str, dict[str, Any]]:
    """The JWKS's public signing keys we could use, by `kid` (others are skipped)."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise ValueError("the JWKS has no 'keys' list")
    found: dict[str, dict[str, Any]] = {}
    for key in keys:
        if not isinstance(key, dict) or not isinstance(key.get("kid"), str):
            continue
        if key.get("kty") not in _FAMILY or key.get("use", "sig") != "sig":
            continue
        if "alg" in key and key["alg"] not in ALGORITHMS:
            continue
        if any(part in key for part in ("d", "p", "q")):  # a private key published by mistake
            continue
        found[key["kid"]] = key
    return found


def key_allows(key: Mapping[str, Any], alg: str) -> bool:
    """Whether `key` may verify a token signed with `alg` (the key's own `alg` when it
    names one, else any allowed algorithm of its type and curve)."""
    if alg not in ALGORITHMS:
        return False
    if "alg" in key:
        return bool(key["alg"] == alg)
    if alg not in _FAMILY.get(str(key.get("kty")), ()):
        return False
    return alg not in _CURVE or key.get("crv") == _CURVE[alg]


class OidcVerifier:
    """Verifies an issuer's JWTs against its published keys."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        roles_claim: str = "roles",
        http: httpx.AsyncClient | None = None,
        *,
        refresh_interval_s: float = REFRESH_INTERVAL_S,
        leeway_s: float = LEEWAY_S,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.roles_claim = roles_claim
        self.http = http
        self.refresh_interval_s = refresh_interval_s
        self.leeway_s = leeway_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.fetches = 0  # JWKS fetches attempted (for tests and metrics)
        self._discovery: dict[str, Any] | None = None
        self._keys: dict[str, dict[str, Any]] = {}
        self._jwks: dict[tuple[str, str], jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._lock = asyncio.Lock()

    async def authenticate(self, token: str) -> Principal | None:
        """The caller a token stands for, or None."""
        found = await self.verify(token)
        return found.principal if found is not None else None

    async def verify(self, token: str) -> Verified | None:
        """The verified caller and the token's expiry, or None (refused or issuer away)."""
        claims = await self._claims(token, self.audience)
        if claims is None:
            return None
        principal = principal_from_claims(claims, self.roles_claim)
        if principal is None:
            return _refused(f"no 'sub' or none of our roles in {self.roles_claim!r}")
        return Verified(principal, float(claims["exp"]))

    async def verify_id_token(
        self, token: str, client_id: str, nonce: str
    ) -> Mapping[str, Any] | None:
        """The claims of an ID token issued to `client_id` for the login that sent `nonce`
        (signature, issuer, audience, expiry as for bearer tokens), or None."""
        claims = await self._claims(token, client_id)
        if claims is None:
            return None
        found = claims.get("nonce")
        if not isinstance(found, str) or not hmac.compare_digest(found, nonce):
            return _refused_claims("the ID token's nonce is not the login's")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp", client_id) != client_id:
            return _refused_claims("the ID token was issued to another client (azp)")
        return claims

    async def _claims(self, token: str, audience: str) -> dict[str, Any] | None:
        """The claims of a token signed by the issuer for `audience`, or None."""
        try:
            header = jwt.get_unverified_header(token)
            alg, kid = header.get("alg"), header.get("kid")
            if not isinstance(alg, str) or alg not in ALGORITHMS:
                return _refused_claims("algorithm not allowed")
            key = await self._key(kid if isinstance(kid, str) else None, alg)
            if key is None:
                return _refused_claims("no signing key of the issuer matches")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:  # the name says why; messages may quote the header
            missing = getattr(exc, "claim", None)
            return _refused_claims(type(exc).__name__ + (f" ({missing})" if missing else ""))
        except Exception as exc:  # never raise to the caller
            log.warning("OIDC token check failed: %s", type(exc).__name__)
            return None
        return claims

    async def discovery(self) -> Mapping[str, Any] | None:
        """The issuer's discovery document (fetched once, then cached; fetched again after
        a failed key refresh), or None when it cannot be had."""
        if self._discovery is not None:
            return self._discovery
        try:
            if self.http is not None:
                return await self._discover(self.http)
            async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                return await self._discover(http)
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            log.warning("OIDC discovery of %s failed: %s", self.issuer, _reason(exc))
            return None

    async def endpoint(self, name: str) -> str | None:
        """An http(s) endpoint the discovery document names (`authorization_endpoint`,
        `token_endpoint`), or None."""
        found = await self.discovery()
        url = found.get(name) if found is not None else None
        return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None

    async def _key(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        """The key for `kid` (or the only key, when the token names none); the JWKS is
        fetched again once when `kid` is unknown."""
        raw = self._pick(kid)
        if raw is None:
            async with self._lock:
                raw = self._pick(kid)  # another request may have refreshed meanwhile
                if raw is None and await self._refresh():
                    raw = self._pick(kid)
        if raw is None or not key_allows(raw, alg):
            return None
        cached = self._jwks.get((raw["kid"], alg))
        if cached is None:
            cached = jwt.PyJWK(raw, algorithm=alg)
            self._jwks[(raw["kid"], alg)] = cached
        return cached

    def _pick(self, kid: str | None) -> dict[str, Any] | None:
        if kid is not None:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _refresh(self) -> bool:
        """Fetch the JWKS unless it was fetched lately; True when the keys were replaced."""
        wait = self.refresh_interval_s
        if not self._keys:
            wait = min(RETRY_EMPTY_S, wait)
        now = self.clock()
        if now - self._fetched_at < wait:
            return False
        self._fetched_at = now
        self.fetches += 1
        try:
            if self.http is not None:
                keys = await self._fetch(self.http)
            else:
                async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                    keys = await self._fetch(http)
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            self._discovery = None  # discover again next time
            log.warning("OIDC keys of %s not fetched: %s", self.issuer, _reason(exc))
            return False
        self._keys, self._jwks = keys, {}
        log.info("OIDC keys of %s fetched: %d signing keys", self.issuer, len(keys))
        return True

    async def _fetch(self, http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
        uri = (await self._discover(http)).get("jwks_uri")
        if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
            raise ValueError("the discovery document has no jwks_uri")
        return signing_keys(await _get_json(http, uri, self.timeout_s))

    async def _discover(self, http: httpx.AsyncClient) -> dict[str, Any]:
        if self._discovery is None:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            found = await _get_json(http, url, self.timeout_s)
            if not isinstance(found, dict) or found.get("issuer") != self.issuer:
                raise ValueError("the discovery document names another issuer")
            self._discovery = found
        return self._discovery


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE code verifier (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def exchange_code(
    http: httpx.AsyncClient,
    token_endpoint: str,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    client_id: str,
    client_secret: str | None = None,
    auth_methods: Any = None,
    timeout_s: float = 10.0,
) -> dict[str, Any] | None:
    """The provider's token response for an authorization code (RFC 6749 4.1.3 with the
    PKCE verifier), or None: refused or unreachable, logged by status and OAuth `error`
    code only (never the code or a token). A confidential client authenticates with HTTP
    Basic unless the provider offers only `client_secret_post`."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": code_verifier,
    }
    extra: dict[str, Any] = {}
    if client_secret:
        methods = auth_methods if isinstance(auth_methods, list) else []
        if methods and "client_secret_basic" not in methods and "client_secret_post" in methods:
            form["client_secret"] = client_secret
        else:  # RFC 6749 2.3.1: both parts form-encoded first
            extra["auth"] = httpx.BasicAuth(quote_plus(client_id), quote_plus(client_secret))
    try:
        response = await http.post(
            token_endpoint,
            data=form,
            timeout=timeout_s,
            headers={"Accept": "application/json"},
            **extra,
        )
        answer = response.json() if response.content else None
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("OIDC code exchange failed: %s", _reason(exc))
        return None
    if response.status_code != 200 or not isinstance(answer, dict):
        error = answer.get("error") if isinstance(answer, dict) else None
        shown = error if isinstance(error, str) and _ERROR_CODE.match(error) else "-"
        log.warning("OIDC code exchange refused: HTTP %d, error %s", response.status_code, shown)
        return None
    return answer


async def _get_json(http: httpx.AsyncClient, url: str, timeout_s: float) -> Any:
    response = await http.get(url, timeout=timeout_s, headers={"Accept": "application/json"})
    response.raise_for_status()
    return response.json()


def _refused(why: str) -> Verified | None:
    """None, logged (with the reason, never the token)."""
    log.info("OIDC token refused: %s", why)
    return None


def _refused_claims(why: str) -> dict[str, Any] | None:
    _refused(why)
    return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, ValueError) else type(exc).__name__
