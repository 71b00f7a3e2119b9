"""GraphQL fuzzing (issue 12): `hypothesis-graphql` over the real schema against the
in-process gateway in `required` auth mode, on a seeded private stack, with valid tokens.

2,000 generated valid operations (queries as the admin and as a radiologist; mutations as
a radiologist) and 500 generated invalid ones: no 5xx, every error has `extensions.code`,
no patient value of the seeded truth in any error message. Derandomized: CI runs the
same operations each time. Generated arguments are random strings, so most operations are
refused in part (BAD_USER_INPUT for keys that are not DICOM, FORBIDDEN for what the role
may not see): the checks hold for refusals and answers alike, and a share of the
operations must still be executed (data not null).

Mutations left out (side effects the run cannot undo, or that would end the run):
`login` (lockouts of the demo users, and a password hash each), `logout` (ends the
fuzzing session), `createUser` and `setPassword` (accounts and password hashes),
`updateUser`, `deleteUser`, `updateGroup`, `deleteGroup` and `revokeApiToken` (could take
the fuzzing users' rights or tokens away). Those kept write only to the module's own
database, dropped afterwards: jobs (no worker runs, so they stay queued; the quota refuses
the rest with QUOTA_EXCEEDED), API tokens and groups of the caller, audited refusals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries
from starlette.testclient import TestClient

from gateway.server.app import create_app
from resolvers.schema import schema
from tests.auth_support import AuthEnv, auth_env, leaked

pytestmark = pytest.mark.integration

SCHEMA = schema._schema
QUERIES = sorted(SCHEMA.query_type.fields) if SCHEMA.query_type else []
KEPT_MUTATIONS = [
    "syncStudies",
    "anonymizeStudy",
    "processRtStruct",
    "buildIndex",
    "cancelJob",
    "retryJob",
    "createApiToken",
    "createGroup",
    "reidentify",
]
SCALARS = {
    "DateTime": st.datetimes(timezones=st.just(UTC)).map(lambda d: nodes.String(d.isoformat())),
    "JSON": st.just(nodes.String("{}")),
}
COMMON = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": list(HealthCheck),
    "print_blob": False,
}


@dataclass
class Tally:
    """What the fuzzing saw (checked at the end, reported on failure)."""

    requests: int = 0
    executed: int = 0  # answered with data (some fields may still have been refused)
    statuses: dict[int, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthEnv]:
    """The module's required-auth stack, seeded with a few demo patients."""
    yield from auth_env(tmp_path_factory)


@pytest.fixture(scope="module")
def client(env: AuthEnv) -> Iterator[TestClient]:
    """A gateway on the module's stack without a rate limit (the fuzzer sends thousands)."""
    with TestClient(create_app(replace(env.settings, rate_per_s=0))) as c:
        yield c


def _check(client: TestClient, env: AuthEnv, token: str, query: Any, tally: Tally) -> None:
    text = query if isinstance(query, str) else bytes(query).decode("utf-8", "replace")
    headers = {"Authorization": f"Bearer {token}"}
    r = client.post("/graphql", json={"query": text}, headers=headers)
    tally.requests += 1
    tally.statuses[r.status_code] = tally.statuses.get(r.status_code, 0) + 1
    assert r.status_code < 500, (r.status_code, text, r.text[:500])
    body = r.json()
    tally.executed += body.get("data") is not None
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code, ("an error without extensions.code", text, error)
        tally.codes[code] = tally.codes.get(code, 0) + 1
        assert leaked(json.dumps(error, ensure_ascii=False), env.truth) == [], (text, error)


def test_valid_queries_as_admin(client: TestClient, env: AuthEnv) -> None:
    tally = Tally()

    @settings(max_examples=900, **COMMON)  # type: ignore[arg-type]
    @given(queries(SCHEMA, fields=QUERIES, custom_scalars=SCALARS, allow_x00=False))
    def run(query: Any) -> None:
        _check(client, env, env.tokens["admin"], query, tally)

    run()
    assert tally.requests == 900 and not any(s >= 500 for s in tally.statuses), tally
    assert tally.executed >= tally.requests // 20, tally  # not all refused before running


def test_valid_queries_as_a_radiologist(client: TestClient, env: AuthEnv) -> None:
    tally = Tally()

    @settings(max_examples=700, **COMMON)  # type: ignore[arg-type]
    @given(queries(SCHEMA, fields=QUERIES, custom_scalars=SCALARS))
    def run(query: Any) -> None:
        _check(client, env, env.tokens["radiologist"], query, tally)

    run()
    assert tally.requests == 700 and tally.executed >= tally.requests // 20, tally


def test_valid_mutations_as_a_radiologist(client: TestClient, env: AuthEnv) -> None:
    tally = Tally()

    @settings(max_examples=400, **COMMON)  # type: ignore[arg-type]
    @given(mutations(SCHEMA, fields=KEPT_MUTATIONS, custom_scalars=SCALARS))
    def run(query: Any) -> None:
        _check(client, env, env.tokens["radiologist"], query, tally)

    run()
    assert tally.requests == 400, tally
    assert tally.codes, tally  # mutations answered with refusals too (quota, roles, input)


def test_invalid_operations(client: TestClient, env: AuthEnv) -> None:
    tally = Tally()
    invalid = st.one_of(
        queries(SCHEMA, fields=QUERIES, custom_scalars=SCALARS, mode=Mode.NEGATIVE),
        mutations(SCHEMA, fields=KEPT_MUTATIONS, custom_scalars=SCALARS, mode=Mode.NEGATIVE),
    )

    @settings(max_examples=500, **COMMON)  # type: ignore[arg-type]
    @given(invalid)
    def run(query: Any) -> None:
        _check(client, env, env.tokens["researcher"], query, tally)

    run()
    assert tally.requests == 500, tally
    # refused as invalid, not answered: the generator did make invalid documents
    assert (
        tally.codes.get("GRAPHQL_VALIDATION_FAILED", 0) + tally.codes.get("GRAPHQL_PARSE_FAILED", 0)
        >= 250
    ), tally
