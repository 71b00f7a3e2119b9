"""Helpers for job tests: a worker process, GraphQL calls, waiting for jobs, a big study."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from starlette.testclient import TestClient

from gateway.core.settings import Settings
from gateway.devstack.seed.images import iter_series
from gateway.devstack.seed.model import CopySpec, PatientSpec, SeriesSpec, StudySpec
from gateway.devstack.seed.uids import derive_uid
from gateway.runtime import Runtime
from gateway.sources.base import InstanceQuery

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
JOB_FIELDS = "id kind status progress phase message attempts result error"


class WorkerProcess:
    """`pacs-gateway worker` in a child process; killable, restartable."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        """Start (again)."""
        exe = Path(sys.executable).with_name("pacs-gateway")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(exe), "worker", "--config", str(self.config)],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


def gql(client: TestClient, query: str, **variables: Any) -> dict[str, Any]:
    """POST a GraphQL document; the whole response body."""
    response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def gql_data(client: TestClient, query: str, **variables: Any) -> dict[str, Any]:
    """POST a GraphQL document that must succeed; its data."""
    body = gql(client, query, **variables)
    assert not body.get("errors"), body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def get_job(client: TestClient, job_id: str) -> dict[str, Any]:
    """The job's current state through the API."""
    job: dict[str, Any] = gql_data(
        client, f"query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} }} }}", id=job_id
    )["job"]
    return job


def wait_job(
    client: TestClient, job_id: str, timeout: float = 120.0, until: Any = None
) -> dict[str, Any]:
    """Poll until the job is final (or `until(job)` holds); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(client, job_id)
        if (until(job) if until else job["status"] in TERMINAL) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert until(job) if until else job["status"] in TERMINAL, f"job stuck: {job}"
    return job


def big_study(instances: int, seed: int = 7, rows: int = 16) -> tuple[str, list[bytes]]:
    """One CT study of `instances` small instances in one series; (study UID, Part 10 files)."""
    patient = PatientSpec("BIG-0001", "BIG^STUDY", "19700101", "O")
    series = SeriesSpec(
        series_uid=derive_uid(seed, "big", "series"),
        modality="CT",
        number=1,
        description="BIG",
        sop_class_uid=CT_IMAGE,
        instance_uids=tuple(derive_uid(seed, "big", "sop", k) for k in range(instances)),
        rows=rows,
        columns=rows,
    )
    study = StudySpec(
        study_uid=derive_uid(seed, "big", "study"),
        patient=patient,
        study_id="1",
        date="20260101",
        time="120000",
        accession="BIG1",
        description="BIG",
        alt_descriptions=(),
        body_part="CHEST",
        referring="",
        manufacturer="SYNTH",
        frame_uid=derive_uid(seed, "big", "frame"),
        series=[series],
    )
    return study.study_uid, list(iter_series(study, CopySpec(), series))


def drop_database(url: str | None, prefix: str = "pacs_gw_jobs_") -> None:
    """Drop the PostgreSQL database of `url` when its name starts with `prefix` (the test
    and benchmark databases only)."""
    if not url:
        return
    parsed = urlparse(url.replace("+asyncpg", ""))
    name = parsed.path.lstrip("/")
    if not name.startswith(prefix):
        return  # never a database the tests did not create
    admin = replace_path(url.replace("+asyncpg", ""), "postgres")
    subprocess.run(
        ["psql", admin, "-tAc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
        capture_output=True,
        check=False,
    )


def replace_path(url: str, database: str) -> str:
    """`url` with another database name."""
    return urlparse(url)._replace(path=f"/{database}").geturl()


def lines(path: Path) -> Iterator[str]:
    """A log file's lines (for failure messages)."""
    if path.exists():
        yield from path.read_text(errors="replace").splitlines()


class GatewayProcess:
    """`pacs-gateway serve` in a child process on a free port."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        """The GraphQL WebSocket endpoint."""
        return f"ws://127.0.0.1:{self.port}/graphql"

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        """Start and wait until /health answers."""
        exe = Path(sys.executable).with_name("pacs-gateway")
        argv = [str(exe), "serve", "--config", str(self.config), "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "\n".join(lines(self.log))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("gateway did not start:\n" + "\n".join(lines(self.log)))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def subscribe(
    url: str, query: str, variables: dict[str, Any], limit_s: float = 120.0
) -> list[dict[str, Any]]:
    """Run one subscription over graphql-transport-ws until it completes; its payloads."""
    import websockets

    out: list[dict[str, Any]] = []
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init"}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        payload = {"query": query, "variables": variables}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        async with asyncio.timeout(limit_s):
            while True:
                msg = json.loads(await ws.recv())
                if msg["type"] == "next":
                    out.append(msg["payload"])
                elif msg["type"] == "complete":
                    return out
                elif msg["type"] == "error":
                    raise AssertionError(msg)


async def store_files(settings: Settings, source_id: str, files: list[bytes]) -> None:
    """Store files into one source of `settings`; every file must be accepted."""
    runtime = await Runtime.create(settings, run_migrations=False)
    try:
        result = await runtime.sources[source_id].store(files)
        assert not result.failed
    finally:
        await runtime.aclose()


async def instance_uids(settings: Settings, source_id: str, study_uid: str) -> list[str]:
    """The SOP Instance UIDs one source lists for a study (duplicates kept)."""
    runtime = await Runtime.create(settings, run_migrations=False)
    try:
        query = InstanceQuery(study_uid=study_uid)
        return [i.sop_instance_uid for i in await runtime.sources[source_id].find_instances(query)]
    finally:
        await runtime.aclose()
