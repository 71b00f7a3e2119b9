"""Helpers for the metrics tests: a gateway and a worker process with their metrics served,
a workload of queries and a sync, scraping, and the values that must never appear."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.devstack.seed import GroundTruth, build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.devstack.stack import free_port
from tests.auth_support import identity_values
from tests.conftest import JobEnv
from tests.jobs_support import JOB_FIELDS, GatewayProcess, WorkerProcess, gql, gql_data, wait_job

SYNC = f"mutation Sync($input: SyncInput!) {{ syncStudies(input: $input) {{ {JOB_FIELDS} }} }}"
PATIENTS = """query MetricsPatients($first: Int!) {
  patients(first: $first) {
    totalCount edges { node { patientId name studies { studyInstanceUid } } }
  }
}"""
BY_NAME = """query MetricsByName($name: String!) {
  patients(filter: { name: $name }, first: 20, consistency: LIVE) { edges { node { patientId } } }
}"""
STUDIES = "query MetricsStudies { studies(first: 20) { edges { node { studyInstanceUid } } } }"
SOURCES = "query MetricsSources { sources { id health { up } } }"


@dataclass
class Observed:
    """A seeded private stack with a gateway and a worker process serving metrics."""

    env: JobEnv
    truth: GroundTruth
    gateway: GatewayProcess
    worker: WorkerProcess
    worker_port: int

    @property
    def base(self) -> str:
        """The gateway's URL."""
        return f"http://127.0.0.1:{self.gateway.port}"

    @property
    def worker_metrics(self) -> str:
        """The worker's /metrics URL."""
        return f"http://127.0.0.1:{self.worker_port}/metrics"

    def client(self) -> httpx.Client:
        """An HTTP client for the gateway."""
        return httpx.Client(base_url=self.base, timeout=60)


def observed(env: JobEnv, name: str, extra_toml: str = "") -> Iterator[Observed]:
    """Seed `env`'s archives with the demo, start a gateway and a worker with metrics on."""
    counts = asyncio.run(seed_archives(env.settings, 42, 20, None))
    truth = build_demo(seed=42, patients=20, sources=env.settings.ids_with_role("store")).truth
    assert counts == truth.instance_counts
    worker_port = free_port()
    config = env.workdir / f"{name}.toml"
    config.write_text(
        env.config.read_text()
        + f"\n[metrics]\nworker_port = {worker_port}\nhealth_check_min_s = 0.5\n"
        + extra_toml
    )
    gateway = GatewayProcess(config, env.env, env.workdir / f"{name}-gateway.log").start()
    worker = WorkerProcess(config, env.env, env.workdir / f"{name}-worker.log").start()
    try:
        wait_for(lambda: scrape(f"http://127.0.0.1:{worker_port}/metrics") is not None, 30)
        yield Observed(env, truth, gateway, worker, worker_port)
    finally:
        worker.stop()
        gateway.stop()


def wait_for(ready: Any, timeout: float) -> None:
    """Poll `ready()` until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.2)


def scrape(url: str) -> str | None:
    """The text at `url` (None when nothing answers yet)."""
    try:
        response = httpx.get(url, timeout=10)
    except httpx.TransportError:
        return None
    assert response.status_code == 200, response.status_code
    return response.text


def workload(world: Observed) -> dict[str, Any]:
    """Named and anonymous queries, a name search, a refused query, and a verified sync of
    every study from dcm4chee to orthanc; the sync job as it ended."""
    with world.client() as client:
        assert gql_data(client, PATIENTS, first=50)["patients"]["totalCount"] > 0
        gql_data(client, BY_NAME, name=world.truth.patients[0].name.split("^")[0] + "*")
        gql_data(client, STUDIES)
        gql_data(client, SOURCES)
        gql_data(client, "{ sources { id } }")  # anonymous
        assert gql(client, "query Broken { patients(")["errors"]  # refused: parse error
        job = gql_data(client, SYNC, input={"from": "dcm4chee", "to": "orthanc", "all": True})
        done = wait_job(client, job["syncStudies"]["id"], timeout=120)
    assert done["status"] == "SUCCEEDED", done
    return done


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in a text exposition."""
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample with this name and these labels (None when absent)."""
    for n, have, v in samples(text):
        if n == name and all(have.get(k) == x for k, x in labels.items()):
            return v
    return None


def patient_values(truth: GroundTruth) -> tuple[list[str], list[str]]:
    """(values that must appear nowhere in a scrape, values that must be no label value).

    Everywhere: patient IDs, names, study/series/instance UIDs, accession numbers. As label
    values only: birth dates (eight digits could occur inside a sample value by chance).
    """
    everywhere = {v for v in identity_values(truth) if not v.isdigit()}
    for study in truth.studies:
        everywhere |= {study.study_uid, study.accession_number}
        for series in study.series:
            everywhere.add(series.series_uid)
            everywhere |= set(series.instance_uids)
    labels_only = {p.birth_date for p in truth.patients} | {v for v in everywhere}
    return sorted(v for v in everywhere if v), sorted(v for v in labels_only if v)
