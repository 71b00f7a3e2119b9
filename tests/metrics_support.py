"""Helpers for the metrics tests: a gateway and a worker process with their metrics served,
a workload of queries and a sync, scraping, and the values that must never appear."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.devstack.seed import GroundTruth, build_demo
from gateway.devstack.seed.archives import seed_archives
from gateway.devstack.stack import die_with_parent, free_port
from tests.auth_support import identity_values
from tests.conftest import JobEnv
from tests.jobs_support import JOB_FIELDS, GatewayProcess, WorkerProcess, gql, gql_data, wait_job

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
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
ANONYMIZE = f"""mutation Anonymize($input: AnonymizeInput!) {{
  anonymizeStudy(input: $input) {{ {JOB_FIELDS} }}
}}"""


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
    """Named and anonymous queries, a name search, a refused query, a verified sync of
    every study from dcm4chee to orthanc and the de-identification of one study into the
    research archive; the sync job as it ended."""
    with world.client() as client:
        assert gql_data(client, PATIENTS, first=50)["patients"]["totalCount"] > 0
        gql_data(client, BY_NAME, name=world.truth.patients[0].name.split("^")[0] + "*")
        gql_data(client, STUDIES)
        gql_data(client, SOURCES)
        gql_data(client, "{ sources { id } }")  # anonymous
        assert gql(client, "query Broken { patients(")["errors"]  # refused: parse error
        job = gql_data(client, SYNC, input={"from": "dcm4chee", "to": "orthanc", "all": True})
        done = wait_job(client, job["syncStudies"]["id"], timeout=120)
        study = next(s.study_uid for s in world.truth.studies if "orthanc" in s.sources)
        deid = {"source": "orthanc", "destination": "research", "studyInstanceUid": study}
        anonymized = gql_data(client, ANONYMIZE, input=deid)["anonymizeStudy"]
        assert wait_job(client, anonymized["id"], timeout=120)["status"] == "SUCCEEDED"
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


class PrometheusProcess:
    """Debian's `prometheus` on a free loopback port with a temporary data directory,
    scraping the given targets every second and evaluating the project's alert rules."""

    def __init__(self, workdir: Path, targets: dict[str, list[str]]) -> None:
        self.port = free_port()
        self.dir = workdir / f"prometheus-{self.port}"
        (self.dir / "data").mkdir(parents=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(DEPLOY / "prometheus" / "alerts.yml")],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": hosts}]}
                for job, hosts in targets.items()
            ],
        }
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = self.dir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The HTTP API's root."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> PrometheusProcess:
        """Start and wait until ready."""
        argv = [
            "prometheus",
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus not ready:\n" + self.log.read_text())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def api(self, path: str, **params: str) -> Any:
        """`data` of a successful API answer (fails on an error answer, naming it)."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body.get("status") == "success", (params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (a scalar as one value)."""
        data = self.api("query", query=expr)
        result = data["result"]
        return result if data["resultType"] == "vector" else [{"value": result}]


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of deploy/prometheus/alerts.yml."""
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


# Grafana's variables, as a query sees them for "all archives" over the last hour.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$source": ".*",
}


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL with Grafana's variables filled in)."""
    out = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(name, value)
                out.append((path.name, panel["title"], expr))
    return out
