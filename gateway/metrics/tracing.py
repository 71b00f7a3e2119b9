"""OpenTelemetry traces: optional, off by default (`[telemetry] otlp_endpoint`).

One span per GraphQL operation, one per archive call (not per field: per-field hooks
cost 8x in strawberry), one per job and one per job phase. Span names and attributes
are the same bounded values as metric labels: source ids, operation names, job kinds,
phases, job ids (UUIDs); never a UID, a name or an exception's message. Log lines carry
the current trace id (`gateway.core.logs`).

Spans come from this module's tracer: a no-op tracer until `configure_tracing` (the
gateway's and the workers' start) or `use` (tests, benchmarks) gives it a provider.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from gateway.core.settings import TelemetryConfig

NAME = "pacs-gateway"


class _State:
    tracer: Tracer = trace.NoOpTracer()


def configure_tracing(config: TelemetryConfig, role: str) -> bool:
    """Export this process's spans over OTLP/HTTP when an endpoint is set; True if so."""
    if not config.otlp_endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": config.service_name, "pacs.role": role})
    provider = TracerProvider(resource=resource)
    endpoint = config.otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    use(provider)
    return True


def use(provider: trace.TracerProvider | None) -> None:
    """Trace through `provider` from now on (None: stop tracing)."""
    _State.tracer = provider.get_tracer(NAME) if provider is not None else trace.NoOpTracer()


def enabled() -> bool:
    """Whether spans are recorded."""
    return not isinstance(_State.tracer, trace.NoOpTracer)


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Span]:
    """A span, current while the block runs; an exception marks it failed by its class
    (its message is never recorded). Nothing at all while tracing is off."""
    if isinstance(_State.tracer, trace.NoOpTracer):
        return nullcontext(trace.INVALID_SPAN)
    return _span(name, dict(attributes or {}))


@contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[Span]:
    with _State.tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            failed(current, exc)
            raise


def failed(current: Span, exc: BaseException) -> None:
    """Mark `current` failed by the exception's class (and code, for the gateway's own)."""
    if current.is_recording():
        current.set_attribute("error.type", getattr(exc, "code", None) or type(exc).__name__)
        current.set_status(Status(StatusCode.ERROR))


def start(name: str, parent: Context | None, attributes: Mapping[str, Any]) -> Span:
    """A span that is not made current (ended by the caller), under `parent`'s span."""
    return _State.tracer.start_span(name, context=parent, attributes=dict(attributes))


def current_context() -> Context:
    """The context of the current span, to parent spans started later."""
    return trace.set_span_in_context(trace.get_current_span())
