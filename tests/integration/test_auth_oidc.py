"""OIDC bearer tokens against a real issuer the test starts on loopback.

The issuer is a small HTTP server serving a discovery document and a JWKS with RSA keys
made here; tokens are signed with them (or forged). Checked through `AuthService` (on a
SQLite database of its own) and end to end through the gateway app on the test stack.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.auth.oidc import OidcVerifier
from gateway.auth.service import AuthService
from gateway.core.enums import AuthMode, Role
from gateway.core.settings import AuthConfig, load_settings
from gateway.db.engine import make_engine, migrate, sessionmaker
from gateway.devstack.stack import StackInfo
from gateway.server.app import create_app
from tests.oidc_support import AUDIENCE, ROLES_CLAIM, Issuer, IssuerHandler, Key, b64, serving


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with serving(IssuerHandler) as provider:
        yield provider.issuer


@pytest.fixture(autouse=True)
def first_key(issuer: Issuer) -> Key:
    """Every test starts with the issuer publishing only `k1` (rotation tests change it)."""
    if [k.kid for k in issuer.keys] != ["k1"]:
        issuer.keys = [k for k in issuer.keys if k.kid == "k1"] or [Key("k1")]
    return issuer.keys[0]


@pytest.fixture(scope="module")
async def service(
    issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AuthService]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('oidc')}/auth.db"
    await migrate(url)
    engine = make_engine(url)
    config = AuthConfig(
        mode=AuthMode.REQUIRED,
        oidc_issuer=issuer.url,
        oidc_audience=AUDIENCE,
        roles_claim=ROLES_CLAIM,
    )
    yield AuthService(sessionmaker(engine), config)
    await engine.dispose()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"


async def test_valid_token_maps_roles(issuer: Issuer, service: AuthService) -> None:
    sub = str(uuid.uuid4())
    token = issuer.token(
        sub=sub, realm_access={"roles": ["ADMIN", "researcher", "uma_authorization"]}
    )
    p = await service.authenticate(token)
    assert p is not None
    assert p.user_id == f"oidc:{sub}" and p.username == "dr.oidc"
    assert p.roles == {Role.ADMIN, Role.RESEARCHER}
    assert p.via == "oidc" and p.sources is None and p.token_id is None
    assert await service.authenticate(token) is p  # the cached verification


async def test_no_username_is_sub(issuer: Issuer, service: AuthService) -> None:
    p = await service.authenticate(issuer.token(sub="abc-123", preferred_username=None))
    assert p is not None and p.username == "abc-123" and p.roles == {Role.RADIOLOGIST}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": int(time.time()) - 120}, id="expired"),
        pytest.param({"nbf": int(time.time()) + 600}, id="not-yet-valid"),
        pytest.param({"aud": "another-client"}, id="wrong-audience"),
        pytest.param({"iss": "http://127.0.0.1:1/realms/test"}, id="wrong-issuer"),
        pytest.param({"sub": None}, id="no-sub"),
        pytest.param({"exp": None}, id="no-exp"),
        pytest.param({"aud": None}, id="no-aud"),
        pytest.param({"realm_access": {"roles": ["offline_access"]}}, id="none-of-our-roles"),
    ],
)
async def test_refused_claims(
    issuer: Issuer, service: AuthService, changes: dict[str, Any]
) -> None:
    assert await service.authenticate(issuer.token(**changes)) is None


async def test_audience_list_accepted(issuer: Issuer, service: AuthService) -> None:
    assert await service.authenticate(issuer.token(aud=["account", AUDIENCE])) is not None


async def test_other_key_same_kid_refused_without_refresh(
    issuer: Issuer, service: AuthService
) -> None:
    assert await service.authenticate(issuer.token()) is not None  # keys fetched
    hits = issuer.jwks_hits
    forged = issuer.token(key=Key("k1"))  # another private key, the published kid
    assert await service.authenticate(forged) is None
    assert issuer.jwks_hits == hits  # a known kid: no refetch for a bad signature


async def test_alg_none_refused(issuer: Issuer, service: AuthService) -> None:
    token = _unsigned({"alg": "none", "typ": "JWT", "kid": "k1"}, issuer.claims()) + "."
    assert await service.authenticate(token) is None
    token = _unsigned({"alg": "None", "kid": "k1"}, issuer.claims()) + "."
    assert await service.authenticate(token) is None


async def test_hs256_with_public_key_as_secret_refused(
    issuer: Issuer, service: AuthService, first_key: Key
) -> None:
    for secret in (first_key.public_pem(), json.dumps(first_key.jwk()).encode()):
        signing = _unsigned({"alg": "HS256", "typ": "JWT", "kid": "k1"}, issuer.claims())
        mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
        assert await service.authenticate(f"{signing}.{b64(mac)}") is None


async def test_rs_token_with_es_header_refused(issuer: Issuer, service: AuthService) -> None:
    token = issuer.token()
    header = _unsigned({"alg": "ES256", "kid": "k1"}, {}).split(".")[0]
    assert await service.authenticate(".".join([header, *token.split(".")[1:]])) is None


async def test_garbage_refused(service: AuthService) -> None:
    for token in ("a.b.c", "eyJ9.eyJ9.", "Zm9v.YmFy.YmF6", "pgs_not-a-session"):
        assert await service.authenticate(token) is None


async def test_never_trusted_past_exp(issuer: Issuer, service: AuthService) -> None:
    assert service.oidc is not None
    leeway, service.oidc.leeway_s = service.oidc.leeway_s, 0.0
    try:
        token = issuer.token(exp=int(time.time()) + 2)
        assert await service.authenticate(token) is not None
        await asyncio.sleep(2.6)
        assert await service.authenticate(token) is None  # neither the cache nor the issuer
    finally:
        service.oidc.leeway_s = leeway


async def test_refusals_logged_without_the_token(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.auth.oidc")
    verifier = OidcVerifier(issuer.url, AUDIENCE, ROLES_CLAIM, None)
    refused = [
        issuer.token(aud="another-client"),
        issuer.token(exp=int(time.time()) - 120),
        issuer.token(key=Key("k1")),
        issuer.token(key=Key("k9")),
        _unsigned({"alg": "none", "kid": "k1"}, issuer.claims()) + ".",
    ]
    for token in refused:
        assert await verifier.authenticate(token) is None
    assert "InvalidAudienceError" in caplog.text and "ExpiredSignatureError" in caplog.text
    for token in refused:
        for part in token.split("."):
            assert not part or part not in caplog.text


async def test_unknown_kid_refreshes_once_after_rotation(issuer: Issuer) -> None:
    now = [1000.0]
    async with httpx.AsyncClient() as http:
        verifier = OidcVerifier(
            issuer.url, AUDIENCE, ROLES_CLAIM, http, refresh_interval_s=30, clock=lambda: now[0]
        )
        assert await verifier.authenticate(issuer.token()) is not None
        assert verifier.fetches == 1
        hits = issuer.jwks_hits

        old, new = issuer.keys[0], Key("k2")
        issuer.keys = [new]  # rotated: k1 retired, k2 signs
        now[0] += 31
        p = await verifier.authenticate(issuer.token(key=new))
        assert p is not None and p.roles == {Role.RADIOLOGIST}
        assert verifier.fetches == 2 and issuer.jwks_hits == hits + 1
        assert await verifier.authenticate(issuer.token(key=new)) is not None
        assert verifier.fetches == 2  # a known kid: no fetch

        assert await verifier.authenticate(issuer.token(key=old)) is None  # retired key
        assert await verifier.authenticate(issuer.token(key=Key("k3"))) is None
        assert verifier.fetches == 2  # unknown kids: at most one refresh per 30 s

        now[0] += 31
        newest = Key("k3")
        issuer.keys = [new, newest]
        assert await verifier.authenticate(issuer.token(key=newest)) is not None
        assert verifier.fetches == 3 and issuer.jwks_hits == hits + 2


async def test_concurrent_unknown_kid_one_fetch(issuer: Issuer) -> None:
    verifier = OidcVerifier(issuer.url, AUDIENCE, ROLES_CLAIM, None)
    tokens = [issuer.token() for _ in range(20)]
    found = await asyncio.gather(*(verifier.authenticate(t) for t in tokens))
    assert all(p is not None for p in found)
    assert verifier.fetches == 1


async def test_issuer_away_is_none_not_an_error(issuer: Issuer) -> None:
    verifier = OidcVerifier("http://127.0.0.1:9/realms/test", AUDIENCE, ROLES_CLAIM, None)
    assert await verifier.authenticate(issuer.token(iss="http://127.0.0.1:9/realms/test")) is None
    assert verifier.fetches == 1
    assert await verifier.authenticate(issuer.token()) is None  # rate-limited: no new fetch
    assert verifier.fetches == 1


async def test_discovery_naming_another_issuer_refused(issuer: Issuer) -> None:
    other = issuer.url + "/"  # the document names the issuer without the slash
    verifier = OidcVerifier(other, AUDIENCE, ROLES_CLAIM, None)
    assert await verifier.authenticate(issuer.token(iss=other)) is None


# -- end to end through the gateway app ---------------------------------------------------


@pytest.fixture(scope="module")
def client(
    issuer: Issuer, stack: StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    workdir: Path = tmp_path_factory.mktemp("oidc-app")
    config = workdir / "gateway.toml"
    config.write_text(
        stack.gateway_toml(results_dir=str(workdir / "results"), sync_interval_s=0)
        + "\n[auth]\n"
        + 'mode = "required"\n'
        + f'oidc_issuer = "{issuer.url}"\n'
        + f'oidc_audience = "{AUDIENCE}"\n'
        + f'roles_claim = "{ROLES_CLAIM}"\n'
    )
    settings = load_settings(
        config, env={"DATABASE_URL": stack.database_url, "REDIS_URL": stack.redis_url}
    )
    assert settings.auth.oidc_issuer == issuer.url
    with TestClient(create_app(settings)) as c:
        yield c


def _ask(client: TestClient, query: str, token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = client.post("/graphql", json={"query": query}, headers=headers)
    assert r.status_code in (200, 401), r.text
    return dict(r.json())


def test_app_answers_an_oidc_radiologist(client: TestClient, issuer: Issuer) -> None:
    token = issuer.token()
    me = _ask(client, "{ me { username roles } }", token)
    assert "errors" not in me, me
    # an OIDC user has no local row: described from the token
    assert me["data"]["me"] == {"username": "dr.oidc", "roles": ["RADIOLOGIST"]}
    sources = _ask(client, "{ sources { id } }", token)
    assert "errors" not in sources, sources
    assert {s["id"] for s in sources["data"]["sources"]} >= {"orthanc"}


def test_app_refuses_bad_oidc_tokens(client: TestClient, issuer: Issuer) -> None:
    for token in (
        None,
        issuer.token(aud="another-client"),
        issuer.token(key=Key("k1")),
        _unsigned({"alg": "none", "kid": "k1"}, issuer.claims()) + ".",
    ):
        answer = _ask(client, "{ sources { id } }", token)
        codes = {e.get("extensions", {}).get("code") for e in answer.get("errors", [])}
        assert codes == {"UNAUTHENTICATED"}, answer
        assert not (answer.get("data") or {}).get("sources")
