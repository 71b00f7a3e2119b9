"""Live progress over real WebSockets, from two gateway processes; cancel and retry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import JobEnv
from tests.jobs_support import (
    JOB_FIELDS,
    GatewayProcess,
    big_study,
    gql_data,
    instance_uids,
    store_files,
    subscribe,
    wait_job,
)

SYNC = f"mutation($input: SyncInput!) {{ syncStudies(input: $input) {{ {JOB_FIELDS} }} }}"
PROGRESS = """subscription($id: ID!) {
  jobProgress(id: $id) { jobId at status progress phase message }
}"""
ALL_EVENTS = "subscription { jobEvents(kinds: [SYNC]) { jobId status progress } }"


@pytest.fixture(scope="module")
def gateways(job_env: JobEnv) -> Iterator[list[GatewayProcess]]:
    """Two gateway processes on the same database and Redis."""
    procs = [
        GatewayProcess(job_env.config, job_env.env, job_env.workdir / f"gw{i}.log").start()
        for i in range(2)
    ]
    yield procs
    for p in procs:
        p.stop()


def test_every_event_in_order_from_two_gateways_and_late(
    job_env: JobEnv, gateways: list[GatewayProcess]
) -> None:
    study, files = big_study(150, seed=11)
    asyncio.run(store_files(job_env.settings, "orthanc", files))
    with job_env.client() as client:
        job = gql_data(
            client, SYNC, input={"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": [study]}
        )["syncStudies"]

    async def scenario() -> tuple[list[list[dict]], list[dict]]:
        subs = [
            asyncio.create_task(subscribe(g.ws_url, PROGRESS, {"id": job["id"]})) for g in gateways
        ]
        everything = asyncio.create_task(_collect_all(gateways[0].ws_url, job["id"]))
        await asyncio.sleep(1.0)  # subscribed while the job is still queued: no worker yet
        worker = job_env.worker("live-worker").start()
        try:
            streams = await asyncio.gather(*subs)
        finally:
            worker.stop()
        return list(streams), await everything

    streams, firehose = asyncio.run(scenario())
    for stream in streams:
        events = [p["data"]["jobProgress"] for p in stream]
        statuses = [e["status"] for e in events]
        assert statuses[0] == "QUEUED", "the current state comes first"
        assert statuses[-1] == "SUCCEEDED", "the terminal event comes last"
        assert "RUNNING" in statuses
        assert statuses.count("SUCCEEDED") == 1
        times = [e["at"] for e in events]
        assert times == sorted(times), "in order"
        running = [e["progress"] for e in events if e["status"] == "RUNNING"]
        assert len(running) >= 3, "progress is streamed, not only start and end"
    assert streams[0] == streams[1], "both gateway processes deliver the same events"
    with job_env.client() as client:
        query = (
            "query($id: ID!) { job(id: $id) { events { jobId at status progress phase message } } }"
        )
        recorded = gql_data(client, query, id=job["id"])["job"]["events"]
    delivered = [p["data"]["jobProgress"] for p in streams[0]]
    start = recorded.index(delivered[0])
    assert delivered == recorded[start:], "every recorded event, in order, none skipped"
    assert firehose[-1]["status"] == "SUCCEEDED"

    late = asyncio.run(subscribe(gateways[1].ws_url, PROGRESS, {"id": job["id"]}))
    assert [p["data"]["jobProgress"]["status"] for p in late] == ["SUCCEEDED"]


async def _collect_all(url: str, job_id: str) -> list[dict]:
    """jobEvents until the job's terminal event."""
    import json

    import websockets

    out: list[dict] = []
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init"}))
        await ws.recv()
        await ws.send(
            json.dumps({"id": "a", "type": "subscribe", "payload": {"query": ALL_EVENTS}})
        )
        async with asyncio.timeout(120):
            while True:
                msg = json.loads(await ws.recv())
                if msg["type"] != "next":
                    continue
                ev = msg["payload"]["data"]["jobEvents"]
                if ev["jobId"] == job_id:
                    out.append(ev)
                    if ev["status"] == "SUCCEEDED":
                        return out


def test_unknown_job_subscription_is_an_error(gateways: list[GatewayProcess]) -> None:
    unknown = {"id": "00000000-0000-4000-8000-000000000000"}
    for variables, words in ((unknown, "no job with id"), ({"id": "nope"}, "not a job id")):
        payloads = asyncio.run(subscribe(gateways[0].ws_url, PROGRESS, variables, limit_s=10))
        assert len(payloads) == 1
        error = payloads[0]["errors"][0]
        assert words in error["message"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"


def test_cancel_running_then_retry(job_env: JobEnv) -> None:
    study, files = big_study(1500, seed=12)
    asyncio.run(store_files(job_env.settings, "orthanc", files))
    body = {"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": [study]}
    worker = job_env.worker("cancel-worker").start()
    try:
        with job_env.client() as client:
            job = gql_data(client, SYNC, input=body)["syncStudies"]
            wait_job(client, job["id"], until=lambda j: j["phase"] == "transfer")
            cancelled = gql_data(
                client, "mutation($id: ID!) { cancelJob(id: $id) { id status } }", id=job["id"]
            )["cancelJob"]
            assert cancelled["status"] in ("RUNNING", "CANCELLED")
            final = wait_job(client, job["id"])
            assert final["status"] == "CANCELLED", final
            assert final["progress"] < 0.9, "it stopped before the end"
            [partial] = final["result"]["studies"]  # what it did before stopping is recorded
            assert partial["outcome"] == "CANCELLED" and partial["studyInstanceUid"] == study
            held = asyncio.run(instance_uids(job_env.settings, "dcm4chee", study))
            assert 0 < len(held) < 1500 and len(set(held)) == len(held), "whole instances only"
            retried = gql_data(
                client, "mutation($id: ID!) { retryJob(id: $id) { id status } }", id=job["id"]
            )["retryJob"]
            assert retried["status"] == "QUEUED"
            done = wait_job(client, job["id"])
            assert done["status"] == "SUCCEEDED", done
            assert done["result"]["verified"] is True
            assert done["attempts"] == 2
    finally:
        worker.stop()


def test_no_patient_data_in_the_gateways_log(
    job_env: JobEnv, gateways: list[GatewayProcess]
) -> None:
    import httpx

    query = '{ patients(filter: {name: "BIG*"}) { edges { node { patientId name } } } }'
    base = f"http://127.0.0.1:{gateways[0].port}/graphql"
    answer = httpx.get(base, params={"query": query}, headers={"Accept": "application/json"})
    assert "BIG-0001" in answer.text, "the query did find the patient"
    httpx.post(base, json={"query": query})
    log = (job_env.workdir / "gw0.log").read_text()
    assert "graphql" in log.lower() or "Uvicorn" in log, "the log was written"
    for secret in ("BIG-0001", "BIG^STUDY", "BIG*", "BIG%2A"):
        assert secret not in log


def test_subscribers_share_one_redis_subscription_and_are_capped(
    job_env: JobEnv, gateways: list[GatewayProcess]
) -> None:
    """Forty WebSocket clients on one gateway cost it one Redis pub/sub connection (not
    forty) and each sees a new job's events; one caller's 51st open subscription is
    refused with TOO_MANY_SUBSCRIPTIONS."""
    import json

    import websockets
    from redis import Redis

    from resolvers.jobs import MAX_SUBSCRIPTIONS_PER_CALLER

    redis = Redis.from_url(job_env.settings.redis_url)

    def subscribed() -> int:
        return sum(1 for c in redis.client_list() if int(c.get("sub", 0)) > 0)

    async def opened(ws: Any, sub_id: str) -> None:
        payload = {"query": "subscription { jobEvents { jobId status } }"}
        await ws.send(json.dumps({"id": sub_id, "type": "subscribe", "payload": payload}))

    async def scenario() -> tuple[int, int, list[str], dict[str, Any]]:
        before = subscribed()
        sockets = []
        for _ in range(40):
            ws = await websockets.connect(gateways[0].ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await opened(ws, "1")
            sockets.append(ws)
        try:
            await asyncio.sleep(1.5)
            during = subscribed()
            with job_env.client() as client:
                job = gql_data(
                    client,
                    SYNC,
                    input={"from": "orthanc", "to": "dcm4chee", "dryRun": True, "all": True},
                )["syncStudies"]
            seen = []
            async with asyncio.timeout(30):
                for ws in sockets:
                    while True:
                        msg = json.loads(await ws.recv())
                        if (
                            msg["type"] == "next"
                            and msg["payload"]["data"]["jobEvents"]["jobId"] == job["id"]
                        ):
                            seen.append(job["id"])
                            break
            extra = sockets[0]  # the same caller (open mode): 40 open, 10 more allowed
            for i in range(MAX_SUBSCRIPTIONS_PER_CALLER - 40 + 1):
                await opened(extra, f"x{i}")
            refused: dict[str, Any] = {}
            async with asyncio.timeout(30):
                while not refused:
                    msg = json.loads(await extra.recv())
                    if (
                        msg["type"] in ("error", "next")
                        and msg.get("payload")
                        and (
                            "errors" in msg["payload"] if isinstance(msg["payload"], dict) else True
                        )
                    ):
                        refused = msg
            return before, during, seen, refused
        finally:
            for ws in sockets:
                await ws.close()

    before, during, seen, refused = asyncio.run(scenario())
    redis.close()
    assert during - before <= 1, (before, during)
    assert len(seen) == 40, "every subscriber saw the job's events"
    errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS", refused
