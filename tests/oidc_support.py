"""A loopback OIDC provider for the tests: a discovery document and a JWKS with RSA keys
made here (tokens signed with them, or forged), and for browser logins an authorization
endpoint that at once sends the browser back with a code (as a provider does for a user
already signed in there) and a token endpoint that checks the PKCE verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "pacs-gateway"
ROLES_CLAIM = "realm_access.roles"


def b64(data: bytes) -> str:
    """base64url without padding, as JOSE writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Key:
    """An RSA signing key and its public JWK."""

    kid: str
    private: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwk(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass
class Issuer:
    """A loopback OIDC issuer: discovery document and JWKS, keys replaceable (rotation)."""

    url: str
    keys: list[Key]
    jwks_hits: int = 0

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": str(uuid.uuid4()),
            "preferred_username": "dr.oidc",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "realm_access": {"roles": ["offline_access", "Radiologist"]},
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: Key | None = None, kid: str | None = None, **changes: Any) -> str:
        key = key or self.keys[0]
        headers = {"kid": kid or key.kid}
        return jwt.encode(self.claims(**changes), key.private, algorithm="RS256", headers=headers)


class IssuerHandler(BaseHTTPRequestHandler):
    """Discovery document and JWKS of the server's `issuer`."""

    issuer: Issuer

    def do_GET(self) -> None:
        issuer = self.server.issuer  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        if path == "/realms/test/.well-known/openid-configuration":
            body: Any = {"issuer": issuer.url, "jwks_uri": issuer.url + "/protocol/certs"}
        elif path == "/realms/test/protocol/certs":
            issuer.jwks_hits += 1
            body = {"keys": [k.jwk() for k in issuer.keys]}
        else:
            self.send_error(404)
            return
        self._json(200, body)

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


CLIENT_ID = "pacs-dashboard"
CLIENT_SECRET = "dashboard-secret-not-for-production"


@dataclass
class Provider:
    """The issuer plus what a login needs: codes given out, exchanges seen, and switches
    to misbehave."""

    issuer: Issuer
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # every token the provider signed
    deny: bool = False  # the user refuses at the provider: error=access_denied
    wrong_challenge: bool = False  # remember another challenge: the verifier will not match
    claims: dict[str, Any] = field(default_factory=dict)  # changes to the tokens' claims

    @property
    def authorize_url(self) -> str:
        return self.issuer.url + "/protocol/auth"

    @property
    def token_url(self) -> str:
        return self.issuer.url + "/protocol/token"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer.url,
            "jwks_uri": self.issuer.url + "/protocol/certs",
            "authorization_endpoint": self.authorize_url,
            "token_endpoint": self.token_url,
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def authorize(self, query: dict[str, str]) -> str:
        """Where the authorization endpoint sends the browser."""
        assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
        assert query["code_challenge_method"] == "S256"
        assert query["scope"].split()[0] == "openid"
        back = query["redirect_uri"]
        if self.deny:
            return f"{back}?{urlencode({'error': 'access_denied', 'state': query['state']})}"
        code = secrets.token_urlsafe(24)
        challenge = query["code_challenge"]
        if self.wrong_challenge:
            challenge = s256(secrets.token_urlsafe(64))
        self.codes[code] = {"challenge": challenge, "redirect_uri": back, "nonce": query["nonce"]}
        return f"{back}?{urlencode({'code': code, 'state': query['state']})}"

    def exchange(self, form: dict[str, str], authorization: str | None) -> tuple[int, Any]:
        """The token endpoint's answer (status, JSON body)."""
        self.exchanges.append(form)
        wanted = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if authorization != wanted:
            return 401, {"error": "invalid_client"}
        grant = self.codes.pop(form.get("code", ""), None)  # a code is good once
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or form.get("redirect_uri") != grant["redirect_uri"]
            or s256(form.get("code_verifier", "")) != grant["challenge"]
        ):
            return 400, {"error": "invalid_grant"}
        sub = str(uuid.uuid4())
        access = self.issuer.token(sub=sub, **self.claims)
        ident = self.issuer.token(sub=sub, aud=CLIENT_ID, nonce=grant["nonce"], **self.claims)
        self.tokens += [access, ident]
        body = {"access_token": access, "id_token": ident, "token_type": "Bearer"}
        return 200, {**body, "expires_in": 300}


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of `verifier`."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class ProviderHandler(IssuerHandler):
    """The issuer's handler plus the authorization and token endpoints."""

    def _provider(self) -> Provider:
        found: Provider = self.server.provider  # type: ignore[attr-defined]
        return found

    def do_GET(self) -> None:
        provider = self._provider()
        parts = urlsplit(self.path)
        if parts.path == "/realms/test/.well-known/openid-configuration":
            self._json(200, provider.discovery())
        elif parts.path == "/realms/test/protocol/auth":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            self.send_response(302)
            self.send_header("Location", provider.authorize(query))
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            super().do_GET()

    def do_POST(self) -> None:
        provider = self._provider()
        if urlsplit(self.path).path != "/realms/test/protocol/token":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        self._json(*provider.exchange(form, self.headers.get("Authorization")))


@contextmanager
def serving(handler: type[IssuerHandler]) -> Iterator[Provider]:
    """An issuer (key `k1`) served on a loopback port by `handler`, as a Provider."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    issuer = Issuer(url=f"http://127.0.0.1:{server.server_address[1]}/realms/test", keys=[])
    issuer.keys = [Key("k1")]
    found = Provider(issuer)
    server.issuer = issuer  # type: ignore[attr-defined]
    server.provider = found  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
