"""The browser login through an OIDC provider (authorization code flow with PKCE).

The provider is the loopback issuer of test_auth_oidc (its keys, claims and JWKS), grown
the two endpoints a login needs: an authorization endpoint that at once sends the browser
back to `redirect_uri` with a code and the state (as a provider does for a user already
signed in there), and a token endpoint that checks the PKCE verifier against the
challenge and answers a signed access token and ID token. The gateway runs in-process on
the test stack's database and Redis; each redirect is followed by hand, as a browser would.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.core.errors import ConfigError
from gateway.core.settings import load_settings, parse_settings
from gateway.devstack.stack import StackInfo
from gateway.server.app import create_app
from gateway.server.oidc_login import COOKIE, local_next
from tests.oidc_support import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    ROLES_CLAIM,
    Key,
    Provider,
    ProviderHandler,
    serving,
)

ME = "{ me { username roles } }"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with serving(ProviderHandler) as found:
        yield found


@pytest.fixture(autouse=True)
def well_behaved(provider: Provider) -> None:
    provider.deny = provider.wrong_challenge = False
    provider.claims = {}


@pytest.fixture(scope="module")
def client(
    provider: Provider, stack: StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    workdir: Path = tmp_path_factory.mktemp("oidc-login")
    config = workdir / "gateway.toml"
    config.write_text(
        stack.gateway_toml(results_dir=str(workdir / "results"), sync_interval_s=0)
        + "\n[auth]\n"
        + f'oidc_issuer = "{provider.issuer.url}"\n'
        + f'oidc_audience = "{AUDIENCE}"\n'
        + f'roles_claim = "{ROLES_CLAIM}"\n'
        + f'oidc_client_id = "{CLIENT_ID}"\n'
        + 'oidc_client_secret_env = "TEST_OIDC_SECRET"\n'
    )
    env = {
        "DATABASE_URL": stack.database_url,
        "REDIS_URL": stack.redis_url,
        "TEST_OIDC_SECRET": CLIENT_SECRET,
    }
    settings = load_settings(config, env=env)
    assert settings.auth.oidc_client_secret == CLIENT_SECRET
    assert CLIENT_SECRET not in repr(settings)
    with TestClient(create_app(settings)) as c:
        yield c


def _fragment(location: str) -> dict[str, str]:
    parts = urlsplit(location)
    assert parts.path == "/login" and not parts.query, location
    return {k: v[0] for k, v in parse_qs(parts.fragment).items()}


def _start(client: TestClient, next_: str | None = "/jobs") -> tuple[str, dict[str, str]]:
    """GET /auth/oidc/login: (the provider URL it sends the browser to, its parameters)."""
    query = f"?{urlencode({'next': next_})}" if next_ is not None else ""
    r = client.get("/auth/oidc/login" + query, follow_redirects=False)
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "Path=/auth/oidc", "SameSite=lax", "Max-Age=600"):
        assert attribute.lower() in cookie.lower(), cookie
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _at_provider(location: str) -> str:
    """The browser at the provider: where its authorization endpoint sends it back."""
    r = httpx.get(location, follow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    back = r.headers["location"]
    assert back.startswith("http://testserver/auth/oidc/callback?"), back
    return back


def _callback(client: TestClient, back: str) -> dict[str, str]:
    """GET the callback: the fragment of the login page it sends the browser to."""
    parts = urlsplit(back)
    r = client.get(f"{parts.path}?{parts.query}", follow_redirects=False)
    assert r.status_code == 302, r.text
    assert r.headers["cache-control"] == "no-store"
    assert f"{COOKIE}=" in r.headers.get("set-cookie", "")  # the login is forgotten
    return _fragment(r.headers["location"])


def _login(client: TestClient, next_: str | None = "/jobs") -> dict[str, str]:
    location, _ = _start(client, next_)
    return _callback(client, _at_provider(location))


def _me(client: TestClient, token: str) -> dict[str, Any]:
    r = client.post("/graphql", json={"query": ME}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_config_says_oidc_is_on(client: TestClient) -> None:
    r = client.get("/auth/config")
    assert r.status_code == 200 and r.json() == {"oidc": True}


def test_login_redirect_carries_pkce(client: TestClient, provider: Provider) -> None:
    location, query = _start(client)
    assert location.startswith(provider.authorize_url + "?")
    assert query["redirect_uri"] == "http://testserver/auth/oidc/callback"
    assert query["scope"] == "openid profile" and query["client_id"] == CLIENT_ID
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43  # base64url of a SHA-256
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert query["state"] != query["nonce"]
    _, again = _start(client)
    assert {again["state"], again["nonce"], again["code_challenge"]}.isdisjoint(
        {query["state"], query["nonce"], query["code_challenge"]}
    )


def test_round_trip_token_authenticates(
    client: TestClient, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    location, _ = _start(client, "/jobs?status=RUNNING")
    back = _at_provider(location)
    code = parse_qs(urlsplit(back).query)["code"][0]
    found = _callback(client, back)
    assert set(found) == {"oidc", "expires", "next"}, found
    assert found["next"] == "/jobs?status=RUNNING"
    token = found["oidc"]
    assert token == provider.tokens[-2]  # the access token (audience: the gateway)
    me = _me(client, token)
    assert "errors" not in me, me
    assert me["data"]["me"] == {"username": "dr.oidc", "roles": ["RADIOLOGIST"]}
    exchange = provider.exchanges[-1]
    assert exchange["code"] == code and len(exchange["code_verifier"]) >= 43
    assert "client_secret" not in exchange  # HTTP Basic, as the provider offers
    # nothing a browser or a script could replay reaches the gateway's log
    secrets_seen = [*provider.tokens[-2:], code, exchange["code_verifier"], CLIENT_SECRET]
    for record in caplog.records:
        text = record.getMessage()
        gateway_side = not record.name.startswith(("httpx", "httpcore"))  # the test's client
        for secret in secrets_seen:
            for part in secret.split("."):
                if part and (gateway_side or secret in provider.tokens):
                    assert part not in text, f"{record.name} logged a secret"
    # the code is good once: the same answer again is refused
    assert _callback(client, back) == {"error": "state"}  # the cookie is gone too


def test_login_is_audited(client: TestClient, provider: Provider) -> None:
    provider.claims = {"realm_access": {"roles": ["ADMIN"]}, "preferred_username": "oidc.admin"}
    token = _login(client)["oidc"]
    provider.claims = {}
    client.cookies.clear()
    assert _callback(client, "/auth/oidc/callback?code=x&state=y") == {"error": "state"}
    query = """{ auditEvents(first: 20) {
      edges { node { actor action outcome objectType objectRef details } } } }"""
    r = client.post("/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    nodes = [e["node"] for e in r.json()["data"]["auditEvents"]["edges"]]
    logins = [n for n in nodes if n["action"] == "login" and n["details"] == {"via": "oidc"}]
    assert logins and logins[0]["actor"].startswith("user:oidc:")
    assert logins[0]["objectRef"] == logins[0]["actor"].removeprefix("user:")
    failed = [n for n in nodes if n["action"] == "login-failed"]
    assert any(n["details"] == {"via": "oidc", "reason": "state"} for n in failed), failed
    assert all(n["outcome"] == "refused" for n in failed)


def test_wrong_state_refused(client: TestClient, provider: Provider) -> None:
    location, _ = _start(client)
    back = _at_provider(location)
    query = parse_qs(urlsplit(back).query)
    forged = "/auth/oidc/callback?" + urlencode({"code": query["code"][0], "state": "x" * 43})
    assert _callback(client, forged) == {"error": "state"}
    assert query["code"][0] in provider.codes  # refused before any exchange


def test_callback_without_the_login_cookie_refused(client: TestClient) -> None:
    location, _ = _start(client)
    back = _at_provider(location)
    client.cookies.clear()
    assert _callback(client, back) == {"error": "state"}


def test_forged_cookie_refused(client: TestClient) -> None:
    """A cookie naming the right state but another verifier, under the old MAC."""
    location, query = _start(client)
    back = _at_provider(location)
    value = next(v for k, v in client.cookies.items() if k == COOKIE)
    mac = value.partition(".")[2]
    flow = {"s": query["state"], "n": "n", "v": "v" * 43, "x": "/", "t": int(time.time())}
    body = base64.urlsafe_b64encode(json.dumps(flow).encode()).rstrip(b"=").decode()
    client.cookies.clear()
    client.cookies.set(COOKIE, f"{body}.{mac}")  # on path "/": cleared below
    try:
        assert _callback(client, back) == {"error": "state"}
    finally:
        client.cookies.clear()


def test_verifier_mismatch_ends_at_login_error(client: TestClient, provider: Provider) -> None:
    provider.wrong_challenge = True
    seen = len(provider.exchanges)
    assert _login(client) == {"error": "exchange"}
    assert len(provider.exchanges) == seen + 1  # the provider was asked, and refused


def test_provider_error_ends_at_login_error(client: TestClient, provider: Provider) -> None:
    provider.deny = True
    seen = len(provider.exchanges)
    assert _login(client) == {"error": "provider"}
    assert len(provider.exchanges) == seen


def test_token_without_our_roles_refused(client: TestClient, provider: Provider) -> None:
    provider.claims = {"realm_access": {"roles": ["offline_access"]}}
    assert _login(client) == {"error": "token"}


def test_token_of_another_issuer_key_refused(client: TestClient, provider: Provider) -> None:
    keys = provider.issuer.keys
    provider.issuer.keys = [Key("k1")]  # signs with a key the gateway has not fetched
    try:
        assert _login(client) == {"error": "token"}
    finally:
        provider.issuer.keys = keys


@pytest.mark.parametrize(
    "next_", ["//evil.example", "https://evil.example/", "/\\evil.example", "evil", "", None]
)
def test_next_outside_falls_back_to_root(client: TestClient, next_: str | None) -> None:
    found = _login(client, next_)
    assert found["next"] == "/", found
    assert "oidc" in found


def test_local_next() -> None:
    assert local_next("/studies/1.2.3?x=1#y") == "/studies/1.2.3?x=1#y"
    for bad in ("//evil.example", "/\\evil", "/\t/evil.example", "http://x/", "", None):
        assert local_next(bad) == "/"


def test_off_without_client_id(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir: Path = tmp_path_factory.mktemp("oidc-off")
    config = workdir / "gateway.toml"
    config.write_text(stack.gateway_toml(results_dir=str(workdir / "results"), sync_interval_s=0))
    settings = load_settings(
        config, env={"DATABASE_URL": stack.database_url, "REDIS_URL": stack.redis_url}
    )
    with TestClient(create_app(settings)) as c:
        assert c.get("/auth/config").json() == {"oidc": False}
        for path in ("/auth/oidc/login?next=/", "/auth/oidc/callback?code=a&state=b"):
            r = c.get(path, follow_redirects=False)
            assert r.status_code == 404 and r.json() == {"error": "not found"}


ISSUER = {"oidc_issuer": "https://idp.example/realms/h", "oidc_audience": AUDIENCE}


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"oidc_client_id": "x"}, "'auth.oidc_client_id' needs 'auth.oidc_issuer'"),
        ({**ISSUER, "oidc_client_id": ""}, "'auth.oidc_client_id' needs"),
        ({**ISSUER, "oidc_scopes": "openid"}, "'auth.oidc_scopes' needs 'auth.oidc_client_id'"),
        ({**ISSUER, "oidc_client_id": "x", "oidc_scopes": "profile"}, "must include 'openid'"),
        ({**ISSUER, "oidc_client_id": "x", "oidc_client_secret_env": "NOPE"}, "names $NOPE"),
        ({**ISSUER, "oidc_client_id": 3}, "auth.oidc_client_id"),
    ],
)
def test_settings_refused(auth: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_settings({"auth": auth}, {})
    assert message in str(refused.value)


def test_settings_defaults() -> None:
    settings = parse_settings({}, {})
    assert settings.auth.oidc_client_id is None and settings.auth.oidc_client_secret is None
    assert settings.auth.oidc_scopes == "openid profile"
