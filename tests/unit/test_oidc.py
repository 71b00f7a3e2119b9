"""OIDC claim parsing: token shape, dotted role claims, role mapping, the Principal, keys.

Signature, issuer and key-rotation cases against a real loopback issuer are in
tests/integration/test_auth_oidc.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth.oidc import (
    ALGORITHMS,
    claim,
    key_allows,
    looks_like_jwt,
    principal_from_claims,
    roles_of,
    signing_keys,
)
from gateway.auth.tokens import API_PREFIX, SESSION_PREFIX, new_token
from gateway.core.enums import Role

KEYCLOAK: dict[str, Any] = {
    "iss": "https://idp.example/realms/hospital",
    "sub": "f3b2c1d0-0000-4000-8000-000000000001",
    "preferred_username": "dr.house",
    "realm_access": {"roles": ["offline_access", "Radiologist", "default-roles-hospital"]},
    "resource_access": {"pacs-gateway": {"roles": ["researcher"]}},
}


def test_only_asymmetric_algorithms() -> None:
    assert set(ALGORITHMS) == {"RS256", "RS384", "RS512", "PS256", "ES256", "ES384"}
    assert not any(a.lower() == "none" or a.startswith("HS") for a in ALGORITHMS)


@pytest.mark.parametrize(
    ("token", "jwt"),
    [
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_", True),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", True),  # alg none: the verifier refuses it
        (new_token(SESSION_PREFIX), False),
        (new_token(API_PREFIX), False),
        ("a.b", False),
        ("a.b.c.d", False),
        ("a b.c.d", False),
        ("a.b=.c", False),
        ("", False),
    ],
)
def test_looks_like_jwt(token: str, jwt: bool) -> None:
    assert looks_like_jwt(token) is jwt


def test_claim_paths() -> None:
    assert claim(KEYCLOAK, "realm_access.roles") == KEYCLOAK["realm_access"]["roles"]
    assert claim(KEYCLOAK, "resource_access.pacs-gateway.roles") == ["researcher"]
    assert claim(KEYCLOAK, "sub") == KEYCLOAK["sub"]
    assert claim(KEYCLOAK, "realm_access.missing") is None
    assert claim(KEYCLOAK, "sub.deeper") is None  # a string is not walked into
    assert claim(KEYCLOAK, "roles") is None
    # a namespaced claim whose name itself contains dots (Auth0 and others)
    assert claim({"https://pacs.example/roles": ["admin"]}, "https://pacs.example/roles") == [
        "admin"
    ]


def test_roles_mapped_case_insensitively_others_ignored() -> None:
    assert roles_of(KEYCLOAK, "realm_access.roles") == {Role.RADIOLOGIST}
    assert roles_of({"roles": ["ADMIN", "admin", " Researcher "]}, "roles") == {
        Role.ADMIN,
        Role.RESEARCHER,
    }
    assert roles_of({"roles": "admin radiologist"}, "roles") == {Role.ADMIN, Role.RADIOLOGIST}
    assert roles_of({"roles": "admin,researcher"}, "roles") == {Role.ADMIN, Role.RESEARCHER}
    assert roles_of({"roles": ["superuser", 3, None, {"x": 1}]}, "roles") == frozenset()
    assert roles_of({"roles": {"admin": True}}, "roles") == frozenset()
    assert roles_of({}, "roles") == frozenset()


def test_principal_from_claims() -> None:
    p = principal_from_claims(KEYCLOAK, "realm_access.roles")
    assert p is not None
    assert p.user_id == "oidc:" + KEYCLOAK["sub"]
    assert p.username == "dr.house"
    assert p.roles == {Role.RADIOLOGIST}
    assert p.sources is None and p.via == "oidc" and p.token_id is None
    assert p.actor == "user:oidc:" + KEYCLOAK["sub"]


def test_username_falls_back_to_sub() -> None:
    p = principal_from_claims({"sub": "abc", "roles": ["admin"], "preferred_username": ""}, "roles")
    assert p is not None and p.username == "abc" and p.is_admin


@pytest.mark.parametrize(
    "claims",
    [
        {"roles": ["admin"]},  # no sub
        {"sub": "", "roles": ["admin"]},
        {"sub": 42, "roles": ["admin"]},
        {"sub": "abc"},  # no roles
        {"sub": "abc", "roles": ["offline_access", "uma_authorization"]},  # none of ours
    ],
)
def test_refused_claims(claims: dict[str, Any]) -> None:
    assert principal_from_claims(claims, "roles") is None


RSA = {"kty": "RSA", "kid": "r1", "n": "AQAB", "e": "AQAB"}
EC256 = {"kty": "EC", "kid": "e1", "crv": "P-256", "x": "AA", "y": "AA"}


def test_signing_keys_keeps_usable_public_signing_keys() -> None:
    jwks = {
        "keys": [
            RSA,
            EC256,
            {**RSA, "kid": "enc", "use": "enc", "alg": "RSA-OAEP"},  # Keycloak's encryption key
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},  # symmetric: never
            {**RSA, "kid": "hs", "alg": "HS256"},
            {**RSA, "kid": "private", "d": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},  # no kid
            "not a key",
        ]
    }
    assert set(signing_keys(jwks)) == {"r1", "e1"}
    with pytest.raises(ValueError):
        signing_keys({"keys": "nope"})
    with pytest.raises(ValueError):
        signing_keys(["keys"])


def test_key_allows() -> None:
    assert key_allows(RSA, "RS256") and key_allows(RSA, "PS256") and key_allows(RSA, "RS512")
    assert not key_allows(RSA, "ES256")
    assert not key_allows(RSA, "HS256") and not key_allows(RSA, "none")
    assert key_allows({**RSA, "alg": "RS256"}, "RS256")
    assert not key_allows({**RSA, "alg": "RS256"}, "PS256")  # the key names its algorithm
    assert key_allows(EC256, "ES256") and not key_allows(EC256, "ES384")
    assert not key_allows({"kty": "oct", "kid": "x"}, "RS256")
