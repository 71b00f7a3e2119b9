"""The gateway skeleton against the real stack: /health, GraphiQL, `sources`, migrations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect
from starlette.testclient import TestClient

from gateway.core.settings import Settings
from gateway.db.engine import make_engine
from gateway.devstack.stack import StackInfo, free_port
from gateway.server.app import create_app

SOURCES_QUERY = "{ sources { id name kind roles health { up latencyMs checkedAt error } } }"


@pytest.fixture(scope="module")
def app_started() -> float:
    """time.monotonic() just before the module's app starts."""
    return time.monotonic()


@pytest.fixture(scope="module")
def client(settings: Settings, app_started: float) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def test_sources_query_all_up(client: TestClient) -> None:
    r = client.post("/graphql", json={"query": SOURCES_QUERY})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "errors" not in body
    sources = {s["id"]: s for s in body["data"]["sources"]}
    assert set(sources) == {"orthanc", "dcm4chee", "legacy"}
    assert sources["orthanc"]["kind"] == "ORTHANC"
    assert sources["dcm4chee"]["kind"] == "DICOMWEB"
    assert sources["legacy"]["kind"] == "DIMSE"
    assert sources["legacy"]["roles"] == ["QUERY", "RETRIEVE", "STORE"]
    for s in sources.values():
        assert s["health"]["up"] is True, s
        assert s["health"]["latencyMs"] > 0
        assert s["health"]["error"] is None


def test_health_reports_every_dependency(client: TestClient, app_started: float) -> None:
    earlier = client.get("/health").json()["uptimeSeconds"]
    time.sleep(0.3)
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["version"]
    # it counts, and from the app's start (rounded to 0.1 s)
    assert earlier < body["uptimeSeconds"] <= time.monotonic() - app_started + 0.05
    assert body["database"]["up"] and body["redis"]["up"]
    assert [s["id"] for s in body["sources"]] == ["orthanc", "dcm4chee", "legacy"]
    assert all(s["up"] and s["latencyMs"] is not None for s in body["sources"])


def test_graphiql_on_get(client: TestClient) -> None:
    r = client.get("/graphql", headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert "graphiql" in r.text.lower()


async def test_migrations_applied_on_postgres(settings: Settings, client: TestClient) -> None:
    assert settings.database_url.startswith("postgresql+asyncpg://")
    engine = make_engine(settings.database_url)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    await engine.dispose()
    assert {"jobs", "job_events", "sync_runs", "audit_events", "alembic_version"} <= tables


def _unreachable_config(stack: StackInfo, tmp: Path) -> Path:
    dead = free_port()
    text = stack.gateway_toml(results_dir=str(tmp / "results"), sync_interval_s=0, auth_mode="open")
    text += f"""
[[sources]]
id = "offline"
kind = "orthanc"
url = "http://127.0.0.1:{dead}"
timeout_s = 1
"""
    path = tmp / "gateway.toml"
    path.write_text(text)
    return path


def test_served_gateway_reports_unreachable_source_down(stack: StackInfo, tmp_path: Path) -> None:
    config = _unreachable_config(stack, tmp_path)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": stack.database_url, "REDIS_URL": stack.redis_url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.server.cli.main",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{base}/health", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.2)
        else:
            pytest.fail("gateway did not start")
        body = health.json()
        assert health.status_code == 200
        assert body["status"] == "degraded"
        by_id = {s["id"]: s for s in body["sources"]}
        assert by_id["offline"]["up"] is False
        assert by_id["offline"]["error"]
        assert all(by_id[i]["up"] for i in ("orthanc", "dcm4chee", "legacy"))
        r = httpx.post(f"{base}/graphql", json={"query": SOURCES_QUERY}, timeout=10)
        offline = next(s for s in r.json()["data"]["sources"] if s["id"] == "offline")
        assert offline["health"]["up"] is False
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    assert proc.returncode == 0
