"""`/files` (job outputs) with `[auth] mode = "required"`: same bearer authentication as
/graphql, a caller reads only outputs of jobs they may see; traversal still refused."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from gateway.core.enums import AuthMode, Role
from gateway.core.settings import Settings
from gateway.db.models import AuditEvent
from gateway.jobs.store import JobStore
from gateway.runtime import Runtime
from gateway.server.app import create_app
from tests.conftest import JobEnv

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class World:
    """Required-mode settings, one token per user, and the jobs whose outputs are on disk."""

    settings: Settings
    tokens: dict[str, str]  # user name -> API token
    jobs: dict[str, str]  # label -> job id


def _required(env: JobEnv) -> Settings:
    auth = dataclasses.replace(env.settings.auth, mode=AuthMode.REQUIRED)
    return dataclasses.replace(env.settings, auth=auth)


async def _setup(settings: Settings) -> World:
    runtime = await Runtime.create(settings, run_migrations=False)
    try:
        auth, users = runtime.auth, {}
        for name, role in (
            ("files-admin", Role.ADMIN),
            ("files-rad", Role.RADIOLOGIST),
            ("files-res1", Role.RESEARCHER),
            ("files-res2", Role.RESEARCHER),
        ):
            users[name] = (await auth.create_user(name, [role], "test")).id
        tokens = {
            name: (await auth.create_api_token(uid, "files", None, "test")).token
            for name, uid in users.items()
        }
        store, jobs = JobStore(runtime.sessions), {}
        owners = {"res1": users["files-res1"], "res2": users["files-res2"], "watcher": None}
        for n, (label, owner) in enumerate(owners.items()):
            body = {"source": "research", "studyInstanceUid": f"1.2.826.0.1.3680043.9.7.{n}"}
            job, _ = await store.create("RTSTRUCT", body, "test", owner)
            jobs[label] = job.id
        sync, _ = await store.create(
            "SYNC", {"from": "a", "to": "b", "all": True}, "t", owners["res1"]
        )
        jobs["sync-of-res1"] = sync.id
    finally:
        await runtime.aclose()
    for label, job_id in jobs.items():
        folder = settings.results_dir / "rtstruct" / job_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(json.dumps({"job": label}))
    return World(settings, tokens, jobs)


@pytest.fixture(scope="module")
def world(job_env: JobEnv) -> World:
    return asyncio.run(_setup(_required(job_env)))


def _url(job_id: str, name: str = "summary.json") -> str:
    return f"/files/rtstruct/{job_id}/{name}"


def _as(client: TestClient, token: str | None, url: str) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(url, headers=headers).status_code


def test_no_valid_token_is_401(world: World) -> None:
    url = _url(world.jobs["res1"])
    with TestClient(create_app(world.settings)) as client:
        answer = client.get(url)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert _as(client, "pgw_not-a-token", url) == 401
        assert client.get(url, headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401
        assert _as(client, None, "/files/rtstruct/nowhere/summary.json") == 401, "auth comes first"


def test_each_caller_reads_only_outputs_of_jobs_they_may_see(world: World) -> None:
    jobs, tokens = world.jobs, world.tokens
    expected = {
        # a researcher: own jobs only; another's and the watcher's are as unknown as no job
        "files-res1": {"res1": 200, "res2": 404, "watcher": 404},
        "files-res2": {"res1": 404, "res2": 200, "watcher": 404},
        # clinical roles read every RT-STRUCT output (as rtStructResults shows them)
        "files-rad": {"res1": 200, "res2": 200, "watcher": 200},
        "files-admin": {"res1": 200, "res2": 200, "watcher": 200},
    }
    with TestClient(create_app(world.settings)) as client:
        for user, rows in expected.items():
            for label, status in rows.items():
                got = client.get(
                    _url(jobs[label]), headers={"Authorization": f"Bearer {tokens[user]}"}
                )
                assert got.status_code == status, (user, label, got.status_code)
                if status == 200:
                    assert got.json() == {"job": label}
            for missing in ("no-such-job", jobs["sync-of-res1"]):  # unknown, or not RT-STRUCT
                assert _as(client, tokens[user], _url(missing)) == 404, (user, missing)
    refusals = asyncio.run(_refusals(world.settings))
    assert (world.jobs["res2"], "refused") in refusals, "a refused read is on record"


async def _refusals(settings: Settings) -> set[tuple[str | None, str | None]]:
    runtime = await Runtime.create(settings, run_migrations=False)
    try:
        async with runtime.sessions() as session:
            rows = await session.scalars(select(AuditEvent).where(AuditEvent.action == "file-read"))
            return {(r.object_ref, r.outcome) for r in rows}
    finally:
        await runtime.aclose()


def test_traversal_is_still_refused(world: World, tmp_path: Path) -> None:
    res1, res2 = world.jobs["res1"], world.jobs["res2"]
    results = world.settings.results_dir
    secret = results.parent / "outside-secret.txt"
    secret.write_text("not for /files")
    (results / "rtstruct" / res1 / "link.json").symlink_to(secret)
    token = world.tokens["files-res1"]
    admin = world.tokens["files-admin"]
    with TestClient(create_app(world.settings)) as client:
        for url in (
            # dot segments, percent-encoded so the client sends them as they are
            f"/files/rtstruct/{res1}/%2e%2e/%2e%2e/%2e%2e/outside-secret.txt",
            f"/files/rtstruct/{res1}/..%2f..%2f..%2foutside-secret.txt",
            f"/files/rtstruct/{res1}/link.json",  # a link leading out of the results
            "/files/%2e%2e/outside-secret.txt",
            f"/files/rtstruct/{res1}/%00.json",
        ):
            for who in (token, admin):
                answer = client.get(url, headers={"Authorization": f"Bearer {who}"})
                assert answer.status_code == 404, (url, answer.status_code)
                assert "not for /files" not in answer.text
        # a path is judged once normalised: through one's own job into another's is refused
        sideways = f"/files/rtstruct/{res1}/%2e%2e/{res2}/summary.json"
        assert _as(client, token, sideways) == 404
        assert _as(client, admin, sideways) == 200, "the admin may read that job's outputs"
        assert _as(client, token, f"/files/rtstruct/{res1}/") == 404, "no directory listing"
        assert _as(client, token, f"/files/rtstruct/{res1}") == 404


def test_open_mode_serves_anyone(world: World, job_env: JobEnv) -> None:
    assert job_env.settings.auth.mode == AuthMode.OPEN
    open_settings = dataclasses.replace(world.settings, auth=job_env.settings.auth)
    with TestClient(create_app(open_settings)) as client:
        answer = client.get(_url(world.jobs["watcher"]))
        assert answer.status_code == 200 and answer.json() == {"job": "watcher"}
        assert client.get(_url("no-such-job")).status_code == 404
