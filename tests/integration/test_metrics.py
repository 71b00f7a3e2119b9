"""/metrics of a real gateway and worker process after the demo's queries, a sync and a
de-identification: the expected series with sane values, no patient value anywhere, a
bounded number of series, no token needed, and refused (403) outside `[metrics] allow`.

Debian's Prometheus scrapes both processes while the workload runs: the alert rules pass
`promtool check rules` and their unit tests (`promtool test rules`), every alert expression
and every dashboard panel query evaluates without error against it, panels that should
have data do, and ArchiveDown's expression names an archive once it is stopped."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.core.enums import AuthMode
from gateway.core.settings import AuthConfig, MetricsConfig
from gateway.server.app import create_app
from tests.conftest import JobEnv
from tests.metrics_support import (
    DEPLOY,
    Observed,
    PrometheusProcess,
    alert_rules,
    dashboard_queries,
    observed,
    patient_values,
    sample,
    samples,
    scrape,
    wait_for,
    workload,
)

pytestmark = pytest.mark.integration
P = "pacs_gateway"
MAX_SERIES = 600  # per process; this workload makes about 280 (gateway) and 130 (worker)
MAX_LABEL_VALUES = 60  # distinct values of any one label in one process
# Panels with no series after this workload, and why: nothing in it makes them.
MAY_BE_EMPTY = {
    "Since the last successful periodic sync": "periodic sync is off in the test config",
    "De-identification quarantines per hour": "no de-identification job runs here",
    "Failed jobs per hour by kind": "no job fails here",
    "Job failure ratio by kind (1 h)": "no job fails here",
    "Errors per second by class": "the archives may answer every call",
    "Archive errors per second by class": "the archives may answer every call",
}


@pytest.fixture(scope="module")
def world(job_env: JobEnv) -> Iterator[Observed]:
    yield from observed(job_env, "metrics", '[logging]\nformat = "json"\n')


@pytest.fixture(scope="module")
def prometheus(world: Observed) -> Iterator[PrometheusProcess]:
    """Prometheus scraping the module's gateway and worker every second."""
    prom = PrometheusProcess(
        world.env.workdir,
        {
            "pacs-gateway": [f"127.0.0.1:{world.gateway.port}"],
            "pacs-gateway-worker": [f"127.0.0.1:{world.worker_port}"],
        },
    ).start()
    try:
        wait_for(lambda: len([t for t in prom.query("up") if t["value"][1] == "1"]) == 2, 15)
        yield prom
    finally:
        prom.stop()


@pytest.fixture(scope="module")
def scraped(world: Observed, prometheus: PrometheusProcess) -> tuple[dict[str, Any], str, str]:
    """(the sync job, the gateway's scrape, the worker's scrape) after the workload, which
    runs while Prometheus scrapes."""
    job = workload(world)
    gateway_url = f"{world.base}/metrics"

    # a scrape starts the archives' health check; the next one carries its outcome
    def all_up() -> bool:  # one check may miss an archive busy storing the sync: the next
        text = scrape(gateway_url) or ""
        ups = [v for n, _, v in samples(text) if n in (f"{P}_archive_up", f"{P}_dependency_up")]
        return len(ups) == 6 and all(v == 1 for v in ups)  # 4 archives, database, Redis

    # the worker samples its queue depth on each reconciliation pass (every 2 s): a job
    # finished since the last pass may still count as queued in the sample before it
    def queue_drained() -> bool:
        text = scrape(world.worker_metrics) or ""
        queued = [v for n, _, v in samples(text) if n == f"{P}_jobs_queued"]
        return bool(queued) and not any(queued)

    wait_for(all_up, 20)
    wait_for(queue_drained, 10)
    gateway, worker = scrape(gateway_url), scrape(world.worker_metrics)
    assert gateway is not None and worker is not None
    return job, gateway, worker


def test_gateway_series(scraped: tuple[dict[str, Any], str, str]) -> None:
    _, text, _ = scraped
    assert sample(text, f"{P}_info", role="gateway") == 1
    for source in ("orthanc", "dcm4chee", "legacy"):
        assert sample(text, f"{P}_archive_up", source=source) == 1
        assert (sample(text, f"{P}_archive_ping_seconds", source=source) or -1) >= 0
        assert sample(text, f"{P}_archive_breaker_state", source=source) == 0
    assert sample(text, f"{P}_dependency_up", dependency="database") == 1
    assert sample(text, f"{P}_dependency_up", dependency="redis") == 1
    calls = [
        (labels["source"], labels["operation"], value)
        for name, labels, value in samples(text)
        if name == f"{P}_archive_request_seconds_count"
    ]
    assert {s for s, _, _ in calls} >= {"orthanc", "dcm4chee", "legacy"}
    assert any(op == "find_patients" and n > 0 for _, op, n in calls), calls
    count = sample(text, f"{P}_graphql_operation_seconds_count", operation="MetricsPatients")
    total = sample(text, f"{P}_graphql_operation_seconds_sum", operation="MetricsPatients")
    assert count == 1 and total is not None and 0 < total < 30
    assert (sample(text, f"{P}_graphql_operation_seconds_count", operation="anonymous") or 0) >= 1
    assert sample(text, f"{P}_graphql_operation_seconds_count", operation="Sync", type="mutation")
    assert sample(text, f"{P}_graphql_refused_total", reason="GRAPHQL_PARSE_FAILED") == 1
    assert sample(text, f"{P}_graphql_errors_total", code="GRAPHQL_PARSE_FAILED") == 1
    assert sample(text, f"{P}_jobs_submitted_total", kind="SYNC") == 1
    assert sample(text, f"{P}_jobs_submitted_total", kind="ANONYMIZE") == 1
    assert sample(text, f"{P}_websocket_connections") == 0
    assert sample(text, f"{P}_graphql_subscriptions") == 0


def test_worker_series(scraped: tuple[dict[str, Any], str, str]) -> None:
    job, _, text = scraped
    result = job["result"]
    pair = {"source": "dcm4chee", "destination": "orthanc"}
    assert sample(text, f"{P}_info", role="worker") == 1
    assert sample(text, f"{P}_jobs_finished_total", kind="SYNC", status="SUCCEEDED") == 1
    assert sample(text, f"{P}_job_duration_seconds_count", kind="SYNC") == 1
    assert sample(text, f"{P}_jobs_finished_total", kind="ANONYMIZE", status="SUCCEEDED") == 1
    assert sample(text, f"{P}_job_duration_seconds_count", kind="ANONYMIZE") == 1
    seconds = sample(text, f"{P}_job_duration_seconds_sum", kind="SYNC")
    assert seconds is not None and 0 < seconds < 120
    moved = sample(text, f"{P}_sync_instances_transferred_total", **pair)
    assert moved == result["instancesTransferred"]
    assert result["instancesTransferred"] > 0
    assert sample(text, f"{P}_sync_bytes_transferred_total", **pair) == result["bytes"] > 0
    assert sample(text, f"{P}_sync_missing_after_verify", **pair) == 0
    assert sample(text, f"{P}_jobs_running", kind="SYNC") == 0
    for kind in ("SYNC", "ANONYMIZE", "RTSTRUCT", "INDEX", "IMPORT"):
        assert sample(text, f"{P}_jobs_queued", kind=kind) == 0
    assert sample(text, f"{P}_reconciler_requeues_total") == 0
    # the worker's own archive calls: the sync read dcm4chee and stored into orthanc
    assert sample(text, f"{P}_archive_request_seconds_count", source="orthanc", operation="store")
    assert sample(text, f"{P}_sync_interval_seconds") == 0  # periodic sync off here


def test_no_patient_value_and_bounded_series(
    scraped: tuple[dict[str, Any], str, str], world: Observed
) -> None:
    _, gateway, worker = scraped
    everywhere, as_labels = patient_values(world.truth)
    assert len(everywhere) > 100  # IDs, names, UIDs, accession numbers
    for text in (gateway, worker):
        assert [v for v in everywhere if v in text] == []
        label_values = {v for _, labels, _ in samples(text) for v in labels.values()}
        assert label_values.isdisjoint(as_labels)
        per_label: dict[str, set[str]] = defaultdict(set)
        for _, labels, _ in samples(text):
            for key, v in labels.items():
                per_label[key].add(v)
        assert all(len(v) <= MAX_LABEL_VALUES for v in per_label.values()), per_label
        assert 50 < len(samples(text)) < MAX_SERIES


def test_json_logs(scraped: tuple[dict[str, Any], str, str], world: Observed) -> None:
    """`[logging] format = "json"`: every line of both processes is a JSON object; each
    operation has its line with request id, caller id, name and duration; no patient value."""
    everywhere, _ = patient_values(world.truth)
    for log in (world.gateway.log, world.worker.log):
        text = log.read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert lines and all({"ts", "level", "logger", "message"} <= set(x) for x in lines)
        assert [v for v in everywhere if v in text] == []
    lines = [json.loads(x) for x in world.gateway.log.read_text().splitlines() if x.strip()]
    [patients] = [x for x in lines if x.get("operation") == "MetricsPatients"]
    assert patients["message"] == "graphql query" and patients["caller"] == "user:open"
    assert len(patients["request_id"]) == 16 and patients["duration_ms"] > 0
    assert patients["errors"] == 0
    assert any(x.get("type") == "unknown" for x in lines)  # the unparseable one


def test_no_token_needed_and_refused_outside_allow_list(world: Observed) -> None:
    required = dataclasses.replace(world.env.settings, auth=AuthConfig(mode=AuthMode.REQUIRED))
    with TestClient(
        create_app(required), base_url="http://localhost", client=("127.0.0.1", 40000)
    ) as client:
        assert client.post("/graphql", json={"query": "{ sources { id } }"}).status_code == 401
        response = client.get("/metrics")  # no token: Prometheus has none
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=")
    fenced = dataclasses.replace(
        required, metrics=MetricsConfig(allow=MetricsConfig().allow[1:])
    )  # ::1 only
    with TestClient(
        create_app(fenced), base_url="http://localhost", client=("127.0.0.1", 40000)
    ) as client:
        response = client.get("/metrics")
        assert response.status_code == 403
        assert P not in response.text
    with TestClient(create_app(required), base_url="http://localhost") as client:
        assert client.get("/metrics").status_code == 403  # "testclient" is no address


def test_promtool_checks_the_rules_and_their_tests() -> None:
    rules, config = DEPLOY / "prometheus" / "alerts.yml", DEPLOY / "prometheus" / "prometheus.yml"
    for argv in (
        ["promtool", "check", "rules", str(rules)],
        ["promtool", "check", "config", str(config)],
        ["promtool", "test", "rules", str(DEPLOY / "prometheus" / "alerts.test.yml")],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_and_panels_evaluate_against_prometheus(
    prometheus: PrometheusProcess, scraped: tuple[dict[str, Any], str, str]
) -> None:
    time.sleep(2)  # a couple more scrapes after the workload: rates have two points
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "ArchiveDown",
        "ArchiveSlow",
        "GraphQLErrorRatioHigh",
        "JobFailureRatioHigh",
        "PeriodicSyncStale",
        "JobQueueGrowing",
        "DeidQuarantine",
    }
    for rule in rules:
        prometheus.query(rule["expr"])  # evaluates without error
    loaded = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
    assert len(loaded) == len(rules)
    assert all(r["health"] != "err" for r in loaded), [r.get("lastError") for r in loaded]
    queries = dashboard_queries()
    assert {d for d, _, _ in queries} == {
        "overview.json",
        "archive-performance.json",
        "service-health.json",
        "errors.json",
        "sync.json",
    }
    assert set(MAY_BE_EMPTY) <= {title for _, title, _ in queries}
    empty = [(d, title) for d, title, expr in queries if not prometheus.query(expr)]
    assert [(d, t) for d, t in empty if t not in MAY_BE_EMPTY] == []


def test_archive_down_when_an_archive_is_stopped(
    world: Observed, prometheus: PrometheusProcess, scraped: tuple[dict[str, Any], str, str]
) -> None:
    """Last in the module: it stops the DIMSE archive."""
    expr = next(r["expr"] for r in alert_rules() if r["alert"] == "ArchiveDown")

    def down() -> list[str]:
        return [r["metric"]["source"] for r in prometheus.query(expr)]

    assert "legacy" not in down()  # (another archive may miss one check under load)
    world.env.stack.stop_service("legacy")

    wait_for(lambda: "legacy" in down(), 30)

    def archive_down() -> list[dict[str, Any]]:
        alerts = prometheus.api("alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "ArchiveDown"]

    wait_for(lambda: any(a["labels"]["source"] == "legacy" for a in archive_down()), 10)
    [alert] = [a for a in archive_down() if a["labels"]["source"] == "legacy"]
    assert alert["state"] == "pending"  # firing once down for 2 minutes (alerts.test.yml)
