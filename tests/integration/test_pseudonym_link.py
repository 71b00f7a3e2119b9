"""The pseudonym link is closed: no caller but an admin obtains both an original identifier
and its pseudonym, and a finished anonymize job keeps the original study UID only as a
keyed hash (`[auth] mode = "required"`, real worker, real archives)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.core.enums import AuthMode, Role
from gateway.core.errors import InvalidInput, JobCancelled, SourceUnavailable
from gateway.core.settings import Settings
from gateway.jobs.specs import AnonymizeSpec
from gateway.jobs.store import JobStore
from gateway.runtime import Runtime
from gateway.server.app import create_app
from tests.auth_support import api_users
from tests.conftest import JobEnv
from tests.jobs_support import JOB_FIELDS, TERMINAL, big_study, store_files
from workers.jobs import anonymize
from workers.jobs.base import RecordingHandle

pytestmark = pytest.mark.integration

ANONYMIZE = (
    f"mutation($input: AnonymizeInput!) {{ anonymizeStudy(input: $input) {{ {JOB_FIELDS} }} }}"
)
JOB = "query($id: ID!) { job(id: $id) { id status input result owner } }"
JOBS = "{ jobs(kind: ANONYMIZE) { edges { node { id input result } } } }"
PSEUDONYMS = ("anonymizedPatientId", "anonymizedStudyInstanceUid")


@dataclasses.dataclass
class Users:
    settings: Settings
    tokens: dict[str, str]  # role name -> API token
    ids: dict[str, str]  # role name -> user id


@pytest.fixture(scope="module")
def users(job_env: JobEnv) -> Users:
    auth = dataclasses.replace(job_env.settings.auth, mode=AuthMode.REQUIRED)
    settings = dataclasses.replace(job_env.settings, auth=auth)
    roles = (Role.ADMIN, Role.RADIOLOGIST, Role.RESEARCHER)
    made = asyncio.run(api_users(settings, "link", roles, unique=False))  # named in recipients
    tokens = {role: token for role, (token, _) in made.items()}
    return Users(settings, tokens, {role: user_id for role, (_, user_id) in made.items()})


def _ask(client: TestClient, token: str, query: str, **variables: Any) -> dict[str, Any]:
    answer = client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert not body.get("errors"), body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def _wait(client: TestClient, token: str, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = _ask(client, token, JOB, id=job_id)["job"]
        if job["status"] in TERMINAL or time.monotonic() > deadline:
            assert job["status"] in TERMINAL, f"job stuck: {job}"
            return job
        time.sleep(0.1)


async def _row(settings: Settings, job_id: str) -> dict[str, Any]:
    runtime = await Runtime.create(settings, run_migrations=False)
    try:
        store = JobStore(runtime.sessions)
        row = await store.get(job_id)
        assert row is not None
        events = (await store.events_of([job_id]))[job_id]
        return {
            "input": row.input,
            "result": row.result,
            "message": row.message,
            "error": row.error,
            "events": [e.message for e in events],
        }
    finally:
        await runtime.aclose()


def test_only_an_admin_sees_both_and_the_row_keeps_a_keyed_hash(
    job_env: JobEnv, users: Users
) -> None:
    study, files = big_study(4, seed=71)
    asyncio.run(store_files(job_env.settings, "orthanc", files))
    body = {
        "source": "orthanc",
        "studyInstanceUid": study,
        "destination": "research",
        "project": "LINK",
        "keepMapping": True,
    }
    rad, admin, res = users.tokens["radiologist"], users.tokens["admin"], users.tokens["researcher"]
    with TestClient(create_app(users.settings)) as client:
        job = _ask(client, rad, ANONYMIZE, input=body)["anonymizeStudy"]
        queued = _ask(client, rad, JOB, id=job["id"])["job"]
        assert queued["owner"] == users.ids["radiologist"]
        assert queued["input"]["studyInstanceUid"] == study, "the owner sees it while in clear"
        assert _ask(client, res, JOB, id=job["id"])["job"] is None, "not the researcher's job"
        worker = job_env.worker("link-worker").start()
        try:
            done = _wait(client, admin, job["id"])
            assert done["status"] == "SUCCEEDED", done
            # a second request for the same study after the first finished: a new job (the
            # finished one is no longer "identical"), the same pseudonyms (keyed, idempotent)
            again = _ask(client, rad, ANONYMIZE, input=body)["anonymizeStudy"]
            assert again["id"] != job["id"]
            second = _wait(client, admin, again["id"])
            assert second["status"] == "SUCCEEDED", second
        finally:
            worker.stop()

        as_admin = _ask(client, admin, JOB, id=job["id"])["job"]
        as_owner = _ask(client, rad, JOB, id=job["id"])["job"]
        listed = {e["node"]["id"]: e["node"] for e in _ask(client, rad, JOBS)["jobs"]["edges"]}

    # the admin: both pseudonyms, but no original identifier any more
    assert all(as_admin["result"][k] for k in PSEUDONYMS)
    assert as_admin["result"]["instances"] == 4
    assert (
        second["result"]["anonymizedStudyInstanceUid"]
        == (as_admin["result"]["anonymizedStudyInstanceUid"])
    )
    assert study not in json.dumps(as_admin)
    # the owner (who knows the original study): everything of the result but the pseudonyms
    for seen in (as_owner, listed[job["id"]]):
        assert not set(PSEUDONYMS) & set(seen["result"]), seen["result"]
        assert seen["result"]["instances"] == 4 and seen["result"]["destination"] == "research"
        assert seen["result"]["mappingKept"] is True and seen["result"]["verified"] is True
        assert {k: v for k, v in as_admin["result"].items() if k not in PSEUDONYMS} == (
            seen["result"]
        )
        assert seen["input"]["studyInstanceUid"].startswith("hmac:")
        assert study not in json.dumps(seen)
        for value in (as_admin["result"][k] for k in PSEUDONYMS):
            assert value not in json.dumps(seen)
    # the database: a keyed hash in place of the original, nowhere the original in clear
    key = job_env.settings.deid_key
    assert key
    for job_id in (job["id"], again["id"]):
        row = asyncio.run(_row(job_env.settings, job_id))
        assert row["input"]["studyInstanceUid"] == anonymize.input_ref(key, study)
        assert {k: v for k, v in row["input"].items() if k != "studyInstanceUid"} == {
            k: v
            for k, v in AnonymizeSpec.parse(body, job_env.settings).as_input().items()
            if k != "studyInstanceUid"
        }
        assert study not in json.dumps(row)


class _TransientAfter(RecordingHandle):
    """A handle whose checkpoints fail like an archive going away, after `after` of them."""

    def __init__(self, job_id: str, after: int) -> None:
        super().__init__(job_id)
        self._after = after

    async def checkpoint(self) -> None:
        self._checkpoints += 1
        if self._checkpoints > self._after:
            raise SourceUnavailable("research", "connection refused")


def test_redacted_when_the_job_ends_not_while_it_may_run_again(job_env: JobEnv) -> None:
    """Ended after storing (cancelled): hashed. Stopped by a transient error the runner
    retries, or ended before anything was stored: kept, so the next attempt (or retryJob)
    runs from the stored input."""
    study, files = big_study(3, seed=73)
    asyncio.run(store_files(job_env.settings, "orthanc", files))

    async def scenario() -> dict[str, dict[str, Any]]:
        runtime = await Runtime.create(job_env.settings, run_migrations=False)
        try:
            store, rows = JobStore(runtime.sessions), {}

            def spec(project: str) -> AnonymizeSpec:
                body = {
                    "source": "orthanc",
                    "studyInstanceUid": study,
                    "destination": "research",
                    "project": project,
                }
                return AnonymizeSpec.parse(body, runtime.settings)

            counting = RecordingHandle("link-count")
            await anonymize.run(counting, runtime, spec("LINK-COUNT"))
            last = counting._checkpoints  # the final checkpoint comes after every store
            cases = {
                "cancelled-after-storing": lambda i: RecordingHandle(i, cancel_after=last - 1),
                "transient-after-storing": lambda i: _TransientAfter(i, last - 1),
                "cancelled-before-storing": lambda i: RecordingHandle(i, cancel_after=0),
            }
            for name, handle in cases.items():
                job, _ = await store.create("ANONYMIZE", spec(name).as_input(), "test", "u1")
                with pytest.raises(JobCancelled if "cancelled" in name else SourceUnavailable):
                    await anonymize.run(handle(job.id), runtime, spec(name))
                row = await store.get(job.id)
                assert row is not None
                rows[name] = dict(row.input)
            return rows
        finally:
            await runtime.aclose()

    rows = asyncio.run(scenario())
    key = job_env.settings.deid_key
    assert key
    assert rows["cancelled-after-storing"]["studyInstanceUid"] == anonymize.input_ref(key, study)
    for name in ("transient-after-storing", "cancelled-before-storing"):
        assert rows[name]["studyInstanceUid"] == study, name
        AnonymizeSpec.parse(rows[name], job_env.settings)  # a retry can still run it
    with pytest.raises(InvalidInput):  # retryJob refuses a redacted input with a clear message
        AnonymizeSpec.parse(rows["cancelled-after-storing"], job_env.settings)


def _errors(client: TestClient, token: str, query: str, **variables: Any) -> list[str]:
    answer = client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    return [e["extensions"]["code"] for e in answer.get("errors") or []]


def test_a_named_researcher_sees_the_pseudonyms_never_the_original(
    job_env: JobEnv, users: Users
) -> None:
    study, files = big_study(2, seed=75)
    asyncio.run(store_files(job_env.settings, "orthanc", files))
    body: dict[str, Any] = {
        "source": "orthanc",
        "studyInstanceUid": study,
        "destination": "research",
        "project": "SHARE",
    }
    rad, admin, res = users.tokens["radiologist"], users.tokens["admin"], users.tokens["researcher"]
    with TestClient(create_app(users.settings)) as client:
        # a recipient must be an active user who does not see identity
        for wrong in (["link-radiologist"], ["nobody-here"], ["x" * 65]):
            codes = _errors(client, rad, ANONYMIZE, input={**body, "recipients": wrong})
            assert codes == ["BAD_USER_INPUT"], (wrong, codes)
        job = _ask(client, rad, ANONYMIZE, input={**body, "recipients": ["Link-Researcher"]})
        job_id = job["anonymizeStudy"]["id"]
        assert _ask(client, rad, JOB, id=job_id)["job"]["input"]["recipients"] == [
            "link-researcher"
        ]
        queued = _ask(client, res, JOB, id=job_id)["job"]
        assert queued["id"] == job_id and queued["input"] == {}, queued
        worker = job_env.worker("share-worker").start()
        try:
            done = _wait(client, admin, job_id)
        finally:
            worker.stop()
        assert done["status"] == "SUCCEEDED", done
        as_recipient = _ask(client, res, JOB, id=job_id)["job"]
        listed = {e["node"]["id"]: e["node"] for e in _ask(client, res, JOBS)["jobs"]["edges"]}
        as_owner = _ask(client, rad, JOB, id=job_id)["job"]
        # the recipient may follow it, not act on it
        for action in ("cancelJob", "retryJob"):
            mutation = f"mutation($id: ID!) {{ {action}(id: $id) {{ id }} }}"
            assert _errors(client, res, mutation, id=job_id) == ["FORBIDDEN"]

    for seen in (as_recipient, listed[job_id]):
        assert seen["input"] == {}
        assert all(seen["result"][k] for k in PSEUDONYMS), seen["result"]
        assert seen["result"]["instances"] == 2
        assert study not in json.dumps(seen)
    assert not set(PSEUDONYMS) & set(as_owner["result"])  # the owner still never sees them
