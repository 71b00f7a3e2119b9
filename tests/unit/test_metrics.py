"""Metric hooks: what each records, bounded labels, the allow-list, the workers' endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import strawberry
from prometheus_client import REGISTRY
from starlette.testclient import TestClient
from strawberry.extensions import MaskErrors, MaxTokensLimiter

from gateway.core.errors import ConfigError, SourceProtocolError, SourceTimeout
from gateway.core.settings import MetricsConfig, Settings, SourceConfig, parse_settings
from gateway.metrics import record
from gateway.metrics.expose import WorkerEndpoint, render
from gateway.server.app import create_app
from gateway.sources.resilience import Guard
from resolvers.limits import ErrorCodes
from resolvers.metrics import OperationMetrics
from resolvers.schema import GatewaySchema

P = "pacs_gateway"


def value(name: str, **labels: str) -> float:
    """A sample's current value, 0 when the series does not exist yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(autouse=True)
def metrics_on() -> Iterator[None]:
    record.configure(True)
    yield
    record.configure(True)


def _guard(source: str, **kw: object) -> Guard:
    cfg = SourceConfig(id=source, kind="orthanc", url="http://h", **kw)  # type: ignore[arg-type]
    return Guard(cfg, backoff_s=0.001)


async def test_guard_times_each_call_by_operation() -> None:
    guard = _guard("m-ok")
    before = value(f"{P}_archive_request_seconds_count", source="m-ok", operation="find_studies")

    async def answer() -> str:
        await asyncio.sleep(0.01)
        return "ok"

    for _ in range(3):
        assert await guard.call("find_studies", answer) == "ok"
    labels = {"source": "m-ok", "operation": "find_studies"}
    assert value(f"{P}_archive_request_seconds_count", **labels) == before + 3
    assert value(f"{P}_archive_request_seconds_sum", **labels) >= 0.03
    assert value(f"{P}_archive_request_seconds_bucket", le="0.005", **labels) == 0
    assert guard.stats.calls == 3  # CallStats keeps counting for the API


async def test_guard_counts_errors_by_class_and_breaker_state() -> None:
    guard = _guard("m-bad", retries=0, breaker_threshold=2, breaker_cooldown_s=60, timeout_s=0.05)

    async def garbage() -> None:
        raise SourceProtocolError("m-bad", "garbage")

    with pytest.raises(SourceTimeout):
        await guard.call("find_series", lambda: asyncio.sleep(1))
    with pytest.raises(SourceProtocolError):
        await guard.call("find_series", garbage)
    assert value(f"{P}_archive_errors_total", source="m-bad", **{"class": "timeout"}) == 1
    assert value(f"{P}_archive_errors_total", source="m-bad", **{"class": "protocol"}) == 1
    render()  # the breaker's state is read at scrape time
    assert value(f"{P}_archive_breaker_state", source="m-bad") == 2  # open
    with pytest.raises(SourceTimeout.__base__):  # CircuitOpen, a SourceUnavailable
        await guard.call("find_series", garbage)
    assert value(f"{P}_archive_errors_total", source="m-bad", **{"class": "circuit_open"}) == 1
    guard.breaker.success()
    render()
    assert value(f"{P}_archive_breaker_state", source="m-bad") == 0


def test_labels_are_bounded() -> None:
    assert record.operation_label("find_studies") == "find_studies"
    for unbounded in ("1.2.840.10008.5", "DOE^JOHN", "find studies of X", "a" * 80, ""):
        assert record.operation_label(unbounded) == "other"
    assert record.kind_label("SYNC") == "SYNC"
    assert record.kind_label("PATIENT-42") == "other"
    assert record.error_class("SOURCE_TIMEOUT") == "timeout"
    assert record.error_class("ANYTHING_ELSE") == "other"
    assert record.code_label("FORBIDDEN") == "FORBIDDEN"
    assert record.code_label("not a code: 1.2.3") == "other"
    assert record.graphql_name(None) == "anonymous"
    assert record.graphql_name("") == "anonymous"
    assert record.graphql_name("bad name!") == "other"


def test_graphql_operation_names_are_capped() -> None:
    seen = set(record._State.operation_names)
    try:
        names = {record.graphql_name(f"Cap{i}") for i in range(record.MAX_OPERATION_NAMES + 50)}
        assert "other" in names
        assert len(names) <= record.MAX_OPERATION_NAMES + 1
    finally:
        record._State.operation_names = seen


def test_disabled_records_nothing() -> None:
    before = value(f"{P}_jobs_submitted_total", kind="SYNC")
    record.configure(False)
    record.job_submitted("SYNC")
    record.configure(True)
    record.job_submitted("SYNC")
    assert value(f"{P}_jobs_submitted_total", kind="SYNC") == before + 1


def test_job_hooks() -> None:
    def finished(status: str) -> float:
        return value(f"{P}_jobs_finished_total", kind="ANONYMIZE", status=status)

    ok, count = finished("SUCCEEDED"), value(f"{P}_job_duration_seconds_count", kind="ANONYMIZE")
    record.job_finished("ANONYMIZE", "SUCCEEDED", 2.5)
    record.job_finished("ANONYMIZE", "CANCELLED", None)  # cancelled while queued: not timed
    assert finished("SUCCEEDED") == ok + 1
    assert value(f"{P}_job_duration_seconds_count", kind="ANONYMIZE") == count + 1
    record.jobs_queued({"SYNC": 3})
    assert value(f"{P}_jobs_queued", kind="SYNC") == 3
    assert value(f"{P}_jobs_queued", kind="RTSTRUCT") == 0  # every kind reported
    assert REGISTRY.get_sample_value(f"{P}_jobs_queued", {"kind": "INDEX"}) == 0
    record.job_running("SYNC", 1)
    running = value(f"{P}_jobs_running", kind="SYNC")
    record.job_running("SYNC", -1)
    assert value(f"{P}_jobs_running", kind="SYNC") == running - 1
    record.sync_transferred("a", "b", 4, 4096)
    record.sync_verified("a", "b", 0)
    record.sync_periodic_success("a", "b", at=1_700_000_000.0)
    assert value(f"{P}_sync_bytes_transferred_total", source="a", destination="b") >= 4096
    assert value(f"{P}_sync_last_success_timestamp_seconds", source="a", destination="b") == (
        1_700_000_000.0
    )
    record.deid_quarantined("research", 2)
    assert value(f"{P}_deid_quarantined_total", destination="research") >= 2


def test_allow_list() -> None:
    default = MetricsConfig()
    assert default.allows("127.0.0.1") and default.allows("127.3.4.5") and default.allows("::1")
    assert default.allows("::ffff:127.0.0.1")  # IPv4-mapped
    for refused in ("10.0.0.5", "192.168.1.1", "testclient", "", None, "2001:db8::1"):
        assert not default.allows(refused)
    raw = {"metrics": {"allow": ["10.0.0.0/8", "192.0.2.7"], "worker_port": 0}}
    cfg = parse_settings(raw, {}).metrics
    assert cfg.allows("10.1.2.3") and cfg.allows("192.0.2.7")
    assert not cfg.allows("127.0.0.1") and not cfg.allows("192.0.2.8")
    assert cfg.worker_port == 0
    for bad, key in (
        ({"allow": ["not-an-address"]}, "metrics.allow"),
        ({"worker_port": 70000}, "metrics.worker_port"),
        ({"enabled": "yes"}, "metrics.enabled"),
        ({"scrape": True}, "metrics.scrape"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_settings({"metrics": bad}, {})


def test_gateway_metrics_refused_outside_allow_list(tmp_path: object) -> None:
    settings = Settings(sources=(), results_dir=tmp_path)  # type: ignore[arg-type]
    # no lifespan: refused before any runtime is needed; from "testclient", not an address
    client = TestClient(create_app(settings), base_url="http://localhost")
    response = client.get("/metrics")
    assert response.status_code == 403
    assert "pacs_gateway" not in response.text
    off = Settings(sources=(), results_dir=tmp_path, metrics=MetricsConfig(enabled=False))  # type: ignore[arg-type]
    off_client = TestClient(create_app(off), base_url="http://localhost")
    assert off_client.get("/metrics").status_code == 404


async def _get(port: int, path: str) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


async def test_worker_endpoint() -> None:
    record.process("worker", "test")
    endpoint = WorkerEndpoint(MetricsConfig(), port=0)
    assert await endpoint.start()
    try:
        status, body = await _get(endpoint.port, "/metrics")
        assert status == "HTTP/1.1 200 OK"
        assert b'pacs_gateway_info{role="worker",version="test"} 1.0' in body
        assert (await _get(endpoint.port, "/other"))[0].startswith("HTTP/1.1 404")
        busy = WorkerEndpoint(MetricsConfig(), port=endpoint.port)
        assert not await busy.start()  # a taken port: logged, the worker runs on
    finally:
        await endpoint.aclose()
    elsewhere = MetricsConfig(allow=MetricsConfig().allow[1:])  # ::1 only
    refused = WorkerEndpoint(elsewhere, port=0)
    assert await refused.start()
    try:
        status, body = await _get(refused.port, "/metrics")
        assert status.startswith("HTTP/1.1 403") and b"pacs_gateway" not in body
    finally:
        await refused.aclose()


# --- the GraphQL extension, on a small schema of its own


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "hi"

    @strawberry.field
    def boom(self) -> str:
        raise RuntimeError("secret detail")


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncIterator[int]:
        for i in range(2):
            await asyncio.sleep(0)
            yield i


SCHEMA = GatewaySchema(  # its process_errors counts errors by code
    query=Query,
    subscription=Subscription,
    extensions=[
        OperationMetrics,
        lambda: MaxTokensLimiter(max_token_count=50),
        lambda: MaskErrors(should_mask_error=lambda e: True),
        ErrorCodes,
    ],
)


def _duration_count(name: str, type_: str = "query") -> float:
    return value(f"{P}_graphql_operation_seconds_count", operation=name, type=type_)


async def test_graphql_operations_timed_by_name() -> None:
    named, anonymous = _duration_count("MetricsHello"), _duration_count("anonymous")
    assert (await SCHEMA.execute("query MetricsHello { hello }")).data == {"hello": "hi"}
    assert (await SCHEMA.execute("{ hello }")).data == {"hello": "hi"}
    assert _duration_count("MetricsHello") == named + 1
    assert _duration_count("anonymous") == anonymous + 1


async def test_graphql_errors_by_code_and_refusals() -> None:
    internal = value(f"{P}_graphql_errors_total", code="INTERNAL_SERVER_ERROR")
    parse = value(f"{P}_graphql_refused_total", reason="GRAPHQL_PARSE_FAILED")
    result = await SCHEMA.execute("query Boom { boom }")
    assert result.errors
    assert value(f"{P}_graphql_errors_total", code="INTERNAL_SERVER_ERROR") >= internal + 1
    assert (await SCHEMA.execute("query Broken { hello ")).errors
    assert value(f"{P}_graphql_refused_total", reason="GRAPHQL_PARSE_FAILED") == parse + 1
    too_big = value(f"{P}_graphql_refused_total", reason="QUERY_TOO_COMPLEX")
    assert (await SCHEMA.execute("{ " + "hello " * 60 + "}")).errors
    assert value(f"{P}_graphql_refused_total", reason="QUERY_TOO_COMPLEX") == too_big + 1
    text = render()[0].decode()
    assert "secret detail" not in text and "hello hello" not in text


async def test_subscriptions_counted_while_active() -> None:
    before = value(f"{P}_graphql_subscriptions")
    stream = await SCHEMA.subscribe("subscription Ticks { ticks }")
    assert not isinstance(stream, strawberry.types.ExecutionResult)
    first = await anext(stream)
    assert first.data == {"ticks": 0}
    assert value(f"{P}_graphql_subscriptions") == before + 1
    async for _ in stream:
        pass
    assert value(f"{P}_graphql_subscriptions") == before
    untimed = _duration_count("Ticks", "subscription")
    assert untimed == 0  # a subscription's lifetime is not an operation duration


def test_every_metric_and_alert_is_documented() -> None:
    import yaml
    from prometheus_client.metrics import MetricWrapperBase

    from gateway.metrics import families

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "operations.md").read_text()
    names = [
        m._name.removeprefix(f"{P}_")
        for m in vars(families).values()
        if isinstance(m, MetricWrapperBase)
    ]
    assert len(names) >= 20
    for name in names:
        suffix = "_total" if f"`{name}_total`" in doc else ""
        assert f"`{name}{suffix}`" in doc or f"`{P}_{name}`" in doc, name
    rules = yaml.safe_load((root / "deploy" / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert f"| {rule['alert']} |" in doc, rule["alert"]
