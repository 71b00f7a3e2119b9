"""Fairness (issue 12): a rate per caller on /graphql, a quota of queued jobs per user, and
job inputs answered as a summary beyond a few KB (finding 1).

A module's own stack and database (`job_env`): the jobs submitted here stay QUEUED (no
worker runs) and reach no other module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.server.app import create_app
from resolvers.job_types import INPUT_BYTES
from tests.conftest import JobEnv

pytestmark = pytest.mark.integration

SYNC = "mutation($i: SyncInput!) { syncStudies(input: $i) { id status input } }"
CANCEL = "mutation($id: ID!) { cancelJob(id: $id) { id status } }"


def _uids(n: int, base: int = 0) -> list[str]:
    return [f"1.2.826.0.1.3680043.8.498.{base + i + 1}" for i in range(n)]


def _sync(client: TestClient, uids: list[str]) -> dict[str, Any]:
    body = {"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": uids, "dryRun": True}
    r = client.post("/graphql", json={"query": SYNC, "variables": {"i": body}})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.fixture(scope="module")
def client(job_env: JobEnv) -> Iterator[TestClient]:
    settings = replace(job_env.settings, max_queued_jobs_per_user=3, rate_per_s=0)
    with TestClient(create_app(settings)) as c:
        yield c


def test_a_user_queues_at_most_the_quota(client: TestClient) -> None:
    first = [_sync(client, _uids(1, 100 * i))["data"]["syncStudies"] for i in range(3)]
    assert all(j["status"] == "QUEUED" for j in first)
    refused = _sync(client, _uids(1, 900))
    [error] = refused["errors"]
    assert error["extensions"]["code"] == "QUOTA_EXCEEDED" and "3" in error["message"]
    again = _sync(client, _uids(1, 0))  # the same job as one queued: that job, no error
    assert again["data"]["syncStudies"]["id"] == first[0]["id"]
    cancel = {"query": CANCEL, "variables": {"id": first[0]["id"]}}
    assert client.post("/graphql", json=cancel).json()["data"]["cancelJob"]["status"]
    assert _sync(client, _uids(1, 900))["data"]["syncStudies"]["status"] == "QUEUED"


def test_large_inputs_are_answered_as_a_summary(job_env: JobEnv) -> None:
    """Finding 1: a sync of 10,000 UIDs is not returned whole by every listing."""
    settings = replace(job_env.settings, max_queued_jobs_per_user=0, rate_per_s=0)
    with TestClient(create_app(settings)) as c:
        job = _sync(c, _uids(10_000, 5000))["data"]["syncStudies"]
        listing = c.post(
            "/graphql", json={"query": "{ jobs(first: 100) { edges { node { id input } } } }"}
        )
    assert listing.status_code == 200 and len(listing.content) < 100 * INPUT_BYTES
    [node] = [
        e["node"] for e in listing.json()["data"]["jobs"]["edges"] if e["node"]["id"] == job["id"]
    ]
    for summary in (job["input"], node["input"]):
        assert summary["summarized"] is True and summary["bytes"] > 10_000 * 30
        assert summary["studyInstanceUids"]["count"] == 10_000
        assert len(json.dumps(summary)) < INPUT_BYTES
        assert summary["from"] == "orthanc" and summary["dryRun"] is True


def test_a_caller_over_the_rate_gets_429_with_retry_after(job_env: JobEnv) -> None:
    settings = replace(job_env.settings, rate_per_s=0.5, burst=3)
    query = {"query": "{ sources { id } }"}
    with TestClient(create_app(settings)) as c:
        assert [c.post("/graphql", json=query).status_code for _ in range(3)] == [200] * 3
        r = c.post("/graphql", json=query)
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
        [error] = r.json()["errors"]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfter"] == 2 and r.json()["data"] is None
        assert c.get("/health").status_code == 200  # only /graphql is limited
