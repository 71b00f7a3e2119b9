"""Traces, through the SDK's in-memory exporter: one span per GraphQL operation, per archive
call and per job phase, nested; failures by class, never a message; trace ids in logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import strawberry
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gateway.core.errors import ConfigError, SourceTimeout
from gateway.core.logs import JsonFormatter
from gateway.core.settings import SourceConfig, TelemetryConfig, parse_settings
from gateway.metrics import tracing
from gateway.sources.resilience import Guard
from resolvers.metrics import OperationMetrics
from workers.runner import DbJobHandle


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)
    provider.shutdown()


def _guard(source: str = "t-src", **kw: object) -> Guard:
    cfg = SourceConfig(id=source, kind="orthanc", url="http://h", **kw)  # type: ignore[arg-type]
    return Guard(cfg, backoff_s=0.001)


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


async def test_one_span_per_archive_call(spans: InMemorySpanExporter) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise SourceTimeout("t-src", "slow")
        return "ok"

    assert await _guard(retries=2).call("find_studies", flaky) == "ok"
    [span] = named(spans, "archive")
    assert span.name == "archive find_studies" and calls == 3  # retries inside one span
    assert dict(span.attributes or {}) == {"pacs.source": "t-src", "pacs.operation": "find_studies"}
    assert span.status.status_code == StatusCode.UNSET


async def test_a_failed_call_is_marked_by_its_class_only(spans: InMemorySpanExporter) -> None:
    async def slow() -> None:
        raise SourceTimeout("t-src", "DOE^JOHN would never be here, but if it were")

    with pytest.raises(SourceTimeout):
        await _guard(retries=0).call("1.2.3.4", slow)  # an operation that is no identifier
    [span] = named(spans, "archive")
    assert span.name == "archive other"
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "SOURCE_TIMEOUT"
    assert span.events == () or list(span.events) == []  # no exception event, no message
    assert "DOE" not in json.dumps(dict(span.attributes or {}))


@strawberry.type
class Query:
    @strawberry.field
    async def studies(self) -> str:
        return str(await _guard("t-archive").call("find_studies", _answer))


async def _answer() -> str:
    await asyncio.sleep(0)
    return "ok"


SCHEMA = strawberry.Schema(query=Query, extensions=[OperationMetrics])


async def test_graphql_operation_span_holds_the_archive_calls(
    spans: InMemorySpanExporter,
) -> None:
    assert (await SCHEMA.execute("query Studies { studies }")).data == {"studies": "ok"}
    [operation] = named(spans, "graphql")
    [call] = named(spans, "archive")
    assert operation.name == "graphql query Studies"
    assert (operation.attributes or {})["graphql.operation.name"] == "Studies"
    assert call.parent is not None and call.parent.span_id == operation.context.span_id
    assert call.context.trace_id == operation.context.trace_id


class _Service:
    async def record(self, job_id: str, change: Any) -> object:
        return object()


async def test_job_phases(spans: InMemorySpanExporter) -> None:
    with tracing.span("job SYNC", {"pacs.job.kind": "SYNC"}) as job:
        handle = DbJobHandle(_Service(), "job-1", 1)  # type: ignore[arg-type]
        for phase in ("plan", "transfer", "transfer", "record"):
            await handle.progress(0.5, phase, "working")
        handle.close()
    phases = named(spans, "phase")
    assert [s.name for s in phases] == ["phase plan", "phase transfer", "phase record"]
    for span in phases:
        assert span.parent is not None and span.parent.span_id == job.get_span_context().span_id
    assert phases[0].end_time <= phases[1].start_time  # type: ignore[operator]


def test_trace_id_in_log_lines(spans: InMemorySpanExporter) -> None:
    logger = logging.getLogger("tests_tracing")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with tracing.span("graphql") as span:
            logger.warning("inside")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(x) for x in handler.stream.getvalue().splitlines())
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert "trace_id" not in outside


async def test_off_by_default_records_nothing() -> None:
    assert not tracing.enabled()
    with tracing.span("archive x") as span:
        assert not span.is_recording()
    assert await _guard().call("find_studies", _answer) == "ok"
    assert not configure_off()


def configure_off() -> bool:
    return tracing.configure_tracing(TelemetryConfig(), "gateway")


def test_telemetry_settings() -> None:
    assert parse_settings({}, {}).telemetry.otlp_endpoint is None
    cfg = parse_settings({"telemetry": {"otlp_endpoint": "http://collector:4318"}}, {}).telemetry
    assert cfg.otlp_endpoint == "http://collector:4318" and cfg.service_name == "pacs-gateway"
    for bad, key in (
        ({"otlp_endpoint": "collector:4318"}, "telemetry.otlp_endpoint"),
        ({"sampler": "all"}, "telemetry.sampler"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_settings({"telemetry": bad}, {})
