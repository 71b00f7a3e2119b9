"""Helpers for the identity tests: a stack whose gateway requires a login, users, API calls.

`auth_env` builds a module's own stack and database with `[auth] mode` left at its default
("required"), seeds a few demo patients, creates the users admin, radiologist and
researcher through `AuthService.create_user` and logs each in through the `login`
mutation of an in-process gateway.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.core.enums import Role
from gateway.core.settings import Settings, load_settings
from gateway.db.engine import migrate
from gateway.devstack.seed import GroundTruth, build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.devstack.stack import LocalStack
from gateway.runtime import Runtime
from gateway.server.app import create_app
from tests.jobs_support import drop_database

PASSWORDS = {
    "admin": "admin-password-123",
    "radiologist": "radiologist-password-123",
    "researcher": "researcher-password-123",
}
ROLES = {"admin": Role.ADMIN, "radiologist": Role.RADIOLOGIST, "researcher": Role.RESEARCHER}
LOCKOUT_FAILURES = 3
LOCKOUT_S = 3  # long enough that a busy machine still tries while locked
SEED, PATIENTS = 42, 5
LOGIN = """mutation($u: String!, $p: String!) {
  login(username: $u, password: $p) { token expiresAt user { id username roles } }
}"""


class Api:
    """GraphQL over one in-process client, as one caller (a bearer token or none)."""

    def __init__(self, client: TestClient, token: str | None) -> None:
        self.client, self.token = client, token

    def headers(self) -> dict[str, str]:
        """The Authorization header of this caller."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def post(self, query: str, **variables: Any) -> Any:
        """The raw HTTP response."""
        body = {"query": query, "variables": variables}
        return self.client.post("/graphql", json=body, headers=self.headers())

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        """The whole GraphQL body of a 200 answer."""
        response = self.post(query, **variables)
        assert response.status_code == 200, response.text
        out: dict[str, Any] = response.json()
        return out

    def data(self, query: str, **variables: Any) -> dict[str, Any]:
        """The data of an answer that must have no error."""
        body = self.gql(query, **variables)
        assert not body.get("errors"), body["errors"]
        out: dict[str, Any] = body["data"]
        return out

    def refused(self, query: str, code: str = "FORBIDDEN", **variables: Any) -> dict[str, Any]:
        """The body of an answer whose every error has `code` (there must be one)."""
        body = self.gql(query, **variables)
        errors = body.get("errors") or []
        assert errors, f"expected {code}, got {body}"
        assert {e["extensions"]["code"] for e in errors} == {code}, errors
        return body


@dataclass
class AuthEnv:
    """A private stack with a gateway in `required` mode, its users and their sessions."""

    stack: LocalStack
    settings: Settings
    config: Path
    env: dict[str, str]
    workdir: Path
    truth: GroundTruth
    client: TestClient
    user_ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def as_(self, who: str | None) -> Api:
        """The API as user `who` (their session), or anonymous with None."""
        return Api(self.client, self.tokens[who] if who is not None else None)

    def with_token(self, token: str | None) -> Api:
        """The API with any bearer token."""
        return Api(self.client, token)

    def login(self, username: str, password: str) -> dict[str, Any]:
        """`login` through the API; its Session."""
        session: dict[str, Any] = Api(self.client, None).data(LOGIN, u=username, p=password)[
            "login"
        ]
        return session

    def new_user(self, username: str, roles: list[str], **extra: Any) -> tuple[str, str]:
        """A user made by the admin through `createUser`, logged in; (user id, token)."""
        password = f"{username}-password-123"
        made = self.as_("admin").data(
            "mutation($i: UserInput!) { createUser(input: $i) { id } }",
            i={"username": username, "roles": roles, "password": password, **extra},
        )["createUser"]
        return made["id"], self.login(username, password)["token"]

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """`pacs-gateway ARGV --config <this config>`."""
        exe = Path(sys.executable).with_name("pacs-gateway")
        return subprocess.run(
            [str(exe), *argv, "--config", str(self.config)],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def run(self, work: Any) -> Any:
        """Run `await work(runtime)` against a runtime of this stack (for direct DB checks)."""

        async def go() -> Any:
            runtime = await Runtime.create(self.settings, run_migrations=False)
            try:
                return await work(runtime)
            finally:
                await runtime.aclose()

        return asyncio.run(go())


def required_toml(stack: LocalStack, results_dir: Path, extra_auth: str = "") -> str:
    """The stack's gateway.toml with an `[auth]` table that leaves `mode` at its default."""
    info = stack.info
    assert info is not None
    base = info.gateway_toml(results_dir=str(results_dir), sync_interval_s=0)
    assert "[auth]" not in base
    auth = f"lockout_failures = {LOCKOUT_FAILURES}\nlockout_s = {LOCKOUT_S}\n{extra_auth}"
    return f"{base}\n[auth]\n{auth}"


async def _create_users(settings: Settings) -> dict[str, str]:
    runtime = await Runtime.create(settings, run_migrations=False)
    try:
        ids = {}
        for name, role in ROLES.items():
            user = await runtime.auth.create_user(name, [role], "test", password=PASSWORDS[name])
            ids[name] = user.id
        return ids
    finally:
        await runtime.aclose()


async def api_users(
    settings: Settings, label: str, roles: Sequence[Role], unique: bool = True
) -> dict[str, tuple[str, str]]:
    """A new user "<label>-<role>" with an API token for each role: role name in lower case
    -> (token, user id). With `unique`, the names carry a random suffix (a test database
    may outlive a run). The database is migrated first (a test may be the first to use it)."""
    runtime = await Runtime.create(settings)
    try:
        out = {}
        for role in roles:
            name = f"{label}-{role.value.lower()}"
            name += f"-{secrets.token_hex(4)}" if unique else ""
            user = await runtime.auth.create_user(name, [role], "test")
            secret = await runtime.auth.create_api_token(user.id, label, None, "test")
            out[role.value.lower()] = (secret.token, user.id)
        return out
    finally:
        await runtime.aclose()


def auth_env(tmp_path_factory: pytest.TempPathFactory, seed: bool = True) -> Iterator[AuthEnv]:
    """A module's own stack (research archive included), database and required-auth gateway."""
    workdir = tmp_path_factory.mktemp("auth")
    database = f"pacs_gw_jobs_auth_{os.getpid()}_{workdir.name.replace('-', '_')}"
    stack = LocalStack(
        workdir=tmp_path_factory.mktemp("auth-stack"),
        redis_url=os.environ.get("REDIS_URL"),
        database_url=os.environ.get("DATABASE_URL"),
        database_name=database,
        research=True,
    )
    stack.start()
    try:
        info = stack.info
        assert info is not None
        config = workdir / "gateway.toml"
        config.write_text(required_toml(stack, workdir / "results"))
        env = {
            "DATABASE_URL": info.database_url,
            "REDIS_URL": info.redis_url,
            "GATEWAY_DEID_KEY": "test-deid-key-not-secret",
            "GATEWAY_MAPPING_KEY": base64.b64encode(b"k" * 32).decode(),
        }
        settings = load_settings(config, env=env)
        assert settings.auth.mode == "required", "the default mode must be required"
        asyncio.run(migrate(settings.database_url))
        ids = settings.ids_with_role("store")
        if seed:
            # seeding only: generous timeouts, the machine may be busy with other test runs
            patient = replace(
                settings, sources=tuple(replace(c, timeout_s=60.0) for c in settings.sources)
            )
            counts = asyncio.run(seed_archives(patient, SEED, PATIENTS, None))
        truth = build_demo(seed=SEED, patients=PATIENTS, sources=ids).truth
        if seed:
            assert counts == truth.instance_counts
        user_ids = asyncio.run(_create_users(settings))
        with TestClient(create_app(settings)) as client:
            env_ = AuthEnv(stack, settings, config, env, workdir, truth, client, user_ids)
            for name, password in PASSWORDS.items():
                env_.tokens[name] = env_.login(name, password)["token"]
            yield env_
    finally:
        stack.stop()
        if stack.info is not None:
            drop_database(stack.info.database_url)


def identity_values(truth: GroundTruth) -> list[str]:
    """Every patient value of the demo truth that must never reach a researcher or the
    audit trail: IDs, names (each source's spelling, family name alone too), birth dates."""
    out: set[str] = set()
    for p in truth.patients:
        out.add(p.patient_id)
        out.add(p.birth_date)
        for name in {p.name, *p.names.values()}:
            out.add(name)
            family = name.split("^")[0]
            if len(family) >= 4:
                out.add(family)
    return sorted(v for v in out if v)


def leaked(text: str, truth: GroundTruth) -> list[str]:
    """Identity values of `truth` found in `text` (JSON as sent: also its escaped form)."""
    found = []
    for v in identity_values(truth):
        if v in text or json.dumps(v)[1:-1] in text:
            found.append(v)
    return found
