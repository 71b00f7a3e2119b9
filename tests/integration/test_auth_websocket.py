"""WebSocket subscriptions against a real `pacs-gateway serve` in `required` mode: the token
comes in `connection_init`; refused with 4403; a session revoked or expiring while a
subscription runs ends it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import update
from websockets.exceptions import ConnectionClosed

from gateway.auth import tokens
from gateway.db.models import Credential, utcnow
from gateway.runtime import Runtime
from resolvers.jobs import IDLE_RECHECK_S
from tests.auth_support import LOGIN, PASSWORDS, AuthEnv, auth_env
from tests.jobs_support import GatewayProcess

PROTOCOL = "graphql-transport-ws"
PROGRESS = "subscription($id: ID!) { jobProgress(id: $id) { jobId status message } }"
SYNC = "mutation($i: SyncInput!) { syncStudies(input: $i) { id status } }"
CANCEL = "mutation($id: ID!) { cancelJob(id: $id) { id status } }"
MARGIN_S = 4.0  # scheduling slack on a busy machine


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthEnv]:
    """The module's required-auth stack (no demo data: jobs only queue)."""
    yield from auth_env(tmp_path_factory, seed=False)


@pytest.fixture(scope="module")
def gateway(env: AuthEnv) -> Iterator[GatewayProcess]:
    """`pacs-gateway serve` on the module's config and database."""
    proc = GatewayProcess(env.config, env.env, env.workdir / "gateway.log").start()
    yield proc
    proc.stop()


def _http(gateway: GatewayProcess, query: str, token: str | None = None, **variables: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"http://127.0.0.1:{gateway.port}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=30,
    )
    return response


def _data(gateway: GatewayProcess, query: str, token: str | None = None, **variables: Any) -> Any:
    response = _http(gateway, query, token, **variables)
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def _login(gateway: GatewayProcess, who: str) -> str:
    token: str = _data(gateway, LOGIN, u=who, p=PASSWORDS[who])["login"]["token"]
    return token


_serial = iter(range(1, 1_000_000))


def _queued_job(gateway: GatewayProcess, token: str) -> str:
    """A sync job that stays QUEUED (no worker runs in this module)."""
    uid = f"1.2.826.0.1.3680043.8.498.77.{next(_serial)}"
    body = {"from": "orthanc", "to": "dcm4chee", "studyInstanceUids": [uid], "dryRun": True}
    job_id: str = _data(gateway, SYNC, token, i=body)["syncStudies"]["id"]
    return job_id


async def _connect(url: str, payload: dict[str, Any] | None) -> Any:
    ws = await websockets.connect(url, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    init: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        init["payload"] = payload
    await ws.send(json.dumps(init))
    return ws


async def _subscribe(ws: Any, job_id: str) -> None:
    payload = {"query": PROGRESS, "variables": {"id": job_id}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))


async def _until_end(ws: Any, limit_s: float) -> tuple[list[dict[str, Any]], float]:
    """Messages until the subscription ends (complete, error or a close); (messages, when)."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(limit_s):
        while True:
            try:
                msg = json.loads(await ws.recv())
            except ConnectionClosed as closed:
                out.append({"type": "closed", "code": closed.rcvd.code if closed.rcvd else None})
                return out, time.monotonic()
            out.append(msg)
            if msg["type"] in ("complete", "error"):
                return out, time.monotonic()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_valid_token_is_acked_and_the_subscription_streams(
    env: AuthEnv, gateway: GatewayProcess
) -> None:
    token = _login(gateway, "radiologist")
    job_id = _queued_job(gateway, token)

    async def scenario() -> list[dict[str, Any]]:
        ws = await _connect(gateway.ws_url, _bearer(token))
        try:
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ack["type"] == "connection_ack", ack
            await _subscribe(ws, job_id)
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert first["type"] == "next", first
            assert first["payload"]["data"]["jobProgress"]["status"] == "QUEUED"
            cancelled = await asyncio.to_thread(_data, gateway, CANCEL, token, id=job_id)
            assert cancelled["cancelJob"]["status"] == "CANCELLED"
            rest, _ = await _until_end(ws, 20)
            return [first, *rest]
        finally:
            await ws.close()

    messages = asyncio.run(scenario())
    statuses = [m["payload"]["data"]["jobProgress"]["status"] for m in messages[:-1]]
    assert statuses == ["QUEUED", "CANCELLED"]
    assert messages[-1]["type"] == "complete"


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer pgs_not-a-token"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"token": "ignored: only Authorization counts"},
    ],
    ids=["no-payload", "empty", "blank", "unknown-token", "basic", "other-key"],
)
def test_refused_with_4403(env: AuthEnv, gateway: GatewayProcess, payload: Any) -> None:
    async def scenario() -> list[dict[str, Any]]:
        ws = await _connect(gateway.ws_url, payload)
        try:
            return (await _until_end(ws, 10))[0]
        finally:
            await ws.close()

    assert asyncio.run(scenario()) == [{"type": "closed", "code": 4403}]


def test_a_revoked_token_is_refused_with_4403(env: AuthEnv, gateway: GatewayProcess) -> None:
    token = _login(gateway, "researcher")
    assert _data(gateway, "mutation { logout }", token)["logout"] is True

    async def scenario() -> list[dict[str, Any]]:
        ws = await _connect(gateway.ws_url, _bearer(token))
        try:
            return (await _until_end(ws, 10))[0]
        finally:
            await ws.close()

    assert asyncio.run(scenario()) == [{"type": "closed", "code": 4403}]


def test_a_message_beyond_the_body_bound_closes_the_socket(
    env: AuthEnv, gateway: GatewayProcess
) -> None:
    """A WebSocket message is bounded like a POST body (`max_body_bytes`): one beyond it ends
    the connection with 1009 (message too big) before it is parsed; one within is served."""
    token = _login(gateway, "radiologist")

    async def scenario(size: int) -> Any:
        ws = await _connect(gateway.ws_url, _bearer(token))
        try:
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ack["type"] == "connection_ack", ack
            query = "subscription { jobEvents { jobId } }" + " " * size
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
            await ws.send(json.dumps({"type": "ping"}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] == "pong":
                    return "served"
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
        finally:
            await ws.close()

    assert asyncio.run(scenario(env.settings.max_body_bytes + 1)) == 1009
    assert asyncio.run(scenario(1000)) == "served"


def test_only_the_transport_ws_subprotocol_is_offered(gateway: GatewayProcess) -> None:
    """The legacy graphql-ws protocol let a client skip connection_init."""

    async def scenario() -> Any:
        try:
            ws = await websockets.connect(gateway.ws_url, subprotocols=["graphql-ws"])  # type: ignore[list-item]
        except (websockets.InvalidHandshake, ConnectionClosed) as refused:
            return refused
        try:
            await ws.send(
                json.dumps({"type": "start", "id": "1", "payload": {"query": "{ me { id } }"}})
            )
            return await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            return closed
        finally:
            await ws.close()

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, Exception), f"served over graphql-ws: {outcome!r}"


def test_another_users_job_cannot_be_followed(env: AuthEnv, gateway: GatewayProcess) -> None:
    job_id = _queued_job(gateway, _login(gateway, "radiologist"))
    token = _login(gateway, "researcher")

    async def scenario() -> list[dict[str, Any]]:
        ws = await _connect(gateway.ws_url, _bearer(token))
        try:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            await _subscribe(ws, job_id)
            return (await _until_end(ws, 10))[0]
        finally:
            await ws.close()

    messages = asyncio.run(scenario())
    assert not any((m.get("payload") or {}).get("data") for m in messages if m["type"] == "next"), (
        "no event of another's job"
    )
    assert messages[-1]["type"] in ("error", "complete")


def _ends_after(
    gateway: GatewayProcess, token: str, job_id: str, trigger: Any
) -> tuple[list[dict[str, Any]], float]:
    """Subscribe with `token`, get the first event, run `trigger()`; (messages after the
    first, seconds from the trigger to the end of the subscription)."""

    async def scenario() -> tuple[list[dict[str, Any]], float]:
        ws = await _connect(gateway.ws_url, _bearer(token))
        try:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            await _subscribe(ws, job_id)
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert first["payload"]["data"]["jobProgress"]["status"] == "QUEUED", first
            started = time.monotonic()
            await asyncio.to_thread(trigger)
            limit = IDLE_RECHECK_S * 2 + MARGIN_S + 10
            messages, ended = await _until_end(ws, limit)
            return messages, ended - started
        finally:
            await ws.close()

    return asyncio.run(scenario())


def _unauthenticated(messages: list[dict[str, Any]]) -> bool:
    for m in messages:
        payload = m.get("payload")
        errors = payload if isinstance(payload, list) else (payload or {}).get("errors") or []
        if any((e.get("extensions") or {}).get("code") == "UNAUTHENTICATED" for e in errors):
            return True
        if m["type"] == "closed" and m.get("code") in (4401, 4403):
            return True
    return False


def test_logout_from_another_connection_ends_the_subscription(
    env: AuthEnv, gateway: GatewayProcess
) -> None:
    token = _login(gateway, "radiologist")
    job_id = _queued_job(gateway, token)

    def logout() -> None:
        assert _data(gateway, "mutation { logout }", token)["logout"] is True

    messages, took = _ends_after(gateway, token, job_id, logout)
    assert _unauthenticated(messages), messages
    assert not any(m["type"] == "next" and (m["payload"].get("data") or {}) for m in messages)
    assert took <= IDLE_RECHECK_S + MARGIN_S, f"ended {took:.1f} s after the logout"


def test_a_session_expiring_mid_subscription_ends_it(env: AuthEnv, gateway: GatewayProcess) -> None:
    job_id = _queued_job(gateway, _login(gateway, "radiologist"))
    token = _login(gateway, "radiologist")  # a second session, not yet used (nor cached)
    lifetime_s = 3.0

    async def shorten(runtime: Runtime) -> None:
        async with runtime.sessions() as session, session.begin():
            await session.execute(
                update(Credential)
                .where(Credential.digest == tokens.digest(token))
                .values(expires_at=utcnow() + timedelta(seconds=lifetime_s))
            )

    env.run(shorten)  # before the gateway process first sees the token on the socket
    expires = time.monotonic() + lifetime_s
    messages, _ = _ends_after(gateway, token, job_id, lambda: None)
    ended = time.monotonic()
    assert _unauthenticated(messages), messages
    assert ended >= expires - 0.5, "not before the session expired"
    assert ended - expires <= IDLE_RECHECK_S + MARGIN_S, "within one re-check of the expiry"
    assert _http(gateway, "{ me { id } }", token).status_code == 401


def test_a_login_does_not_hold_up_other_requests(env: AuthEnv, gateway: GatewayProcess) -> None:
    """argon2 costs a CPU for a good while: it must not run on the event loop."""
    token = _login(gateway, "admin")

    async def scenario() -> tuple[list[float], float]:
        url = f"http://127.0.0.1:{gateway.port}/graphql"
        async with httpx.AsyncClient(timeout=30) as client:
            await client.post(url, json={"query": "{ me { id } }"}, headers=_bearer(token))

            async def login() -> float:
                t0 = time.monotonic()
                body = {"query": LOGIN, "variables": {"u": "admin", "p": PASSWORDS["admin"]}}
                r = await client.post(url, json=body)
                assert r.status_code == 200 and not r.json().get("errors"), r.text
                return time.monotonic() - t0

            logins = [asyncio.create_task(login()) for _ in range(3)]
            await asyncio.sleep(0.1)  # the logins are hashing now
            t0 = time.monotonic()
            r = await client.post(url, json={"query": "{ me { id } }"}, headers=_bearer(token))
            me = time.monotonic() - t0
            assert r.status_code == 200, r.text
            return list(await asyncio.gather(*logins)), me

    logins, me = asyncio.run(scenario())
    assert me < min(logins) / 2, f"me took {me:.2f} s while logins took {logins}"


EVENTS = "subscription { jobEvents(kinds: [SYNC]) { jobId status } }"


def test_rights_taken_away_apply_to_a_running_subscription(
    env: AuthEnv, gateway: GatewayProcess
) -> None:
    """An admin demoted while following every job's events sees only their own from then on."""
    admin = _login(gateway, "admin")
    made = _data(
        gateway,
        "mutation($i: UserInput!) { createUser(input: $i) { id } }",
        admin,
        i={"username": "boss", "roles": ["ADMIN"], "password": "boss-password-123"},
    )
    boss_id = made["createUser"]["id"]
    boss = _data(gateway, LOGIN, u="boss", p="boss-password-123")["login"]["token"]
    radiologist = _login(gateway, "radiologist")

    async def scenario() -> tuple[list[str], dict[str, str]]:
        ws = await _connect(gateway.ws_url, _bearer(boss))
        try:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            payload = {"query": EVENTS, "variables": {}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            await asyncio.sleep(1.0)  # subscribed before anything is published

            async def next_job() -> str:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
                assert msg["type"] == "next", msg
                job: str = msg["payload"]["data"]["jobEvents"]["jobId"]
                return job

            jobs = {"before": await asyncio.to_thread(_queued_job, gateway, radiologist)}
            seen = [await next_job()]
            demote = (
                "mutation($id: ID!) { updateUser(id: $id, patch: {roles: [RADIOLOGIST]}) { id } }"
            )
            await asyncio.to_thread(_data, gateway, demote, admin, id=boss_id)
            jobs["after"] = await asyncio.to_thread(_queued_job, gateway, radiologist)
            jobs["own"] = await asyncio.to_thread(_queued_job, gateway, boss)
            seen.append(await next_job())
            return seen, jobs
        finally:
            await ws.close()

    seen, jobs = asyncio.run(scenario())
    assert seen == [jobs["before"], jobs["own"]], "another's job after the demotion is not shown"
